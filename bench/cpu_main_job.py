"""The CPU main job's stages, before and after, side by side in one run: embedding texts/s per backend and training
samples/s per setting, each with the number that says whether the results changed.

    python bench/cpu_main_job.py --json /tmp/cpu_main_job.json                 # ~10 min on a quiet 2-core VM
    python bench/cpu_main_job.py --quick                                        # smoke: a few texts and steps
    python bench/cpu_main_job.py --compare-builds runs/torch/data runs/onnx/data   # ISMOTE rows + embedding baseline
    python bench/cpu_main_job.py --skip embedding --threads 1                   # training work ratios on a busy VM

Why side by side: the 2-core VM is shared with other jobs, so absolute rates move with the load (printed before and
after); every configuration runs interleaved with the others on the same texts and batches, so their ratios hold.

- **embedding**: the first N GoEmotions train texts (file order), `torch` = sentence-transformers `encode` as the job
  did before (batch 128), `onnx` = `emo_hf.data.onnx_encoder` (batch 64 and 128); max |difference| and the smallest
  cosine to the torch vectors.
- **training**: the `minilm` preset's model (all-MiniLM-L6-v2 + head, focal γ=1, AdamW as the Trainer sets it up),
  real train texts in length-grouped batches of 32 (transformers' megabatch scheme: 50 batches drawn at random, sorted
  by length), timed forward + backward + optimiser step. Settings: `pad8` (pad to a multiple of 8, before), `nopad`
  (to the batch's longest, after: the CPU default now), `bf16` (autocast on the CPU, measured only), `frozen
  embeddings` and `frozen embeddings + 2 layers` (float32 with a cheaper backward, measured only). Each setting's
  logits on the same batch with the same weights are compared with `nopad`'s.
- **--compare-builds A B**: two dataset folders built from the same source with different embedding backends: the
  balanced train rows (which rows ISMOTE picked, how far the synthetic vectors differ) and the frozen-embedding
  baseline's test macro-F1 (validation-tuned thresholds and at 0.5) for each.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def goemotions(split: str = "train") -> list[str]:
    folder = Path(os.environ.get("EMO_HF_GOEMOTIONS") or REPO.parent / "shared" / "goemotions")
    name = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}[split]
    with open(folder / name, encoding="utf-8", newline="") as handle:
        return [row[0] for row in csv.reader(handle, delimiter="\t")]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_embedding(texts: list[str], reps: int) -> list[dict]:
    import tempfile

    from emo_hf.data.embedding import DEFAULT_ENCODER, load_encoder
    from emo_hf.data.onnx_encoder import OnnxSentenceEncoder

    torch_model = load_encoder(DEFAULT_ENCODER, device="cpu")
    started = time.perf_counter()
    onnx_model = OnnxSentenceEncoder(DEFAULT_ENCODER, model=torch_model, cache_dir=tempfile.mkdtemp(prefix="bench-onnx-"))
    export_seconds = time.perf_counter() - started
    configs = {
        "torch b128 (before)": lambda: torch_model.encode(texts, batch_size=128, convert_to_numpy=True),
        "onnx b64 (after)": lambda: onnx_model.encode(texts, batch_size=64),
        "onnx b128": lambda: onnx_model.encode(texts, batch_size=128),
    }
    seconds = {name: [] for name in configs}
    vectors = {}
    for _ in range(reps):  # interleaved: every configuration sees the same stretch of load
        for name, run in configs.items():
            started = time.perf_counter()
            vectors[name] = run()
            seconds[name].append(time.perf_counter() - started)
    reference = vectors["torch b128 (before)"]
    rows = []
    for name in configs:
        v = vectors[name]
        cosine = (v * reference).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(reference, axis=1)
        best = min(seconds[name])
        rows.append({"config": name, "texts": len(texts), "best_s": round(best, 2), "texts_per_s": round(len(texts) / best, 1),
                     "all_s": [round(s, 2) for s in seconds[name]], "max_abs_diff": float(np.abs(v - reference).max()),
                     "min_cosine": float(cosine.min())})
    base = rows[0]["texts_per_s"]
    for row in rows:
        row["ratio"] = round(row["texts_per_s"] / base, 2)
    rows[1]["export_s"] = round(export_seconds, 1)
    return rows


def grouped_batches(tokenizer, texts: list[str], n_batches: int, batch_size: int, seed: int) -> list[list[str]]:
    """Batches as transformers' LengthGroupedSampler makes them: a random megabatch of 50 batches, sorted by length."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts), size=50 * batch_size, replace=False)
    lengths = [len(ids) for ids in tokenizer([texts[i] for i in pick])["input_ids"]]
    ordered = [texts[pick[i]] for i in np.argsort(lengths)[::-1]]
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.choice(len(batches), size=n_batches, replace=False)]


def bench_training(texts: list[str], n_batches: int, batch_size: int = 32) -> list[dict]:
    import copy

    import torch

    from emo_hf.presets import get_preset
    from emo_hf.trainer import build_model

    settings = get_preset("minilm")
    labels = [f"label{i}" for i in range(15)]
    torch.manual_seed(0)
    base = build_model(settings, labels)
    tokenizer = base.tokenizer
    batches = grouped_batches(tokenizer, texts, n_batches + 1, batch_size, seed=0)
    rng = np.random.default_rng(1)
    targets = [torch.tensor((rng.random((len(b), 15)) < 0.08).astype(np.float32)) for b in batches]
    configs = {"pad8 (before)": (8, False), "nopad (after)": (None, False),
               "bf16 autocast (the preset, where native)": (None, True),
               # float32, cheaper backward: the embeddings (and the lowest layers) frozen; measured, not adopted
               # (docs/benchmarks.md, "A CPU without AVX-512": validation macro-F1 fell)
               "frozen embeddings (not adopted)": (None, False),
               "frozen embeddings + 2 layers (not adopted)": (None, False)}
    frozen_layers = {"frozen embeddings (not adopted)": 0, "frozen embeddings + 2 layers (not adopted)": 2}
    state = {}
    for name in configs:
        model = copy.deepcopy(base).train()
        if name in frozen_layers:
            from emo_hf.backbones.compilation import repeated_layers

            model.backbone.embeddings.requires_grad_(False)
            for layer in repeated_layers(model.backbone)[:frozen_layers[name]]:
                layer.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        # the Trainer's default optimiser (transformers 5.17: adamw_torch_fused) with the preset's learning rate and
        # weight decay
        state[name] = (model, torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                                fused=True))

    def encode(batch, multiple):
        return tokenizer(batch, truncation=True, max_length=settings.max_length, padding=True,
                         pad_to_multiple_of=multiple, return_tensors="pt")

    # same weights, same batch: how far each setting's logits are from nopad's (eval mode, no dropout)
    logit_diff = {}
    with torch.no_grad():
        base.eval()
        reference = base(**encode(batches[0], None)).logits
        for name, (multiple, bf16) in configs.items():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = base(**encode(batches[0], multiple)).logits.float()
            logit_diff[name] = float((logits - reference).abs().max())
    seconds = {name: 0.0 for name in configs}
    cpu_seconds = {name: 0.0 for name in configs}  # process CPU time: the work done, less sensitive to other jobs
    tokens = {name: 0 for name in configs}
    for step, (batch, target) in enumerate(zip(batches, targets)):
        for name, (multiple, bf16) in configs.items():  # interleaved per batch
            model, optimizer = state[name]
            inputs = encode(batch, multiple)
            started, cpu_started = time.perf_counter(), time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**inputs, labels=target).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step > 0:  # the first batch warms up
                seconds[name] += time.perf_counter() - started
                cpu_seconds[name] += time.process_time() - cpu_started
                tokens[name] += int(inputs["input_ids"].numel())
    samples = n_batches * batch_size
    rows = [{"config": name, "threads": torch.get_num_threads(), "steps": n_batches, "seconds": round(seconds[name], 2),
             "samples_per_s": round(samples / seconds[name], 1), "cpu_seconds": round(cpu_seconds[name], 2),
             "samples_per_cpu_s": round(samples / cpu_seconds[name], 1),
             "padded_tokens_per_sample": round(tokens[name] / samples, 1),
             "max_abs_logit_diff_vs_nopad": logit_diff[name]} for name in configs]
    for row in rows:
        row["ratio"] = round(row["samples_per_s"] / rows[0]["samples_per_s"], 2)
        row["cpu_ratio"] = round(row["samples_per_cpu_s"] / rows[0]["samples_per_cpu_s"], 2)
    return rows


def compare_builds(first: str, second: str, caches: list[str] | None = None) -> dict:
    from emo_hf.baselines import embedding_logreg_baseline
    from emo_hf.data.builder import load_built
    from emo_hf.data.embedding import embed_texts
    from emo_hf.metrics import multilabel_metrics, tune_thresholds

    out: dict = {}
    data, backends = {}, {}
    for folder in (first, second):
        info = json.loads((Path(folder) / "build_info.json").read_text())
        data[folder] = load_built(folder, "balanced")
        backends[folder] = info.get("embedding_backend", "torch")  # builds before backends were recorded: torch
        out[folder] = {"embedding_backend": backends[folder], "embed_seconds": (info.get("seconds") or {}).get("embed"),
                       "synthetic_rows": info["synthetic_rows"]}
    a, b = (data[f]["train"] for f in (first, second))
    # rows whose value differs between the two builds, per column (ISMOTE's picks: seed and neighbour)
    differ = {c: int(sum(x != y for x, y in zip(list(a[c]), list(b[c])))) for c in ("id", "seed_id", "neighbor_id", "labels")}
    ea, eb = (np.asarray(d["embedding"], dtype=np.float32) for d in (a, b))
    synthetic = np.asarray(a["is_synthetic"])
    other_neighbour = np.asarray([x != y for x, y in zip(list(a["neighbor_id"]), list(b["neighbor_id"]))])
    out["balanced_train"] = {"rows": len(a), "synthetic": int(synthetic.sum()), "rows_differing_per_column": differ,
                             "max_abs_diff_all_rows": float(np.abs(ea - eb).max()) if ea.shape == eb.shape else None,
                             "max_abs_diff_rows_with_another_neighbour": float(np.abs(ea[other_neighbour] - eb[other_neighbour]).max())
                             if ea.shape == eb.shape and other_neighbour.any() else None}
    for index, folder in enumerate((first, second)):
        # the baseline as `emo-hf evaluate` fits it: natural train rows, vectors from the build's cache and backend
        raw = load_built(folder, "raw")
        names = raw["train"].features["emotions"].feature.names
        y = {s: np.asarray(raw[s]["labels"], dtype=np.float32) for s in ("train", "validation", "test")}
        cache = caches[index] if caches else None
        vectors = {s: embed_texts(list(raw[s]["text"]), cache_dir=cache, backend=backends[folder], show_progress=False)
                   for s in ("train", "validation", "test")}
        probs = embedding_logreg_baseline(vectors["train"], y["train"], {k: vectors[k] for k in ("validation", "test")})
        thresholds = tune_thresholds(y["validation"], probs["validation"])
        out[folder]["embedding_baseline_test_macro_f1"] = {
            "tuned": round(multilabel_metrics(y["test"], probs["test"], thresholds, names)["macro_f1"], 4),
            "at_0.5": round(multilabel_metrics(y["test"], probs["test"], 0.5, names)["macro_f1"], 4)}
        out[folder]["_vectors"] = vectors
    va, vb = out[first].pop("_vectors"), out[second].pop("_vectors")
    out["raw_vectors_max_abs_diff"] = {s: float(np.abs(va[s] - vb[s]).max()) for s in va}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000, help="train texts to embed per configuration")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions of the embedding configurations")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setting (+1 warm-up)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 texts, 1 rep, 3 steps")
    parser.add_argument("--skip", choices=["embedding", "training"], action="append", default=[])
    parser.add_argument("--compare-builds", nargs=2, metavar=("BUILD_A", "BUILD_B"))
    parser.add_argument("--caches", nargs=2, metavar=("CACHE_A", "CACHE_B"),
                        help="the embedding cache folder of each build (default: the default cache for both)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. the cores); 1 makes "
                        "the CPU-time ratios exact on a loaded machine (no thread waits for another)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.reps, args.steps = 200, 1, 3
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": " ".join(["python", *sys.argv]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
                         f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)",
              "load_before": load()}
    texts = goemotions("train")
    if args.compare_builds:
        result["compare_builds"] = compare_builds(*args.compare_builds, caches=args.caches)
    else:
        if "embedding" not in args.skip:
            result["embedding"] = bench_embedding(texts[: args.texts], args.reps)
            result["load_after_embedding"] = load()
        if "training" not in args.skip:
            result["training"] = bench_training(texts, args.steps)
    result["load_after"] = load()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
