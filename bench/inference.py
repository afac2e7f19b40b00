#!/usr/bin/env python
"""CPU inference throughput (texts/s) of `model.predict` (which wraps `predict_proba`) on real GoEmotions texts.

By default the model is the CPU default preset's (`emo_hf.presets.get_preset("minilm")`: all-MiniLM-L6-v2, text mode,
max_length from the preset, the 15 default labels) built with emo_hf.backbones.load_for_training: its head is
untrained, which does not change the work done per text, so the throughput is that of a trained model. `--model DIR`
measures a saved model folder instead (AutoModel.from_pretrained after `import emo_hf`). Texts: the first --n (2,000)
rows of $EMO_HF_GOEMOTIONS/test.tsv (default ../shared/goemotions), in file order (no length sorting). Each batch size
runs once over all the texts after a warm-up call; torch's thread count is left at its default. The 1-minute load
average before and after is printed: other busy processes on the machine distort the numbers.

    python bench/inference.py [--batches 1,32,128] [--n 2000] [--model DIR] [--json runs/bench_inference.json]

About 50 s on the idle 2-core dev VM (2026-11-26: 102 / 203 / 158 texts/s at batch 1 / 32 / 128); with other jobs
on the same 2 cores it was 5 to 20 times slower.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def read_texts(folder: Path, n: int) -> list[str]:
    with open(folder / "test.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return [row[0] for row in rows[:n]]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_model(model_dir: str | None):
    if model_dir:
        from transformers import AutoModel

        import emo_hf  # noqa: F401  (registers EmoConfig / EmoModelForMultiLabel with the Auto classes)

        return AutoModel.from_pretrained(model_dir), f"saved model {model_dir}"
    from emo_hf.backbones import load_for_training
    from emo_hf.labels import DEFAULT_LABELS
    from emo_hf.presets import get_preset

    s = get_preset("minilm")
    lora = {"r": s.lora_r, "lora_alpha": s.lora_alpha, "lora_dropout": s.lora_dropout} if s.lora_r else None
    model = load_for_training(s.backbone, labels=list(DEFAULT_LABELS), input_mode=s.input_mode, lora=lora,
                              device="cpu", max_length=s.max_length, load_in_4bit=False, focal_gamma=s.focal_gamma,
                              classifier_dropout=s.classifier_dropout)
    return model, f"preset minilm ({s.backbone}, untrained head, max_length {s.max_length})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("EMO_HF_GOEMOTIONS", str(REPO.parent / "shared" / "goemotions")))
    parser.add_argument("--n", type=int, default=2000, help="texts: the first N rows of test.tsv")
    parser.add_argument("--batches", default="1,32,128", help="comma-separated batch sizes")
    parser.add_argument("--model", default=None, help="a saved model folder instead of the minilm preset")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    texts = read_texts(Path(args.data), args.n)
    started = time.perf_counter()
    model, what = load_model(args.model)
    load_s = time.perf_counter() - started
    model.eval()
    tokens = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.config.max_length)["input_ids"]]
    model.predict(texts[:32], batch_size=32)  # warm-up
    load_before = os.getloadavg()[0]
    rows = []
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
        started = time.perf_counter()
        model.predict(texts, batch_size=batch)
        seconds = time.perf_counter() - started
        rows.append({"batch_size": batch, "texts": len(texts), "seconds": round(seconds, 2),
                     "texts_per_s": round(len(texts) / seconds, 1), "ms_per_text": round(1e3 * seconds / len(texts), 2)})
        print(f"batch {batch}: {len(texts) / seconds:.1f} texts/s", file=sys.stderr, flush=True)
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join([sys.executable] + sys.argv),
            "model": what, "data": str(Path(args.data) / "test.tsv"), "mean_tokens": sum(tokens) / len(tokens),
            "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_s": round(load_s, 2), "loadavg_1min_before_after": [load_before, os.getloadavg()[0]], "rows": rows}
    print(f"{what}; {len(texts)} texts of {args.data}/test.tsv (mean {info['mean_tokens']:.1f} tokens); "
          f"{info['cpu']}, {info['cores']} cores, torch {torch.__version__} with {info['threads']} threads; "
          f"{info['date']}; 1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other "
          f"processes on the machine slow this down)\n\n| batch size | seconds | texts/s | ms/text |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['seconds']:.2f} | {r['texts_per_s']:.1f} | {r['ms_per_text']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
