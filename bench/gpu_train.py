#!/usr/bin/env python
"""Training (and inference) throughput of EmoModelForMultiLabel on a Mistral of the Mistral Small 3.1 24B text-model
layer shape (hidden 5120, MLP 32768, 32 heads, 8 KV heads, head_dim 128, vocab 131072; random weights, built by
scripts/gpu_check.py's build_base), 4-bit, LoRA r=16 on the 7 projections, gradient checkpointing, focal loss,
bf16 autocast and fused AdamW with grad clipping (as emo_hf.trainer's Trainer does).

On the GPU (one call; the parent stays under --budget seconds, 550 by default, and records what did not fit; this
command took 215 s on an H100 on 2026-11-26, the table goes to stdout, progress to stderr):
    python bench/gpu_train.py --engines unsloth,bnb --layers-list 2,4 --extrapolate --inference \
        --json $OUT/gpu_train.json 2>$OUT/gpu_train.progress.txt | tee $OUT/gpu_train.md
The full 40 layers, measured rather than extrapolated (--prequantized: the random base is written directly in 4-bit,
layer by layer on the GPU, ~14 GB on disk; 337 s wall on an H200 on 2026-12-01, docs/benchmarks.md):
    python bench/gpu_train.py --prequantized --layers 40 --engines unsloth,bnb --configs original,embedding-big,text \
        --inference --text-batches 64 --text-variants grouped --text-budgets 4096,8192 --steps 4 --repeats 2 \
        --parallel 6 --budget 480 --scratch /tmp/gt40 --json $OUT/gpu_train_40.json \
        2>$OUT/gpu_train_40.progress.txt | tee $OUT/gpu_train_40.md
CPU smoke test of the logic (tiny shapes, fp32, no quantisation, engine 'cpu'; < 2 min on 2 cores):
    python bench/gpu_train.py --cpu --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 1000 --layers 1

Configs (each one subprocess per engine and layer count; a failed child, e.g. OOM or no unsloth, is a row, not a crash):
  original       embedding mode, 1 soft token, batch 8 x gradient accumulation 4 (one step = 32 samples)
  embedding-big  embedding mode, --soft-tokens (1), the largest batch of --big-batches that fits (largest tried first)
  text           random token ids with GoEmotions lengths (LENGTH_COUNTS), batch 32 and 64, three batchings of the
                 same texts: 'grouped' (length-sorted, dynamic padding), 'random' (unsorted, padded to the batch's
                 longest) and 'max' (unsorted, padded to 51 tokens); --text-budgets adds the library's token-budget
                 batches (emo_hf.batching, padded to bucket lengths; the timed batches are spread evenly over the
                 epoch's batches by padded size, so their mean stands for the epoch's)
  text-nockpt    the same text rows without gradient checkpointing (each layer's activations kept for the backward,
                 as the memory plan chooses on a card that holds them; ~60 GiB at 4,096 tokens and 40 layers)
  inference      (--inference) model.predict_proba on texts of GoEmotions lengths, batch 64, no grad, 4-bit
Engines: 'unsloth' (load_for_training(use_unsloth=True)), 'bnb' (transformers + bitsandbytes NF4 + peft), 'cpu';
'unsloth-keephead' is 'unsloth' with the CausalLM's LM head kept (the library drops it: drop_output_head), the
baseline for the memory that drop frees, side by side in one run.
Children run in waves of --parallel: they import, load and warm up (the first, compiling step) side by side, then
are timed one at a time while nothing else runs (no import, load or build). A measurement = a warm-up pass over the
same --steps batches (every shape compiled), then --repeats timed passes between torch.cuda.synchronize() calls; the
fastest pass's mean step time is reported (all passes are in the JSON).
Useful TFLOP/s = 6 * N_active * real (non-pad) tokens / time: forward 2*N*tokens, backward counted as 2x forward
(as for full training, although frozen 4-bit weights need no weight gradients) and the recomputation of gradient
checkpointing not counted; N_active = decoder-layer weights (4-bit counted unpacked) + LoRA + norms + head, without
the embedding table; attention-score FLOPs ignored. Peak memory is torch.cuda.max_memory_allocated of that child.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# text-nockpt: the text rows without gradient checkpointing (what the memory plan picks on a card that holds the
# activations: ~60 GiB at 4,096 tokens for 40 layers), so no forward is computed twice.
CONFIGS = ("original", "embedding-big", "text", "text-nockpt", "inference")
NUM_LABELS = 28
# Token counts of the 43,410 GoEmotions train texts under the Tekken BPE (mistral_common's tekken_240911.json,
# 130,072 ranks, taken to be Mistral Small 3.1's vocabulary) plus 1 for BOS, for lengths 2, 3, ..., 51; the 33 texts
# (0.08%) longer than 51 tokens are counted at 51. Mean 18.1, median 17, p95 32, p99 37.
LENGTH_COUNTS = [10, 36, 781, 1189, 1515, 1547, 1600, 1625, 1555, 1672, 1701, 1730, 1697, 1654, 1691, 1765, 1678,
                 1636, 1669, 1519, 1559, 1395, 1379, 1347, 1286, 1243, 1122, 1037, 1034, 994, 763, 555, 403, 281,
                 216, 139, 100, 76, 43, 41, 22, 22, 10, 10, 7, 11, 3, 2, 6, 34]
MAX_TOKENS = 1 + len(LENGTH_COUNTS)  # 51


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="smoke test: CPU, fp32, no quantisation, engine 'cpu'")
    p.add_argument("--engines", default=None, help="comma list of unsloth,bnb,cpu,unsloth-keephead (default "
                   "unsloth,bnb; --cpu: cpu)")
    p.add_argument("--configs", default="original,embedding-big,text", help=f"comma list of {','.join(CONFIGS[:4])}")
    p.add_argument("--inference", action="store_true", help="also the 'inference' config (predict_proba, batch 64)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers (the real model has 40)")
    p.add_argument("--layers-list", default=None, help="e.g. 2,4: the first count runs every config, later counts "
                   "run --more-layers-configs, queued last (only if the budget allows)")
    p.add_argument("--more-layers-configs", default="original,embedding-big,text")
    p.add_argument("--extrapolate", action="store_true", help="fit time = a + b*layers, print the --to-layers value")
    p.add_argument("--to-layers", type=int, default=40)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=None, help="default 128 (--cpu: hidden/heads)")
    p.add_argument("--vocab", type=int, default=None)
    p.add_argument("--rope-theta", type=float, default=1e9)
    p.add_argument("--soft-tokens", type=int, default=1, help="embedding-big: soft tokens per sample")
    p.add_argument("--big-batches", default="64,128,256,512,1024", help="embedding-big candidate batch sizes")
    p.add_argument("--text-batches", default="32,64")
    p.add_argument("--text-variants", default="grouped,random,max", help="fixed-row batchings timed per --text-batches")
    p.add_argument("--text-budgets", default="", help="comma list of token budgets: the library's token-budget "
                   "batches (emo_hf.batching: length-grouped, padded to bucket lengths), e.g. 4096,8192")
    p.add_argument("--prequantized", action="store_true", help="build the random base directly in 4-bit (NF4, "
                   "double-quantised, bitsandbytes' saved format), layer by layer on the GPU: ~14 GB on disk for 40 "
                   "layers instead of a 48 GB bf16 checkpoint; both stacks load it as a pre-quantised model")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100/H200 SXM)")
    p.add_argument("--epoch-rows", type=int, default=43410, help="rows of one epoch (GoEmotions train)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed pass (default 10; --cpu: 4)")
    p.add_argument("--repeats", type=int, default=None, help="timed passes, the fastest reported (default 3; --cpu: 1)")
    p.add_argument("--max-length", type=int, default=128, help="max_length of the model (mistral-small-24b preset)")
    p.add_argument("--budget", type=float, default=550.0, help="seconds for the whole run; children still running "
                   "then are killed and recorded")
    p.add_argument("--parallel", type=int, default=None, help="children alive at once (default 7; --cpu: 4)")
    p.add_argument("--json", default=None, help="write all rows + environment here")
    p.add_argument("--log-dir", default=None, help="keep the child logs here (they are also appended to "
                   "JSON_STEM.logs.txt next to --json)")
    p.add_argument("--scratch", default=None, help="folder for the random base models (outside the repository)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    # internal (child processes)
    p.add_argument("--only", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    p.add_argument("--base", default=None, help=argparse.SUPPRESS)
    p.add_argument("--build", default=None, help=argparse.SUPPRESS)
    p.add_argument("--gated", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    tiny = a.cpu
    a.hidden = a.hidden or (64 if tiny else 5120)
    a.intermediate = a.intermediate or (2 * a.hidden if tiny else 32768)
    a.heads = a.heads or (4 if tiny else 32)
    a.kv_heads = a.kv_heads or (2 if tiny else 8)
    a.head_dim = a.head_dim or (a.hidden // a.heads if tiny else 128)
    a.vocab = a.vocab or (1000 if tiny else 131072)
    a.engines = a.engines or ("cpu" if tiny else "unsloth,bnb")
    a.parallel = a.parallel or (4 if tiny else 7)
    a.steps = a.steps or (4 if tiny else 10)
    a.repeats = a.repeats or (1 if tiny else 3)
    return a


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# ======================================================================================================================
# Child: one config, one engine, one layer count
# ======================================================================================================================
def gate(name: str, args: argparse.Namespace) -> None:
    """Tell the parent we reached `name` and wait for its go (no-op when run by hand)."""
    if args.gated:
        print(f"@WAIT {name}", flush=True)
        if sys.stdin.readline().strip() != "go":
            sys.exit(3)


def sample_lengths(n: int, rng) -> "Any":
    import numpy as np

    counts = np.asarray(LENGTH_COUNTS, dtype=np.float64)
    return rng.choice(np.arange(2, MAX_TOKENS + 1), size=n, p=counts / counts.sum())


def environment(torch) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
                            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in ("transformers", "peft", "bitsandbytes", "unsloth"):
        module = sys.modules.get(name)
        info[name] = getattr(module, "__version__", None) if module else None
    return info


def child_main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    use_unsloth = args.engine.startswith("unsloth")
    if use_unsloth:
        import unsloth  # noqa: F401  (first: it patches transformers and peft)
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from emo_hf.backbones import count_parameters, load_for_training

    if args.engine == "unsloth-keephead":  # the A/B baseline: what the library's head drop saves
        import emo_hf.backbones.training as backbone_training

        backbone_training.drop_output_head = lambda causal_lm: 0

    on_gpu = args.engine != "cpu"
    device = "cuda" if on_gpu else "cpu"
    timings = {"import_s": time.perf_counter() - started}
    gate("load", args)

    started = time.perf_counter()
    mode = "text" if args.only in ("text", "text-nockpt", "inference") else "embedding"
    soft = args.soft_tokens if args.only == "embedding-big" else 1
    model = load_for_training(args.base, labels=[f"label_{i}" for i in range(NUM_LABELS)], input_mode=mode,
                              device=device, max_length=args.max_length, load_in_4bit=on_gpu,
                              use_unsloth=use_unsloth,
                              gradient_checkpointing=args.only != "text-nockpt",
                              num_soft_tokens=soft, encoder_dim=384, focal_gamma=2.0)
    timings["load_s"] = time.perf_counter() - started
    trainable, total = count_parameters(model)
    active = sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
                 for n, p in model.backbone.named_parameters() if "embed_tokens" not in n)
    active += sum(p.numel() for p in model.score.parameters())
    common = dict(engine=args.engine, config=args.only, layers=args.layers, params_total=total,
                  params_trainable=trainable, params_active=active)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=on_gpu)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    def labels_for(n: int):
        return (torch.rand(n, NUM_LABELS, generator=gen) < 0.12).float().to(device)

    def train_step(micro: list[tuple[dict, Any]]) -> None:
        for inputs, labels in micro:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu):
                loss = model(**inputs, labels=labels).loss
            (loss / len(micro)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def embedding_batch(n: int) -> tuple[dict, Any]:
        vectors = torch.nn.functional.normalize(torch.randn(n, 384, generator=gen), dim=-1)
        return {"sentence_embeddings": vectors.to(device)}, labels_for(n)

    def text_batch(lengths, pad_to: int | None = None) -> tuple[dict, Any, int, int]:
        width = pad_to or int(max(lengths))
        ids = torch.zeros(len(lengths), width, dtype=torch.long)  # pad id 0, right padding
        mask = torch.zeros(len(lengths), width, dtype=torch.long)
        for i, n in enumerate(lengths):
            ids[i, 0] = 1  # BOS
            ids[i, 1:n] = torch.randint(3, args.vocab, (int(n) - 1,), generator=gen)
            mask[i, :n] = 1
        return ({"input_ids": ids.to(device), "attention_mask": mask.to(device)}, labels_for(len(lengths)),
                int(sum(lengths)), ids.numel())

    def measure(steps: list, run, samples: int, real_tokens: int, padded_tokens: int, **row) -> dict:
        """A warm-up pass over `steps`, then --repeats timed passes; the fastest pass's mean step time."""
        for item in steps:
            run(item)
        sync()
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        passes = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for item in steps:
                run(item)
            sync()
            passes.append((time.perf_counter() - t0) / len(steps))
        seconds = min(passes)
        return {**common, **row, "steps": len(steps), "time_per_step_s": seconds, "passes_s": passes,
                "samples_per_s": samples / seconds, "tokens_per_s": real_tokens / seconds,
                "padded_tokens_per_s": padded_tokens / seconds, "pad_fraction": 1 - real_tokens / padded_tokens,
                "tflops": 6 * active * real_tokens / seconds / 1e12,
                "peak_fraction": 6 * active * real_tokens / seconds / 1e12 / args.peak_tflops,
                "epoch_s": args.epoch_rows / (samples / seconds),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None, "status": "ok"}

    rows: list[dict] = []
    prepared: list = []  # (row kwargs, steps, run, samples, real tokens, padded tokens)
    started = time.perf_counter()
    n = args.steps
    if args.only == "original":
        steps = [[embedding_batch(8) for _ in range(4)] for _ in range(n)]
        prepared.append((dict(variant="b8 x ga4", batch=8, grad_accum=4, soft_tokens=1), steps, train_step,
                         32, 32, 32))
    elif args.only == "embedding-big":
        tried = []
        for size in sorted(ints(args.big_batches), reverse=True):
            try:
                train_step([embedding_batch(size)])
                tried.append(f"{size}:ok")
                break
            except torch.OutOfMemoryError:
                tried.append(f"{size}:OOM")
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
        else:
            raise RuntimeError(f"no batch size of {args.big_batches} fits ({tried})")
        steps = [[embedding_batch(size)] for _ in range(n)]
        prepared.append((dict(variant=f"largest fitting ({' '.join(tried)})", batch=size, grad_accum=1,
                              soft_tokens=soft), steps, train_step, size, size * soft, size * soft))
    elif args.only in ("text", "text-nockpt"):
        for budget in ints(args.text_budgets.replace("none", "")):
            from emo_hf.batching import TokenBudgetBatchSampler, bucket_lengths, bucket_of

            lengths = sample_lengths(args.epoch_rows, rng)  # a whole epoch's lengths; n of its batches are timed
            sampler = TokenBudgetBatchSampler(lengths, budget, bucket_lengths(args.max_length), seed=0)
            # The n timed batches are spread evenly over the epoch's batches ordered by padded size, so their mean
            # (rows, tokens, time) stands for the whole epoch's; then shuffled.
            epoch = sorted(sampler, key=lambda b: (len(b) * bucket_of(int(lengths[b].max()), sampler.buckets), b[0]))
            picks = np.unique(np.linspace(0, len(epoch) - 1, min(n, len(epoch))).round().astype(int))
            chunks = [lengths[epoch[i]] for i in rng.permutation(picks)]
            made = [text_batch(c, bucket_of(int(c.max()), sampler.buckets)) for c in chunks]
            mean_rows = sum(len(c) for c in chunks) / len(chunks)
            prepared.append((dict(variant=f"token budget {budget} (emo_hf.batching)", batch=round(mean_rows, 1),
                                  grad_accum=1, batches_per_epoch=len(sampler)), [[m[:2]] for m in made], train_step,
                             mean_rows, sum(m[2] for m in made) / len(made), sum(m[3] for m in made) / len(made)))
        for size in ints(args.text_batches):
            lengths = sample_lengths(size * n, rng)
            for batching in [v for v in args.text_variants.split(",") if v]:
                if batching == "grouped":
                    order = np.sort(lengths)
                    chunks = [order[i * size:(i + 1) * size] for i in range(n)]
                    chunks = [chunks[i] for i in rng.permutation(n)]
                else:
                    chunks = [lengths[i * size:(i + 1) * size] for i in range(n)]
                made = [text_batch(c, MAX_TOKENS if batching == "max" else None) for c in chunks]
                prepared.append((dict(variant=batching, batch=size, grad_accum=1), [[m[:2]] for m in made],
                                 train_step, size, sum(m[2] for m in made) / n, sum(m[3] for m in made) / n))
    else:  # inference: the predict_proba API on texts whose word-level tokens have GoEmotions lengths
        sys.path.insert(0, str(REPO / "scripts"))
        from gpu_check import WORDS

        words = WORDS[4:]
        size = 64
        lengths = sample_lengths(size * n, rng)
        texts = [" ".join(words[j] for j in rng.integers(len(words), size=int(k))) for k in lengths]
        by_length = [texts[i] for i in np.argsort(lengths, kind="stable")]
        model.eval()
        for name, ordered in (("random order", texts), ("length-sorted", by_length)):
            batches = [ordered[i * size:(i + 1) * size] for i in range(n)]
            padded = sum(max(len(t.split()) for t in b) * len(b) for b in batches) / n
            prepared.append((dict(variant=f"predict_proba, {name}", batch=size, grad_accum=1), batches,
                             lambda b: model.predict_proba(b, batch_size=size), size, float(lengths.sum()) / n, padded))
        # The library's own sort: all texts in one call (predict_proba orders them by length and restores the order).
        prepared.append((dict(variant="predict_proba, all texts in one call (sorts internally)", batch=size,
                              grad_accum=1), [texts], lambda b: model.predict_proba(b, batch_size=size), size * n,
                         float(lengths.sum()), sum(max(len(t.split()) for t in b) * len(b) for b in
                                                   [by_length[i * size:(i + 1) * size] for i in range(n)])))
    for _, steps, run, *_ in prepared:  # first compile (Unsloth: ~40 s) before the gate, overlapping other loads
        run(steps[0])
    timings["prepare_s"] = time.perf_counter() - started

    gate("time", args)  # the full warm-up passes run after the gate: nothing else runs on the GPU meanwhile
    started = time.perf_counter()
    for row, steps, run, samples, real, padded in prepared:
        try:
            rows.append(measure(steps, run, samples, real, padded, **row))
        except torch.OutOfMemoryError as error:
            rows.append({**common, **row, "status": f"OOM: {str(error)[:200]}"})
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    timings["measure_s"] = time.perf_counter() - started
    if args.only == "inference":
        for row in rows:
            row.pop("tflops", None)  # 6N counts training; the no-grad forward is 2N per token
            row.pop("peak_fraction", None), row.pop("epoch_s", None)
            if "time_per_step_s" in row:
                row["tflops_forward"] = 2 * active * row["tokens_per_s"] / 1e12
    print("@RESULT " + json.dumps({"rows": rows, "env": environment(torch), "timings": timings}), flush=True)
    return 0


def build_main(args: argparse.Namespace) -> int:
    """Build one random base model per layer count with scripts/gpu_check.py's build_base."""
    import torch

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    device = "cpu" if args.cpu else "cuda"
    env = environment(torch)
    print("@ENV " + json.dumps(env), flush=True)
    for layers in ints(args.build):
        shape = argparse.Namespace(**{**vars(args), "layers": layers})
        folder = Path(args.scratch) / f"base-{layers}"
        if args.prequantized and not args.cpu:
            build_prequantized(shape, folder, gpu_check.make_tokenizer())
        else:
            gpu_check.build_base(shape, folder, device, gpu_check.Report())
        print(f"@BUILT {layers} {folder}", flush=True)
    return 0


def build_prequantized(shape: argparse.Namespace, folder: Path, tokenizer) -> None:
    """A random MistralForCausalLM checkpoint saved directly in bitsandbytes' 4-bit format, one layer at a time.

    Each linear weight is drawn in bf16 on the GPU (normal, std 0.02), quantised with bitsandbytes' own
    `quantize_4bit` (NF4, blocksize 64, double-quantised scales: what Params4bit does when transformers quantises
    at load), and written with the keys Linear4bit's state_dict uses (`weight` + `weight.absmax`, `.quant_map`,
    `.nested_absmax`, `.nested_quant_map`, `.quant_state.bitsandbytes__nf4`); embeddings, norms and the LM head stay
    bf16. config.json carries the quantization_config, so transformers and Unsloth load it as pre-quantised. The full
    bf16 model never exists: peak GPU memory is one layer, disk ~0.29 GB per layer + 2.7 GB.
    """
    import torch
    from bitsandbytes.functional import quantize_4bit
    from safetensors.torch import save_file
    from transformers import BitsAndBytesConfig, MistralConfig

    started = time.perf_counter()
    config = MistralConfig(
        hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        vocab_size=shape.vocab, max_position_embeddings=4096, rms_norm_eps=1e-5, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta}, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="bfloat16", architectures=["MistralForCausalLM"])
    config.quantization_config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16).to_dict()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    h, q_out, kv_out = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    linears = {"self_attn.q_proj": (q_out, h), "self_attn.k_proj": (kv_out, h), "self_attn.v_proj": (kv_out, h),
               "self_attn.o_proj": (h, q_out), "mlp.gate_proj": (shape.intermediate, h),
               "mlp.up_proj": (shape.intermediate, h), "mlp.down_proj": (h, shape.intermediate)}
    weight_map: dict[str, str] = {}
    total = 0

    def rand(*size: int) -> "torch.Tensor":
        return torch.randn(*size, device="cuda", dtype=torch.bfloat16, generator=gen).mul_(0.02)

    def write(tensors: dict, name: str) -> None:
        nonlocal total
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(tensors, str(tmp / name), metadata={"format": "pt"})
        total += sum(v.numel() * v.element_size() for v in tensors.values())
        weight_map.update({k: name for k in tensors})

    ones = torch.ones(h, device="cuda", dtype=torch.bfloat16)
    write({"model.embed_tokens.weight": rand(shape.vocab, h), "model.norm.weight": ones,
           "lm_head.weight": rand(shape.vocab, h)}, "model-embeddings.safetensors")
    for i in range(shape.layers):
        tensors = {f"model.layers.{i}.input_layernorm.weight": ones,
                   f"model.layers.{i}.post_attention_layernorm.weight": ones}
        for name, size in linears.items():
            packed, state = quantize_4bit(rand(*size), blocksize=64, compress_statistics=True, quant_type="nf4",
                                          quant_storage=torch.uint8)
            prefix = f"model.layers.{i}.{name}.weight"
            tensors[prefix] = packed
            tensors.update({f"{prefix}.{k}": v for k, v in state.as_dict(packed=True).items()})
        write(tensors, f"model-layer-{i:03d}.safetensors")
        if i % 10 == 9 or i == shape.layers - 1:
            print(f"  4-bit base: {i + 1}/{shape.layers} layers written ({total / 1e9:.1f} GB, "
                  f"{time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    (tmp / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


# ======================================================================================================================
# Parent: plan, schedule, collect, report
# ======================================================================================================================
@dataclass
class Job:
    name: str
    argv: list[str]
    layers: int = 0
    engine: str = ""
    config: str = ""
    state: str = "pending"  # pending, importing, wait-load, loading, wait-time, timing, done
    proc: subprocess.Popen | None = None
    log: Any = None
    started: float = 0.0
    ended: float = 0.0
    result: dict | None = None
    error: str = ""
    lines: list[str] = field(default_factory=list)


def parent_main(args: argparse.Namespace, argv: list[str]) -> int:
    t_start = time.monotonic()
    deadline = t_start + args.budget
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="emo_gpu_train-")).resolve()
    if scratch == REPO or REPO in scratch.parents:
        print(f"--scratch {scratch} is inside the repository: pick a folder outside it.", file=sys.stderr)
        return 2
    scratch.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.log_dir) if args.log_dir else scratch / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    layers_list = ints(args.layers_list) if args.layers_list else [args.layers]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()] + (["inference"] if args.inference else [])
    more = [c.strip() for c in args.more_layers_configs.split(",") if c.strip()]
    shape = ["--hidden", args.hidden, "--intermediate", args.intermediate, "--heads", args.heads, "--kv-heads",
             args.kv_heads, "--head-dim", args.head_dim, "--vocab", args.vocab, "--rope-theta", args.rope_theta]
    common = [str(x) for x in shape + ["--soft-tokens", args.soft_tokens, "--big-batches", args.big_batches,
                                       "--text-batches", args.text_batches, "--text-variants", args.text_variants,
                                       "--text-budgets", args.text_budgets or "none", "--peak-tflops", args.peak_tflops,
                                       "--epoch-rows", args.epoch_rows, "--steps", args.steps, "--repeats", args.repeats,
                                       "--max-length", args.max_length]] + (["--cpu"] if args.cpu else []) + (
                                       ["--prequantized"] if args.prequantized else [])
    me = [sys.executable, str(Path(__file__).resolve())]
    jobs = [Job("build", me + ["--build", ",".join(map(str, layers_list)), "--scratch", str(scratch)] + common)]
    for i, layers in enumerate(layers_list):
        for engine in engines:
            for config in (configs if i == 0 else [c for c in configs if c in more]):
                jobs.append(Job(f"{engine}-L{layers}-{config}", me + [
                    "--only", config, "--engine", engine, "--layers", str(layers), "--gated",
                    "--base", str(scratch / f"base-{layers}")] + common, layers, engine, config))
    built: set[int] = set()
    env: dict[str, Any] = {"shape": f"hidden {args.hidden}, MLP {args.intermediate}, heads {args.heads}/"
                           f"{args.kv_heads} KV, head_dim {args.head_dim}, vocab {args.vocab}"}
    events: queue.Queue = queue.Queue()
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])), PYTHONUNBUFFERED="1")

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f} s] {text}", file=sys.stderr, flush=True)

    def reader(job: Job) -> None:
        for line in job.proc.stdout:
            events.put((job, line.rstrip("\n")))
        events.put((job, None))

    def start(job: Job) -> None:
        work = scratch / "work" / job.name  # own cwd: Unsloth writes its compiled cache there
        work.mkdir(parents=True, exist_ok=True)
        job.log = open(log_dir / f"{job.name}.log", "w")
        job.proc = subprocess.Popen(job.argv, cwd=work, env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=job.log, text=True, bufsize=1, start_new_session=True)
        job.state, job.started = "importing", time.monotonic()
        threading.Thread(target=reader, args=(job,), daemon=True).start()
        say(f"{job.name}: started (pid {job.proc.pid})")

    def go(job: Job, state: str) -> None:
        job.state = state
        job.proc.stdin.write("go\n")
        job.proc.stdin.flush()
        say(f"{job.name}: {state}")

    def finish(job: Job, error: str = "") -> None:
        if job.proc.poll() is None:
            os.killpg(job.proc.pid, signal.SIGKILL)  # the child's own session: it and its compile workers
            job.proc.wait()
        job.ended, job.state = time.monotonic(), "done"
        if job.result is None and not (job.name == "build" and job.proc.returncode == 0):
            job.log.flush()
            tail = (log_dir / f"{job.name}.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            job.error = error or f"exit {job.proc.returncode}: {tail[0][-400:]} (see {job.name}.log)"
        job.log.close()
        say(f"{job.name}: {'FAILED ' + job.error[:300] if job.error else 'ok'} ({job.ended - job.started:.0f} s)")

    start(jobs[0])
    while any(j.state != "done" for j in jobs):
        if time.monotonic() > deadline:
            for job in jobs:
                if job.state == "pending":
                    job.state, job.error = "done", "skipped: --budget exhausted before it started"
                elif job.state != "done":
                    finish(job, f"killed at the --budget of {args.budget:.0f} s while {job.state}")
            break
        building = jobs[0].state != "done"
        for job in jobs[1:]:
            if not building and job.layers not in built and job.state != "done":
                if job.proc is not None:
                    finish(job, f"no base model with {job.layers} layer(s): see build.log")
                else:
                    job.state, job.error = "done", f"skipped: no base model with {job.layers} layer(s)"
        try:
            job, line = events.get(timeout=0.5)
            if line is None:
                finish(job)
            elif line.startswith("@WAIT "):
                job.state = "wait-" + line.split()[1]
            elif line.startswith("@RESULT "):
                job.result = json.loads(line[len("@RESULT "):])
            elif line.startswith("@BUILT "):
                built.add(int(line.split()[1]))
                say(f"base model with {line.split()[1]} layer(s) built")
            elif line.startswith("@ENV "):
                env.update(json.loads(line[len("@ENV "):]))
            else:
                job.log.write(line + "\n")
        except queue.Empty:
            pass
        # Timing is exclusive: nothing else builds, imports, loads or warms up meanwhile. So children start in
        # waves: a new one only when no child waits to be timed.
        states = [j.state for j in jobs[1:]]
        loadable = [j for j in jobs if j.state == "wait-load" and j.layers in built]
        if "timing" in states:
            continue
        if loadable:
            for job in loadable:
                go(job, "loading")
        elif "wait-time" in states:
            if not building and "importing" not in states and "loading" not in states:
                go(next(j for j in jobs if j.state == "wait-time"), "timing")
        else:
            live = sum(state not in ("pending", "done") for state in states)
            for job in jobs[1:]:
                if job.state == "pending" and live < args.parallel:
                    start(job)
                    live += 1

    rows: list[dict] = []
    children = []
    env["engines"] = {}
    for job in jobs[1:]:
        if job.result:
            rows += job.result["rows"]
            env["engines"][job.engine] = job.result["env"]
        else:
            rows.append({"engine": job.engine, "config": job.config, "layers": job.layers, "status": job.error})
        children.append({"job": job.name, "seconds": round((job.ended or time.monotonic()) - job.started, 1)
                         if job.started else None, "timings": (job.result or {}).get("timings"), "error": job.error})
    fits = extrapolate(rows, args.to_layers) if args.extrapolate else []
    print(markdown(rows, fits, args.to_layers, env))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join([sys.executable] + argv),
            "environment": env, "wall_s": round(time.monotonic() - t_start, 1), "rows": rows,
            "extrapolation": fits, "children": children, "build": {"error": jobs[0].error}}, indent=2))
        logs = Path(args.json).with_suffix(".logs.txt")
        logs.write_text("".join(f"===== {job.name} =====\n" + (log_dir / f"{job.name}.log").read_text(errors="replace")
                                for job in jobs if (log_dir / f"{job.name}.log").is_file()))
        print(f"\nwrote {args.json} and the child logs to {logs}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if any(r.get("status") == "ok" for r in rows) else 1


def extrapolate(rows: list[dict], to_layers: int) -> list[dict]:
    """Least-squares time = a + b*layers (and peak = c + d*layers) per (engine, config, variant, batch)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok":
            groups.setdefault((r["engine"], r["config"], r["variant"], r["batch"]), []).append(r)
    fits = []
    for (engine, config, variant, batch), rs in groups.items():
        xs = [r["layers"] for r in rs]
        if len(set(xs)) < 2:
            continue

        def line(ys: list[float]) -> tuple[float, float]:
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            return my - b * mx, b

        a, b = line([r["time_per_step_s"] for r in rs])
        t = a + b * to_layers
        samples = rs[0]["samples_per_s"] * rs[0]["time_per_step_s"]
        tokens = rs[0]["tokens_per_s"] * rs[0]["time_per_step_s"]
        fit = {"engine": engine, "config": config, "variant": variant, "batch": batch, "layers_measured": sorted(xs),
               "a_s": a, "b_s_per_layer": b, "layers": to_layers, "time_per_step_s": t,
               "samples_per_s": samples / t, "tokens_per_s": tokens / t, "kind": "extrapolation"}
        if all(r.get("peak_gib") is not None for r in rs):
            c, d = line([r["peak_gib"] for r in rs])
            fit["peak_gib"] = c + d * to_layers
        fits.append(fit)
    return fits


def human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def markdown(rows: list[dict], fits: list[dict], to_layers: int, env: dict) -> str:
    def num(value: Any, fmt: str, scale: float = 1.0) -> str:
        return "" if value is None else format(scale * value, fmt)

    versions = {k: v for e in env.get("engines", {}).values() for k, v in e.items() if k in (
        "transformers", "peft", "bitsandbytes", "unsloth") and v}
    out = [f"{env.get('gpu') or 'CPU'}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
           + ", ".join(f"{k} {v}" for k, v in versions.items()) + "; random-weight Mistral, "
           + ("4-bit, bf16 autocast, gradient checkpointing (not in text-nockpt)" if env.get("gpu")
              else "fp32, no quantisation")
           + f", shape {env.get('shape')}, LoRA r=16, focal loss. Step = one optimizer step; tokens = real (non-pad) tokens; "
           "TFLOP/s = 6 * N_active * tokens / time (inference: 2 * N_active).", "",
           "| engine | layers | config | variant | batch x accum | step (ms) | samples/s | tokens/s | pad % "
           "| TFLOP/s | % of peak | epoch (s) | peak GiB | params active / trainable | status |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = r.get("status") == "ok"
        params = f"{human(r['params_active'])} / {human(r['params_trainable'])}" if "params_active" in r else ""
        out.append(" | ".join([
            "", r["engine"], str(r["layers"]), r["config"], r.get("variant", ""),
            f"{r['batch']} x {r['grad_accum']}" if "batch" in r else "",
            num(r.get("time_per_step_s"), ".1f", 1e3), num(r.get("samples_per_s"), ",.1f"),
            num(r.get("tokens_per_s"), ",.0f"), num(r.get("pad_fraction"), ".0f", 100),
            num(r.get("tflops", r.get("tflops_forward")), ".3g"),
            num(r.get("peak_fraction") if "tflops" in r else None, ".1f", 100),
            num(r.get("epoch_s") if "tflops" in r else None, ",.0f"), num(r.get("peak_gib"), ".2f"), params,
            "ok" if ok else str(r.get("status"))[:160].replace("|", "/"), ""]).strip())
    if fits:
        out += ["", f"EXTRAPOLATION to {to_layers} layers (least-squares time = a + b * layers over the measured "
                "layer counts; not a measurement):", "",
                "| engine | config | variant | batch | layers measured | a (ms) | b (ms/layer) "
                f"| step at {to_layers} (ms) | samples/s | tokens/s | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in fits:
            out.append(f"| {f['engine']} | {f['config']} | {f['variant']} | {f['batch']} | "
                       f"{','.join(map(str, f['layers_measured']))} | {1e3 * f['a_s']:.1f} | "
                       f"{1e3 * f['b_s_per_layer']:.2f} | {1e3 * f['time_per_step_s']:.0f} | "
                       f"{f['samples_per_s']:,.1f} | {f['tokens_per_s']:,.0f} | {num(f.get('peak_gib'), '.1f')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.build:
        return build_main(args)
    if args.only:
        return child_main(args)
    return parent_main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
