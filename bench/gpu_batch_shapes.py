#!/usr/bin/env python
"""Do fewer batch shapes shorten a compiled run's start-up under CUDA graphs? (`--fixed-batch-shapes`)

    python bench/gpu_batch_shapes.py --data DATA --out DIR                  # on the GPU: 4 layers, both runs
    python bench/gpu_batch_shapes.py --data DATA --out DIR --layers 1 -- --no-compile --train-subset 300   # smoke

Builds a random decoder of Qwen2.5-0.5B's layer shape (hidden 896, 14 query / 2 key-value heads, MLP 4864; `--layers`
of them) with emo_hf's word-level test tokenizer (emo_hf.backbones.tiny: most GoEmotions words become the unknown
token, so rows are about one token per word), then trains it one epoch with the `qwen2.5-0.5b` preset (the layer loop
compiled as one region with CUDA graphs, 8,192-token batches) twice, each in a process and an empty inductor cache of
its own: as it is, and with `--fixed-batch-shapes`. Prints each run's batch shapes and step_timing (the first step,
the slow steps and their seconds above the median: on the H200 the real model's cold and warm runs each spent ~28 s
in 26 slow steps besides the first, which fits two per new batch shape, docs/benchmarks.md). Arguments after `--` go
to both `emo-hf train` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def build_backbone(folder: Path, layers: int) -> None:
    import torch
    from transformers import AutoModel, Qwen2Config

    from emo_hf.backbones.tiny import make_family_tokenizer

    tokenizer = make_family_tokenizer("qwen2")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=896, intermediate_size=4864, num_hidden_layers=layers,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an `emo-hf data build` folder (--raw-only is enough)")
    parser.add_argument("--out", required=True, help="a new folder for the backbone and both runs")
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    backbone = out / "backbone"
    build_backbone(backbone, args.layers)
    results = {}
    for name, flags in (("as-is", []), ("fixed-shapes", ["--fixed-batch-shapes"])):
        run = out / name
        command = [sys.executable, "-m", "emo_hf", "train", "--data", args.data, "--preset", "qwen2.5-0.5b",
                   "--backbone", str(backbone), "--prompt", "plain", "--epochs", "1", "--reload-check-rows", "0",
                   "--out", str(run), *flags, *extra]
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(out / f"inductor-{name}")}
        started = time.time()
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        info_file = run / "model" / "training_info.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        results[name] = {"returncode": code, "process_seconds": round(time.time() - started, 1),
                         "train_seconds": info.get("train_seconds"),
                         "batches_per_epoch": (info.get("batching") or {}).get("batches_per_epoch"),
                         "distinct_batch_shapes": (info.get("batching") or {}).get("distinct_batch_shapes"),
                         "step_timing": info.get("step_timing"), "compile": info.get("compile")}
        print(name, json.dumps(results[name]), flush=True)
    (out / "batch_shapes.json").write_text(json.dumps({"layers": args.layers, "extra": extra, **results}, indent=1))
    return 0 if all(r["returncode"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
