"""Benchmarks of `emo-hf predict` (emo_hf/predict_files.py): bounded memory on a long file, and texts/s + test
macro-F1 of PyTorch vs ONNX float32 vs ONNX int8.

    # 1. memory: peak RSS of `emo-hf predict` on 20k and 200k rows (a tiny random model, so the rows, not the
    #    model, are what is measured); flat peak RSS = streaming works
    python bench/predict_files.py memory --rows 20000 200000

    # 2. speed and quality: every GoEmotions row (train + dev + test = 54,263) through each variant of the trained
    #    model; macro-F1 from the output's test rows with the model's validation-tuned thresholds
    python bench/predict_files.py speed --model runs/default/model --variants pytorch onnx onnx-int8
    python bench/predict_files.py speed --model runs/default/model --rows 2000      # smoke run

Each `emo-hf predict` runs as its own process (`python -m emo_hf predict ...`), timed from outside (wall) and
read back from its summary line (texts/s of the prediction loop). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GOEMOTIONS = Path(os.environ.get("EMO_HF_GOEMOTIONS") or REPO.parent / "shared" / "goemotions")


def goemotions_rows() -> list[dict]:
    """Every row of the official split: text, gold label ids, comment id, split."""
    rows = []
    for name, split in (("train.tsv", "train"), ("dev.tsv", "validation"), ("test.tsv", "test")):
        with open(GOEMOTIONS / name, encoding="utf-8", newline="") as handle:
            rows += [{"text": r[0], "gold": r[1], "id": r[2], "split": split} for r in csv.reader(handle, delimiter="\t")]
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_predict(model: str, source: Path, output: Path, *extra: str) -> dict:
    """`python -m emo_hf predict` in a child process: wall seconds, texts/s from its summary, child's peak RSS."""
    # A wrapper process whose only child is the predict run: its RUSAGE_CHILDREN peak is exactly that run's.
    wrapper = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print('PEAK_RSS_KIB=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(code)")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "emo_hf", "predict", model, "--input",
                          str(source), "--output", str(output), "--no-progress", "--overwrite", *extra],
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(run.stderr[-3000:])
    peak = int(re.search(r"PEAK_RSS_KIB=(\d+)", run.stderr)[1])  # KiB on Linux
    match = re.search(r"(\d+) texts predicted in ([\d.]+) s \(([\d.]+) texts/s\)", run.stdout)
    return {"wall_s": wall, "texts": int(match[1]), "loop_s": float(match[2]), "texts_per_s": float(match[3]),
            "peak_rss_mib": peak / 1024, "summary": run.stdout.strip()}


def tiny_model(folder: Path) -> str:
    """A tiny random Mistral classifier (hidden 32, 2 layers, word-level tokenizer): the model costs ~nothing."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MistralConfig, MistralModel, PreTrainedTokenizerFast

    from emo_hf.labels import DEFAULT_LABELS
    from emo_hf.modeling import EmoModelForMultiLabel

    words = ["<pad>", "<s>", "</s>", "<unk>"] + "i love hate this that day so sad happy angry what a the is it".split()
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    config = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, vocab_size=len(words), pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, max_position_embeddings=256)
    torch.manual_seed(0)
    backbone_dir = folder / "backbone"
    MistralModel(config).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    model = EmoModelForMultiLabel.from_backbone(str(backbone_dir), labels=list(DEFAULT_LABELS), max_length=64)
    model.save_pretrained(folder / "model")
    return str(folder / "model")


def machine() -> str:
    load = os.getloadavg()[0]
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, 1-min load average {load:.1f} at the end")


def bench_memory(args: argparse.Namespace) -> None:
    rows = goemotions_rows()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as temporary:
        folder = Path(temporary)
        model = tiny_model(folder)
        print(f"| rows | input | output | wall (s) | texts/s | peak RSS (MiB) |\n|---:|---|---|---:|---:|---:|")
        for n in sorted(args.rows):
            picked = [dict(rows[i % len(rows)], id=f"{rows[i % len(rows)]['id']}-{i}") for i in range(n)]
            source = write_csv(picked, folder / f"in-{n}.csv")
            del picked
            result = run_predict(model, source, folder / f"out-{n}.parquet", "--batch-size", "64")
            print(f"| {n:,} | CSV {source.stat().st_size / 2**20:.0f} MiB | parquet | {result['wall_s']:.1f} | "
                  f"{result['texts_per_s']:.0f} | {result['peak_rss_mib']:.0f} |", flush=True)
            source.unlink()
    print(f"\nMachine: {machine()}. Command: python bench/predict_files.py memory --rows {' '.join(map(str, args.rows))}")


def macro_f1_of(output: Path, model_dir: Path) -> float:
    """Test macro-F1 from the output's test rows, with the model's (validation-tuned) thresholds."""
    import pandas as pd

    from emo_hf.labels import GOEMOTIONS_LABELS
    from emo_hf.metrics import multilabel_metrics

    config = json.loads((model_dir / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    thresholds = json.loads((model_dir / "thresholds.json").read_text())
    out = pd.read_parquet(output)
    test = out[out["split"] == "test"]
    names = list(GOEMOTIONS_LABELS)
    gold = [{names[int(i)] for i in ids.split(",")} for ids in test["gold"]]
    y = np.array([[int(name in row) for name in labels] for row in gold])
    return multilabel_metrics(y, test[labels].to_numpy(dtype=float), [thresholds[n] for n in labels])["macro_f1"]


def bench_speed(args: argparse.Namespace) -> None:
    model_dir = Path(args.model)
    rows = goemotions_rows()
    if args.rows:  # a smoke run: the first N rows of test (so macro-F1 has rows), then train
        test = [r for r in rows if r["split"] == "test"]
        rows = (test + [r for r in rows if r["split"] != "test"])[:args.rows]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-predict-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    source = write_csv(rows, work / "goemotions.csv")
    results = []
    for variant in args.variants:
        target = str(model_dir)
        extra = ["--batch-size", str(args.batch_size)]
        if variant.startswith("onnx"):
            target = str(work / variant)
            if not (work / variant / "model.onnx").is_file():
                command = [sys.executable, "-m", "emo_hf", "export", str(model_dir), target, "--onnx"]
                subprocess.run(command + (["--int8"] if variant == "onnx-int8" else []), check=True,
                               capture_output=True)
            extra.append("--onnx")
        output = work / f"{variant}.parquet"
        result = run_predict(target, source, output, *extra)
        result["macro_f1"] = macro_f1_of(output, model_dir)
        results.append((variant, result))
        print(f"{variant}: {result['summary']} macro-F1 {result['macro_f1']:.4f}", flush=True)
    base = results[0][1]["texts_per_s"]
    print(f"\n{len(rows):,} rows, batch size {args.batch_size}, threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"model {model_dir}\n")
    print("| variant | wall (s) | texts/s | vs first | test macro-F1 (tuned thresholds) |\n|---|---:|---:|---:|---:|")
    for variant, result in results:
        print(f"| {variant} | {result['wall_s']:.0f} | {result['texts_per_s']:.1f} | "
              f"{result['texts_per_s'] / base:.2f}x | {result['macro_f1']:.4f} |")
    print(f"\nMachine: {machine()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    memory = sub.add_parser("memory")
    memory.add_argument("--rows", type=int, nargs="+", default=[20000, 200000])
    speed = sub.add_parser("speed")
    speed.add_argument("--model", default=str(REPO / "runs" / "default" / "model"))
    speed.add_argument("--variants", nargs="+", default=["pytorch", "onnx", "onnx-int8"],
                       choices=["pytorch", "onnx", "onnx-int8"])
    speed.add_argument("--rows", type=int, default=None, help="only this many rows (test rows first): smoke run")
    speed.add_argument("--batch-size", type=int, default=32)
    speed.add_argument("--work", default=None, help="folder for the input, exports and outputs (kept)")
    speed.add_argument("--threads", type=int, default=None,
                       help="OMP_NUM_THREADS for every variant (torch and onnxruntime alike); default: theirs")
    args = parser.parse_args()
    if getattr(args, "threads", None):
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every predict child process
    bench_memory(args) if args.bench == "memory" else bench_speed(args)


if __name__ == "__main__":
    main()
