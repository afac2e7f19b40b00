#!/usr/bin/env python
"""Score saved probabilities in combinations no single run makes: the mean of several models' probabilities, or a
model trained on more labels (all 28 GoEmotions labels) scored on the data's own labels (the 15 defaults).

    python scripts/score_combinations.py --data DATA DIR [DIR ...]

Each DIR holds validation_probabilities.npy and test_probabilities.npy (written by `emo-hf evaluate --split
validation` and `emo-hf evaluate`, e.g. unpacked from scripts/gpu_decoders.sh's decoders.tgz) and the model's
config.json (its label names). Columns are matched to DATA's labels by name; with several DIRs the probabilities
are averaged. Thresholds are tuned on validation only and applied to test, as everywhere in emo_hf.
Prints one line: validation macro-F1 (tuned), test macro-F1 (tuned, with its 95% bootstrap interval, and at 0.5).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_hf.data.builder import load_built  # noqa: E402
from emo_hf.metrics import binarize, bootstrap_mean_f1_ci, multilabel_metrics, tune_thresholds  # noqa: E402


def label_names(folder: Path) -> list[str]:
    config = json.loads((folder / "config.json").read_text())
    id2label = config["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def columns(folder: Path, split: str, wanted: list[str]) -> np.ndarray:
    """`[n, len(wanted)]`: the folder's probabilities for `split`, columns in `wanted`'s order."""
    names = label_names(folder)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise SystemExit(f"{folder}/config.json has no label(s) {missing}: it cannot be scored on these labels.")
    probs = np.load(folder / f"{split}_probabilities.npy")
    return probs[:, [names.index(w) for w in wanted]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the `emo-hf data build` folder whose labels and splits are scored")
    p.add_argument("dirs", nargs="+", type=Path)
    args = p.parse_args(argv)
    data = load_built(args.data, "raw")
    wanted = json.loads((Path(args.data) / "build_info.json").read_text())["labels"]
    y = {split: np.asarray(data[split]["labels"], dtype=np.float32) for split in ("validation", "test")}
    probs = {split: np.mean([columns(d, split, wanted) for d in args.dirs], axis=0) for split in y}
    for split in y:
        if probs[split].shape != y[split].shape:
            raise SystemExit(f"{split}: probabilities {probs[split].shape} but the data has {y[split].shape}.")
    thresholds = tune_thresholds(y["validation"], probs["validation"])
    val = multilabel_metrics(y["validation"], probs["validation"], thresholds)["macro_f1"]
    test = multilabel_metrics(y["test"], probs["test"], thresholds)["macro_f1"]
    at_05 = multilabel_metrics(y["test"], probs["test"], 0.5)["macro_f1"]
    low, high = bootstrap_mean_f1_ci(y["test"], binarize(probs["test"], thresholds))
    print(f"{' + '.join(d.name for d in args.dirs)}: validation {val:.3f} tuned | test {test:.3f} tuned "
          f"(95% CI {low:.3f}-{high:.3f}), {at_05:.3f} at 0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
