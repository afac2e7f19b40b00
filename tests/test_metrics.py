"""emo_hf.metrics: hand-computed metrics, Trainer hooks, threshold tuning on constructed data, bootstrap interval."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import f1_score

from emo_hf.metrics import (
    DEFAULT_GRID,
    binarize,
    bootstrap_mean_f1_ci,
    compute_metrics,
    make_compute_metrics,
    multilabel_metrics,
    tune_thresholds,
)

LABELS = ["joy", "anger", "fear"]
# 4 examples x 3 labels. Logits 0.0 -> sigmoid 0.5 -> positive (prob >= 0.5); any logit > 0 positive, < 0 negative.
LOGITS = np.array([
    [2.0, -2.0, -2.0],   # predicted [1, 0, 0]
    [3.0, -1.0, -3.0],   # predicted [1, 0, 0]
    [0.0, 1.0, -2.0],    # predicted [1, 1, 0]   (joy exactly at 0.5 counts as positive)
    [-1.0, -2.0, 0.5],   # predicted [0, 0, 1]
])
Y = np.array([
    [1, 0, 0],
    [1, 1, 0],
    [0, 1, 0],
    [0, 0, 0],
])
# By hand (tp / fp / fn per label):
#   joy:   truth [1,1,0,0], pred [1,1,1,0] -> tp 2, fp 1, fn 0 -> P 2/3, R 1,   F1 = 2*2/(2*2+1+0) = 4/5, support 2
#   anger: truth [0,1,1,0], pred [0,0,1,0] -> tp 1, fp 0, fn 1 -> P 1,   R 1/2, F1 = 2*1/(2*1+0+1) = 2/3, support 2
#   fear:  truth [0,0,0,0], pred [0,0,0,1] -> tp 0, fp 1, fn 0 -> P 0,   R 0 (0/0 -> 0), F1 0,            support 0
# subset accuracy: only example 0 matches all three labels -> 1/4
# micro: tp 3, fp 2, fn 1 -> F1 = 2*3/(2*3+2+1) = 6/9 = 2/3
# macro F1 = (4/5 + 2/3 + 0)/3 = 22/45; macro precision = (2/3 + 1 + 0)/3 = 5/9; macro recall = (1 + 1/2 + 0)/3 = 1/2
HAND = {
    "subset_accuracy": 1 / 4,
    "micro_f1": 2 / 3,
    "macro_f1": 22 / 45,
    "macro_precision": 5 / 9,
    "macro_recall": 1 / 2,
    "f1_joy": 4 / 5, "precision_joy": 2 / 3, "recall_joy": 1.0,
    "f1_anger": 2 / 3, "precision_anger": 1.0, "recall_anger": 1 / 2,
    "f1_fear": 0.0, "precision_fear": 0.0, "recall_fear": 0.0,
}


def test_compute_metrics_equals_hand_computed_values():
    metrics = make_compute_metrics(LABELS)(SimpleNamespace(predictions=LOGITS, label_ids=Y.astype(np.float32)))
    assert set(metrics) == set(HAND)
    for key, value in HAND.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
        assert isinstance(metrics[key], float)


def test_compute_metrics_takes_the_first_of_a_prediction_tuple_and_plain_tuples():
    hidden = np.zeros((4, 7))
    metrics = compute_metrics(((LOGITS, hidden), Y))
    assert metrics["macro_f1"] == pytest.approx(22 / 45)
    assert metrics["f1_label_0"] == pytest.approx(4 / 5)  # unnamed labels without the factory


def test_multilabel_metrics_per_label_and_support():
    probs = 1 / (1 + np.exp(-LOGITS))
    metrics = multilabel_metrics(Y, probs, 0.5, LABELS)
    assert metrics["per_label"]["joy"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert metrics["per_label"]["fear"]["support"] == 0
    # per-label thresholds: raising joy's threshold above 0.5 drops the false positive of example 2
    metrics = multilabel_metrics(Y, probs, [0.6, 0.5, 0.5], LABELS)
    assert metrics["per_label"]["joy"]["f1"] == pytest.approx(1.0)
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(Y, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(Y * 2, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="one float or 3 values"):
        multilabel_metrics(Y, np.zeros((4, 3)), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        multilabel_metrics(Y, LOGITS)  # logits instead of probabilities


def test_tune_thresholds_finds_the_known_best_threshold():
    # label 0: positives 0.32, 0.5, 0.9; negatives 0.05, 0.1, 0.25 -> F1 = 1 exactly for t in (0.25, 0.32],
    #          i.e. grid points 0.26..0.32; the one closest to 0.5 is 0.32.
    # label 1: no positives -> F1 = 0 everywhere -> tie -> 0.5.
    # label 2: positives 0.62, 0.7, 0.95; negatives 0.2, 0.55, 0.6 -> F1 = 1 only for t in (0.60, 0.62] -> 0.61, 0.62
    #          tie -> 0.61 (closer to 0.5).
    # label 3: positives 0.3, 0.8; negatives 0.7, 0.01, 0.02, 0.03 -> t in (0.7, 0.8]: tp 1, fn 1 -> F1 = 2/3;
    #          t in (0.3, 0.7]: tp 1, fp 1, fn 1 -> F1 = 1/2; t in (0.03, 0.3]: tp 2, fp 1 -> F1 = 4/5 (best);
    #          lower t adds false positives -> best grid points 0.04..0.30 -> 0.30 (closest to 0.5).
    probs = np.array([
        [0.32, 0.10, 0.62, 0.30],
        [0.50, 0.20, 0.70, 0.80],
        [0.90, 0.30, 0.95, 0.70],
        [0.05, 0.40, 0.20, 0.01],
        [0.10, 0.60, 0.55, 0.02],
        [0.25, 0.90, 0.60, 0.03],
    ])
    y = np.array([[1, 0, 1, 1], [1, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert tune_thresholds(y, probs).tolist() == [0.32, 0.5, 0.61, 0.30]
    # equally close ties go to the lower threshold
    assert tune_thresholds(y[:, 1:2], probs[:, 1:2], grid=[0.4, 0.6]).tolist() == [0.4]


def test_tune_thresholds_matches_brute_force_and_is_fast():
    rng = np.random.default_rng(1)
    y = (rng.random((5000, 15)) < rng.uniform(0.01, 0.2, 15)).astype(int)
    probs = np.clip(0.35 * y + 0.65 * rng.random(y.shape) ** 2, 0, 1)
    start = time.perf_counter()
    thresholds = tune_thresholds(y, probs)
    assert time.perf_counter() - start < 2.0
    for j in (0, 7, 14):  # brute force with scikit-learn (an independent oracle) on a few labels and 1000 rows
        y_j, p_j = y[:1000, j], probs[:1000, j]
        t_j = tune_thresholds(y_j[:, None], p_j[:, None])[0]
        scores = [f1_score(y_j, p_j >= t, zero_division=0) for t in DEFAULT_GRID]
        assert f1_score(y_j, p_j >= t_j, zero_division=0) == pytest.approx(max(scores))
    # the tuned thresholds are at least as good as 0.5 on the data they were tuned on (0.5 is in the grid)
    assert multilabel_metrics(y, probs, thresholds)["macro_f1"] >= multilabel_metrics(y, probs, 0.5)["macro_f1"]


def _sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 15)) < 0.1).astype(np.int8)
    flip = rng.random(y.shape) < 0.08  # a noisy classifier: 8% of the decisions flipped
    return y, np.where(flip, 1 - y, y)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_data():
    y_small, pred_small = _sample(300, 0)
    y_big, pred_big = _sample(5000, 0)
    start = time.perf_counter()
    low_big, high_big = bootstrap_mean_f1_ci(y_big, pred_big, n_resamples=1000, seed=0)
    assert time.perf_counter() - start < 10.0  # seconds, 1000 x 5000 x 15
    low_small, high_small = bootstrap_mean_f1_ci(y_small, pred_small, n_resamples=1000, seed=0)
    for y, pred, low, high in ((y_small, pred_small, low_small, high_small), (y_big, pred_big, low_big, high_big)):
        estimate = f1_score(y, pred, average="macro", zero_division=0)
        assert low < estimate < high
    assert (high_big - low_big) < 0.5 * (high_small - low_small)  # width ~ 1/sqrt(n): sqrt(300/5000) ~ 0.24
    # reproducible with the seed; a different seed gives a (slightly) different interval
    assert bootstrap_mean_f1_ci(y_small, pred_small, seed=0) == (low_small, high_small)
    assert bootstrap_mean_f1_ci(y_small, pred_small, seed=1) != (low_small, high_small)
    # a wider confidence gives a wider interval
    low90, high90 = bootstrap_mean_f1_ci(y_small, pred_small, confidence=0.90)
    assert low_small <= low90 and high90 <= high_small


def test_binarize_keeps_probabilities_equal_to_the_threshold():
    assert binarize(np.array([[0.5, 0.49, 0.7]]), [0.5, 0.5, 0.71]).tolist() == [[1, 0, 0]]
