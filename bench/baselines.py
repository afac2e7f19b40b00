"""Both baselines on the full official GoEmotions split, 15 default labels: thresholds tuned on dev, scored on test.

Run (from the repository root). On the 2-core dev VM (2026-11-25, shared with other jobs): 5 min cold, of which 4 min
embed 54k texts with all-MiniLM-L6-v2; 70 s when the embedding cache of emo_hf.data.embedding already holds them
(`emo-hf data build` fills the same cache; set EMO_HF_CACHE to another folder for a cold run):

    EMO_HF_GOEMOTIONS=../shared/goemotions python bench/baselines.py [--out runs/bench_baselines] [--skip-embedding]

Prints mean per-label F1 (macro F1) on test at 0.5 and at dev-tuned thresholds for each baseline, with timings, and
writes the numbers to OUT/baselines.json plus a full report (report.json / report.md / plots) where the TF-IDF
baseline plays the "model" and the embedding baseline sits in the baselines section.
A row's targets are the multi-hot over the 15 default labels of its GoEmotions label ids (labels.txt order); rows
with none of them are kept as all-zero rows, as in the model's evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emo_hf.labels import DEFAULT_LABELS  # noqa: E402
from emo_hf.metrics import binarize, bootstrap_mean_f1_ci, multilabel_metrics, tune_thresholds  # noqa: E402

FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def read_split(folder: Path, file_name: str, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Texts and multi-hot int8 [n, len(labels)] of one official TSV (text, comma-separated ids, comment id)."""
    names = (folder / "labels.txt").read_text(encoding="utf-8").split()
    column = {names.index(label): j for j, label in enumerate(labels)}  # GoEmotions id -> our column
    texts, rows = [], []
    with open(folder / file_name, encoding="utf-8", newline="") as handle:
        for record in csv.reader(handle, delimiter="\t"):
            texts.append(record[0])
            row = np.zeros(len(labels), dtype=np.int8)
            for label_id in record[1].split(","):
                if int(label_id) in column:
                    row[column[int(label_id)]] = 1
            rows.append(row)
    return texts, np.stack(rows)


def score(name: str, probs: dict[str, np.ndarray], y: dict[str, np.ndarray], labels: list[str]) -> dict:
    thresholds = tune_thresholds(y["validation"], probs["validation"])
    at_half = multilabel_metrics(y["test"], probs["test"], 0.5, labels)
    tuned = multilabel_metrics(y["test"], probs["test"], thresholds, labels)
    ci = bootstrap_mean_f1_ci(y["test"], binarize(probs["test"], thresholds))
    print(f"{name}: test macro F1 (mean per-label F1) at 0.5 = {at_half['macro_f1']:.4f}, "
          f"dev-tuned = {tuned['macro_f1']:.4f} (95% CI {ci[0]:.4f}-{ci[1]:.4f}); micro F1 tuned {tuned['micro_f1']:.4f}",
          flush=True)
    return {"thresholds": dict(zip(labels, thresholds.tolist())), "ci95_tuned": list(ci),
            "metrics_at_0.5": {k: v for k, v in at_half.items() if k != "per_label"},
            "metrics_tuned": {k: v for k, v in tuned.items() if k != "per_label"},
            "per_label_f1_tuned": {k: v["f1"] for k, v in tuned["per_label"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("EMO_HF_GOEMOTIONS") or str(REPO.parent / "shared" / "goemotions"))
    parser.add_argument("--out", default=str(REPO / "runs" / "bench_baselines"))  # runs/ is git-ignored
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args()
    folder, labels = Path(args.data), list(DEFAULT_LABELS)
    texts, y = {}, {}
    for split, file_name in FILES.items():
        texts[split], y[split] = read_split(folder, file_name, labels)
    print({split: len(t) for split, t in texts.items()}, flush=True)

    from emo_hf.baselines import embedding_logreg_baseline, tfidf_logreg_baseline

    results, probs_all, timings = {}, {}, {}
    start = time.perf_counter()
    probs = tfidf_logreg_baseline(texts["train"], y["train"], {"validation": texts["validation"], "test": texts["test"]})
    timings["tfidf_logreg"] = time.perf_counter() - start
    results["tfidf_logreg"], probs_all["tfidf_logreg"] = score("tfidf_logreg", probs, y, labels), probs

    if not args.skip_embedding:
        from emo_hf.data.embedding import embed_texts, load_encoder

        # load_encoder resolves the Hub id to the installed offline copy (emo_hf.configuration.resolve_pretrained);
        # passing the Hub id as `encoder` shares the embedding cache with `emo-hf data build`.
        encoder = "sentence-transformers/all-MiniLM-L6-v2"
        model = load_encoder(encoder)
        start = time.perf_counter()
        emb = {split: embed_texts(t, encoder=encoder, model=model) for split, t in texts.items()}
        timings["embedding_texts"] = time.perf_counter() - start
        start = time.perf_counter()
        probs = embedding_logreg_baseline(emb["train"], y["train"], {"validation": emb["validation"], "test": emb["test"]})
        timings["embedding_logreg_fit"] = time.perf_counter() - start
        results["embedding_logreg"], probs_all["embedding_logreg"] = score("embedding_logreg", probs, y, labels), probs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{platform.node()} "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "commit": commit,
            "command": " ".join([Path(sys.executable).name] + sys.argv), "data": str(folder),
            "n": {split: len(t) for split, t in texts.items()}, "seconds": timings}
    (out / "baselines.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    try:  # the full report, TF-IDF as the "model" (exercises emo_hf.evaluation on real numbers)
        from emo_hf.evaluation import write_report

        baselines = {name: {"probs": p["test"], "thresholds": tune_thresholds(y["validation"], p["validation"])}
                     for name, p in probs_all.items() if name != "tfidf_logreg"}
        write_report(out / "report", label_names=labels, split="test", y_true=y["test"],
                     probs=probs_all["tfidf_logreg"]["test"],
                     thresholds=np.array(list(results["tfidf_logreg"]["thresholds"].values())), val_tuned=True,
                     baselines=baselines or None, meta={**meta, "model": "tfidf_logreg (baseline as model)"})
    except ImportError as error:
        print(f"(no full report: {error})")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
