"""emo_hf.baselines on a slice of the real GoEmotions data: both baselines beat a trivial predictor."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emo_hf.baselines import embedding_logreg_baseline, tfidf_logreg_baseline
from emo_hf.labels import DEFAULT_LABELS
from emo_hf.metrics import multilabel_metrics, tune_thresholds

from goemotions_path import SKIP_REASON, goemotions_dir

N_TRAIN, N_VAL, N_TEST = 4000, 1000, 1000


def _read(folder: Path, file_name: str, n: int) -> tuple[list[str], np.ndarray]:
    """First `n` rows of an official TSV: texts and the multi-hot over the 15 default labels."""
    names = (folder / "labels.txt").read_text(encoding="utf-8").split()
    column = {names.index(label): j for j, label in enumerate(DEFAULT_LABELS)}
    texts, y = [], np.zeros((n, len(DEFAULT_LABELS)), dtype=np.int8)
    with open(folder / file_name, encoding="utf-8", newline="") as handle:
        for i, row in zip(range(n), csv.reader(handle, delimiter="\t")):
            texts.append(row[0])
            for label_id in row[1].split(","):
                if int(label_id) in column:
                    y[i, column[int(label_id)]] = 1
    return texts, y[: len(texts)]


@pytest.fixture(scope="module")
def goemotions_slice() -> dict[str, tuple[list[str], np.ndarray]]:
    folder = goemotions_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    return {"train": _read(folder, "train.tsv", N_TRAIN), "validation": _read(folder, "dev.tsv", N_VAL),
            "test": _read(folder, "test.tsv", N_TEST)}


def _tuned_macro_f1(data, probs: dict[str, np.ndarray]) -> float:
    """Macro F1 on the test slice with thresholds tuned on the validation slice (the report's protocol)."""
    thresholds = tune_thresholds(data["validation"][1], probs["validation"])
    return multilabel_metrics(data["test"][1], probs["test"], thresholds)["macro_f1"]


def _trivial_macro_f1(data) -> float:
    """The best a text-blind predictor does: each label's training rate as a constant probability, thresholds tuned
    on validation like the baselines' (a constant score can only predict all or nothing per label)."""
    rate = data["train"][1].mean(axis=0)
    probs = {split: np.tile(rate, (len(data[split][0]), 1)) for split in ("validation", "test")}
    return _tuned_macro_f1(data, probs)


def test_tfidf_baseline_beats_a_trivial_predictor(goemotions_slice):
    data = goemotions_slice
    probs = tfidf_logreg_baseline(data["train"][0], data["train"][1],
                                  {"validation": data["validation"][0], "test": data["test"][0]})
    assert probs["test"].shape == (N_TEST, len(DEFAULT_LABELS))
    assert probs["test"].min() >= 0.0 and probs["test"].max() <= 1.0
    trivial, tfidf = _trivial_macro_f1(data), _tuned_macro_f1(data, probs)
    assert trivial < 0.2  # sanity of the yardstick: constant predictions score little on rare labels
    assert tfidf > trivial + 0.15, (tfidf, trivial)


def test_embedding_baseline_beats_a_trivial_predictor(goemotions_slice):
    # Frozen vectors of the real texts. The sentence encoder itself is exercised by bench/baselines.py (minutes on
    # 54k texts); here an LSA projection (TF-IDF -> 64-d SVD, fitted on train only) stands in as the frozen encoder
    # so the test stays fast while the logistic-regression path runs on real text vectors.
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    data = goemotions_slice
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2).fit(data["train"][0])
    svd = TruncatedSVD(64, random_state=0).fit(vectorizer.transform(data["train"][0]))
    emb = {split: svd.transform(vectorizer.transform(data[split][0])) for split in data}
    probs = embedding_logreg_baseline(emb["train"], data["train"][1], {"validation": emb["validation"], "test": emb["test"]})
    assert probs["validation"].shape == (N_VAL, len(DEFAULT_LABELS))
    trivial, embedding = _trivial_macro_f1(data), _tuned_macro_f1(data, probs)
    assert embedding > trivial + 0.08, (embedding, trivial)


def test_a_label_without_positives_gets_a_constant_and_bad_shapes_are_named():
    emb = np.random.default_rng(0).normal(size=(40, 8))
    y = np.zeros((40, 2), dtype=int)
    y[::3, 0] = 1  # label 1 never occurs in this tiny training set
    probs = embedding_logreg_baseline(emb, y, {"x": emb[:5]})["x"]
    assert probs.shape == (5, 2) and (probs[:, 1] == 0.0).all() and probs[:, 0].std() > 0
    with pytest.raises(ValueError, match=r"\[n, 8\]"):
        embedding_logreg_baseline(emb, y, {"x": emb[:5, :4]})
    with pytest.raises(ValueError, match="n_train = 3"):
        tfidf_logreg_baseline(["a", "b", "c"], y, {})
