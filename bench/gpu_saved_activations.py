#!/usr/bin/env python
"""What a checkpointed training forward keeps per layer and token, and in which dtype the layers read their input:
the memory plan counts one bf16 vector of the hidden size per token and layer (emo_hf/memory_plan.py); on an H100 at
8 layers the forward kept 1.13 (Unsloth) / 1.26 (bnb), all layer inputs bf16 (docs/benchmarks.md, "The H100/H200 peak
gap is not a commit").

    python bench/gpu_saved_activations.py --layers 8 --json out.json        # GPU: 4-bit, Unsloth and bnb
    python bench/gpu_saved_activations.py --layers 8 --more-rows 256        # + 8,192 tokens in the same process
    python bench/gpu_saved_activations.py --cpu                             # logic check, tiny shape, fp32

Each engine in its own process (importing Unsloth patches transformers): the library's load_for_training with
gradient checkpointing, one warm-up step, then one batch per row count (--rows, then --more-rows) of --length tokens
per row: memory allocated before and after the forward (what the backward will read), the backward's peak, the peak
of each layer's recompute + backward (from one gradient hook on each layer's input to the next), and the dtype of
each decoder layer's input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> dict:
    if args.engine == "unsloth":
        import unsloth  # noqa: F401  (first: it patches transformers and peft)
    import torch

    sys.path.insert(0, str(REPO))
    from emo_hf.backbones import load_for_training

    on_gpu = not args.cpu
    device = "cuda" if on_gpu else "cpu"
    model = load_for_training(args.base, labels=[f"label_{i}" for i in range(28)], input_mode="text", device=device,
                              max_length=128, load_in_4bit=on_gpu, use_unsloth=args.engine == "unsloth",
                              gradient_checkpointing=True, encoder_dim=384, focal_gamma=2.0)
    model.train()
    layers = [m for m in model.backbone.modules() if type(m).__name__.endswith("DecoderLayer")]
    seen: dict[str, int] = {}

    def record(module, positional, keywords):
        hidden = positional[0] if positional else keywords.get("hidden_states")
        if torch.is_tensor(hidden):
            seen[str(hidden.dtype)] = seen.get(str(hidden.dtype), 0) + 1

    per_layer: list[dict] = []  # filled by the backward: one entry per layer, as its input's gradient is made
    watching = {"on": False}

    def layer_backward_done(index: int):
        def hook(grad):
            # The peak since the previous layer's gradient: this layer's recompute + backward (0 on the CPU check).
            per_layer.append({"layer": index, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0,
                              "allocated_gib": torch.cuda.memory_allocated() / 2**30 if on_gpu else 0.0})
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            return grad
        return hook

    def watch(index: int):
        def pre_hook(module, positional, keywords):
            hidden = positional[0] if positional else keywords.get("hidden_states")
            if watching["on"] and torch.is_tensor(hidden) and hidden.requires_grad:
                hidden.register_hook(layer_backward_done(index))
        return pre_hook

    for index, layer in enumerate(layers):
        layer.register_forward_pre_hook(record, with_kwargs=True)
        layer.register_forward_pre_hook(watch(index), with_kwargs=True)
    hidden_size = model.backbone.config.hidden_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (args.rows, args.length), generator=generator)
    ids[:, 0] = 1
    inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
    labels = (torch.rand(args.rows, 28, generator=generator) < 0.12).float().to(device)

    def allocated() -> int:
        if on_gpu:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return 0

    def forward():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=on_gpu):
            return model(**inputs, labels=labels).loss

    forward().backward()  # warm-up: first-step compiles, gradient buffers allocated
    result = {"engine": args.engine, "layers": len(layers), "hidden": hidden_size,
              "embedding_dtype": str(model.get_input_embeddings().weight.dtype), "batches": []}
    for rows in sorted({args.rows, *args.more_rows}):  # the same process, so growth with tokens is not two runs'
        ids = torch.randint(3, 1000, (rows, args.length), generator=generator)
        ids[:, 0] = 1
        inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
        labels = (torch.rand(rows, 28, generator=generator) < 0.12).float().to(device)
        model.zero_grad(set_to_none=True)
        seen.clear()
        per_layer.clear()
        before = allocated()
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        watching["on"] = True
        loss = forward()
        watching["on"] = False
        after = allocated()
        forward_dtypes = dict(seen)  # the layer calls of the forward; the backward's recomputation adds its own
        forward_peak = torch.cuda.max_memory_allocated() if on_gpu else 0
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        loss.backward()
        tail_peak = torch.cuda.max_memory_allocated() if on_gpu else 0  # after the last layer hook: the embeddings
        peak = max([forward_peak, tail_peak] + [entry["peak_gib"] * 2**30 for entry in per_layer])
        tokens = rows * args.length
        kept = after - before
        result["batches"].append({
            "rows": rows, "tokens": tokens, "layer_input_dtypes_forward": forward_dtypes, "layer_calls_in_all": dict(seen),
            "allocated_before_gib": before / 2**30, "kept_by_forward_gib": kept / 2**30,
            "forward_peak_gib": forward_peak / 2**30, "backward_peak_gib": peak / 2**30,
            "kept_bf16_vectors_per_token_and_layer": kept / (tokens * len(layers) * hidden_size * 2),
            "backward_per_layer": per_layer[:]})
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="logic check on the CPU: tiny shape, fp32, no 4-bit")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--rows", type=int, default=128)
    p.add_argument("--length", type=int, default=32, help="tokens per row (rows x length = the batch's tokens)")
    p.add_argument("--more-rows", default="", help="comma list of further row counts measured in the same process "
                   "after --rows (e.g. 256: 8,192 tokens at --length 32)")
    p.add_argument("--engines", default=None, help="comma list of unsloth,bnb (default both; --cpu: cpu)")
    p.add_argument("--json", default=None)
    p.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    p.add_argument("--base", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    try:
        args.more_rows = [int(value) for value in args.more_rows.split(",") if value.strip()]
    except ValueError:
        p.error(f"--more-rows {args.more_rows!r}: give whole row counts separated by commas, e.g. --more-rows 256")
    if args.engine:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    scratch = tempfile.mkdtemp(prefix="saved-activations-")  # the random base (5 GB at 8 layers), removed at the end
    try:
        return run_engines(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_engines(args: argparse.Namespace, scratch: str) -> int:
    build = [sys.executable, str(REPO / "bench" / "gpu_train.py"), "--build", str(args.layers), "--scratch", scratch]
    build += ["--cpu", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2", "--vocab",
              "1000"] if args.cpu else ["--prequantized"]
    subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
    base = str(Path(scratch) / f"base-{args.layers}")
    results = []
    for engine in (args.engines or ("cpu" if args.cpu else "unsloth,bnb")).split(","):
        started = time.perf_counter()
        command = [sys.executable, __file__, "--engine", engine, "--base", base, "--rows", str(args.rows),
                   "--length", str(args.length), "--more-rows", ",".join(map(str, args.more_rows))]
        command += ["--cpu"] if args.cpu else []
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(lines[-1]) if lines else {"engine": engine, "error": done.stderr[-1500:]}
        result["process_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
