#!/usr/bin/env python
"""Where `predict_proba`'s time goes, batch by batch: tokenizing on the host, the forward, and the kernels inside it.

On an H100 the real Qwen2.5-Coder-0.5B's `emo-hf evaluate` predicted the 5,427 test texts in 8.8 s (617 texts/s, ~100
ms per batch of 64; docs/benchmarks.md), where its arithmetic needs well under a second: this says which part of a
batch is the rest.

    python bench/predict_profile.py --model runs/q05/model --data DATA --json out.json     # a trained model folder
    python bench/predict_profile.py --cpu --data runs/default/data                          # logic check: tiny model

Times each part of `predict_proba`'s loop for --batches batches of --batch-size test texts (sorted by length, as
predict_proba sorts them), with a device synchronisation after each part, then runs the same batches under
torch.profiler and prints the top operators by host time and by device time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a trained model folder (emo-hf train's OUT/model)")
    p.add_argument("--data", required=True, help="a dataset folder written by `emo-hf data build`: its test texts")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=20, help="batches timed (after 3 warm-up batches)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--cpu", action="store_true", help="a tiny random Qwen2 on the CPU (smoke test)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))

    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from emo_hf.data.builder import load_built

    if args.cpu:
        from emo_hf.backbones import load_for_training
        from emo_hf.backbones.tiny import build_tiny_model

        folder = build_tiny_model("qwen2", Path(tempfile.mkdtemp()) / "tiny-qwen2")
        model = load_for_training(str(folder), labels=[f"label_{i}" for i in range(15)], lora={"r": 4, "lora_alpha": 8},
                                  max_length=128).eval()
    else:
        from emo_hf.pipeline import load_trained_model

        model = load_trained_model(args.model)
    on_gpu = not args.cpu and torch.cuda.is_available()
    device = model.get_input_embeddings().weight.device
    texts = list(load_built(args.data, "raw")["test"]["text"])
    lengths = [len(ids) for ids in model.tokenizer(model.format_texts(texts), truncation=True,
                                                   max_length=model.config.max_length)["input_ids"]]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    n = args.batch_size
    batches = [[texts[i] for i in order[k * n:(k + 1) * n]] for k in range(3 + args.batches)]

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    def one(batch: list[str], parts: dict[str, float] | None = None) -> None:
        t0 = time.perf_counter()
        encoded = model.tokenize(batch)
        t1 = time.perf_counter()
        moved = {k: v.to(device) for k, v in encoded.items()}
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            logits = model(**moved).logits
        sync()
        t3 = time.perf_counter()
        torch.sigmoid(logits.float()).cpu().numpy()
        t4 = time.perf_counter()
        if parts is not None:
            for name, seconds in (("tokenize", t1 - t0), ("to_device", t2 - t1), ("forward", t3 - t2),
                                  ("to_host", t4 - t3)):
                parts[name] = parts.get(name, 0.0) + seconds

    for batch in batches[:3]:
        one(batch)
    parts: dict[str, float] = {}
    started = time.perf_counter()
    for batch in batches[3:]:
        one(batch, parts)
    wall = time.perf_counter() - started
    per_batch_ms = {name: round(1000 * s / args.batches, 2) for name, s in parts.items()}
    print(f"{args.batches} batches of {n}: {1000 * wall / args.batches:.1f} ms per batch "
          f"({args.batches * n / wall:,.0f} texts/s); parts (ms per batch): {per_batch_ms}", flush=True)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        for batch in batches[3:]:
            one(batch)
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events) if on_gpu else 0
    print(f"kernels: {device_us / 1000 / args.batches:.1f} ms of device time per batch", flush=True)
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    if on_gpu:
        print(events.table(sort_by="self_device_time_total", row_limit=args.top))
    top_host = sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]
    record = {"model": args.model or "tiny-random qwen2 (--cpu)", "device": torch.cuda.get_device_name(0) if on_gpu
              else "CPU", "batch_size": n, "batches": args.batches, "ms_per_batch": round(1000 * wall / args.batches, 2),
              "parts_ms_per_batch": per_batch_ms, "kernel_ms_per_batch": round(device_us / 1000 / args.batches, 2),
              "top_host_ops": [{"name": e.key, "calls_per_batch": e.count / args.batches,
                                "self_host_ms_per_batch": round(e.self_cpu_time_total / 1000 / args.batches, 3)}
                               for e in top_host],
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
