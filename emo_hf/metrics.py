"""Multi-label metrics, `Trainer` hooks, per-label threshold tuning and a bootstrap interval, on plain numpy arrays.

    >>> import numpy as np
    >>> from emo_hf.metrics import multilabel_metrics, tune_thresholds, bootstrap_mean_f1_ci
    >>> y_val, p_val = np.array([[1, 0], [0, 1], [1, 1]]), np.array([[0.9, 0.2], [0.3, 0.6], [0.4, 0.7]])
    >>> thresholds = tune_thresholds(y_val, p_val)                 # float64 [L], one per label, from validation
    >>> m = multilabel_metrics(y_val, p_val, thresholds, label_names=["joy", "fear"])
    >>> m["macro_f1"], m["per_label"]["joy"]["support"]
    (1.0, 2)
    >>> low, high = bootstrap_mean_f1_ci(y_val, p_val >= thresholds)

    # with transformers' Trainer (it prefixes the keys with "eval_"):
    >>> trainer = Trainer(..., compute_metrics=make_compute_metrics(["joy", "fear"]))

Conventions (shared by every function here):
- `y_true` is multi-hot `[n, L]` (0/1, any numeric or bool dtype), `probs` are probabilities `[n, L]` in [0, 1].
- A label is predicted positive when `prob >= threshold` (so threshold 0.5 keeps exactly p = 0.5).
- `macro_f1` is the unweighted mean of the per-label F1 scores (scikit-learn's `average="macro"`), i.e. the "mean
  per-label F1" published for GoEmotions; it is NOT the F1 of macro precision and macro recall.
- `zero_division=0`: a precision, recall or F1 whose denominator is 0 (no predicted positives, no true positives, or
  both) counts as 0, never as a warning or NaN. A label absent from both `y_true` and the predictions thus scores
  F1 = 0 and pulls the macro mean down; that is deliberate (it matches scikit-learn and the published figures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The metrics every report shows, in this order (keys of multilabel_metrics' result and report.json's metric blocks).
SUMMARY_METRICS: tuple[str, ...] = ("subset_accuracy", "micro_f1", "macro_f1", "macro_precision", "macro_recall")

# The same metrics as an `evaluate` module shipped in the package: `evaluate.load(EVALUATE_MODULE)` (a local path,
# so it loads offline; emo_hf/evaluate_metric/emo_multilabel.py calls the functions of this module).
EVALUATE_MODULE: str = str(Path(__file__).resolve().parent / "evaluate_metric" / "emo_multilabel.py")

# Default grid of tune_thresholds: 0.01, 0.02, ..., 0.99 (rounded so 0.07 is exactly 0.07, not 0.07000000000000001).
DEFAULT_GRID: np.ndarray = np.round(np.arange(1, 100) / 100.0, 2)


# ----------------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------------
def _as_multi_hot(y: Any, name: str = "y_true") -> np.ndarray:
    """`y` as a 2-D int8 0/1 array, or a ValueError that quotes what was wrong."""
    array = np.asarray(y)
    if array.ndim == 1:
        raise ValueError(f"{name} must be 2-D [n_examples, n_labels] multi-hot; got shape {array.shape}. "
                         f"For a single label pass {name}.reshape(-1, 1).")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_examples, n_labels]; got shape {array.shape}.")
    if array.size and not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))].ravel()[:5]
        raise ValueError(f"{name} must hold only 0/1 values; found e.g. {bad.tolist()}. Binarise it first, "
                         f"e.g. ({name} >= 0.5).astype(int).")
    return array.astype(np.int8)


def _as_probs(probs: Any, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"probs has shape {array.shape} but y_true has shape {shape}: pass one probability per "
                         "example and label, in the same label order.")
    if array.size and (np.isnan(array).any() or array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(f"probs must be probabilities in [0, 1] without NaN (min {np.nanmin(array):.4g}, max "
                         f"{np.nanmax(array):.4g}); for logits pass scipy.special.expit(logits).")
    return array


def as_thresholds(thresholds: float | Sequence[float] | np.ndarray, n_labels: int) -> np.ndarray:
    """One threshold per label, float64 `[n_labels]`: a scalar is broadcast, a sequence must have `n_labels` values."""
    array = np.asarray(thresholds, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n_labels, float(array))
    if array.shape != (n_labels,):
        raise ValueError(f"thresholds must be one float or {n_labels} values (one per label); got shape "
                         f"{array.shape}. E.g. thresholds=0.5 or thresholds=[0.5] * {n_labels}.")
    if np.isnan(array).any() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(f"thresholds must lie in [0, 1]; got {array.tolist()}.")
    return array


def _names(label_names: Sequence[str] | None, n_labels: int) -> list[str]:
    if label_names is None:
        return [f"label_{i}" for i in range(n_labels)]
    names = [str(name) for name in label_names]
    if len(names) != n_labels:
        raise ValueError(f"label_names has {len(names)} names ({names!r}) but the arrays have {n_labels} labels.")
    return names


def binarize(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray = 0.5) -> np.ndarray:
    """0/1 predictions int8 `[n, L]`: `probs >= thresholds` (thresholds broadcast over examples)."""
    probs = np.asarray(probs, dtype=np.float64)
    return (probs >= as_thresholds(thresholds, probs.shape[1])[None, :]).astype(np.int8)


# ----------------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------------
def multilabel_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray = 0.5,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric of a report at the given thresholds (scikit-learn, zero_division=0).

    Args:
        y_true: multi-hot `[n, L]`.
        probs: probabilities `[n, L]`.
        thresholds: one float for all labels or `L` floats; `prob >= threshold` is positive.
        label_names: `L` names for `per_label` (default `label_0`, `label_1`, ...).

    Returns:
        `{"subset_accuracy", "micro_f1", "macro_f1" (mean of per-label F1), "macro_precision", "macro_recall"}` as
        floats, plus `"per_label": {name: {"precision", "recall", "f1": float, "support": int}}` in label order.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y = _as_multi_hot(y_true)
    p = _as_probs(probs, y.shape)
    if y.shape[0] == 0:
        raise ValueError("y_true has no examples (shape (0, L)): evaluate on a non-empty split.")
    names = _names(label_names, y.shape[1])
    pred = binarize(p, thresholds)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    return {
        # exact match: every one of the L labels right for the example
        "subset_accuracy": float(accuracy_score(y, pred)),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "macro_f1": float(np.mean(f1)),  # == f1_score(average="macro"): the mean per-label F1
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_label": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(names)
        },
    }


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (scipy's expit), float64."""
    from scipy.special import expit

    return expit(np.asarray(logits, dtype=np.float64))


def _first(value: Any) -> Any:
    # Trainer hands a tuple when the model returns several outputs (e.g. logits and hidden states): logits come first.
    while isinstance(value, (tuple, list)) and len(value) and not np.isscalar(value[0]):
        value = value[0]
    return value


def compute_metrics(eval_pred: Any, label_names: Sequence[str] | None = None) -> dict[str, float]:
    """Metrics for `transformers.Trainer(compute_metrics=...)` from logits, at threshold 0.5.

    `eval_pred` is an `EvalPrediction` (or a `(predictions, label_ids)` tuple): predictions are logits `[n, L]` (or a
    tuple whose first item they are), label_ids are multi-hot `[n, L]`. Returns flat floats: the five summary metrics
    and `f1_<label>`, `precision_<label>`, `recall_<label>` per label (Trainer adds the `eval_` prefix, so the best
    checkpoint is chosen with `metric_for_best_model="macro_f1"`). Without `label_names` labels are `label_<i>`;
    use `make_compute_metrics(label_names)` to get named keys.
    """
    if hasattr(eval_pred, "predictions"):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
    else:
        logits, labels = eval_pred[0], eval_pred[1]
    logits = np.asarray(_first(logits), dtype=np.float64)
    labels = np.asarray(_first(labels))
    if logits.ndim == 1:  # a single-label model may squeeze its last dimension
        logits, labels = logits.reshape(-1, 1), labels.reshape(-1, 1)
    return flat_metrics(multilabel_metrics(labels.round().astype(np.int8), sigmoid(logits), 0.5, label_names))


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """`multilabel_metrics`' result as flat floats: the five summary metrics, then `f1_<label>`,
    `precision_<label>`, `recall_<label>` per label (the keys of compute_metrics and the evaluate module)."""
    flat = {key: metrics[key] for key in SUMMARY_METRICS}
    for name, row in metrics["per_label"].items():
        for key in ("f1", "precision", "recall"):
            flat[f"{key}_{name}"] = row[key]
    return flat


def make_compute_metrics(label_names: Sequence[str]) -> Callable[[Any], dict[str, float]]:
    """`compute_metrics` with the per-label keys named after `label_names` (e.g. `f1_joy`), for `Trainer`."""
    names = list(label_names)

    def compute_metrics_named(eval_pred: Any) -> dict[str, float]:
        return compute_metrics(eval_pred, names)

    return compute_metrics_named


# ----------------------------------------------------------------------------------------------------------------------
# Per-label thresholds
# ----------------------------------------------------------------------------------------------------------------------
def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn), elementwise; 0 where the denominator is 0 (zero_division=0)."""
    denominator = 2 * tp + fp + fn
    return np.divide(2.0 * tp, denominator, out=np.zeros(np.shape(tp), dtype=np.float64), where=denominator > 0)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Each label's threshold maximising that label's F1 on (`y_true`, `probs`): float64 `[L]`.

    Tune on VALIDATION data and apply the result to the test split; tuning on test inflates the scores.
    `grid` defaults to 0.01, 0.02, ..., 0.99. Ties (several thresholds with the same best F1, e.g. a label with no
    positives where every threshold scores 0) go to the threshold closest to 0.5, and between two equally close ones
    to the lower, so a flat F1 curve keeps the neutral 0.5 rather than an arbitrary end of the grid.

    Vectorised: counts for all (threshold, label) pairs at once, in chunks of the grid (~0.1 s for 5k x 15).
    """
    y = _as_multi_hot(y_true).astype(bool)
    p = _as_probs(probs, y.shape)
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or np.isnan(grid).any() or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError(f"grid must be a non-empty list of thresholds in [0, 1]; got {np.asarray(grid).tolist()!r}.")
    positives = y.sum(axis=0)  # [L]
    f1 = np.empty((grid.size, y.shape[1]))  # [G, L]
    # chunk the grid so the boolean [chunk, n, L] tensor stays around 32 MB whatever n is
    chunk = max(1, int(32e6 // max(1, y.size)))
    for start in range(0, grid.size, chunk):
        g = grid[start:start + chunk]
        predicted = p[None, :, :] >= g[:, None, None]  # [g, n, L]
        tp = (predicted & y[None]).sum(axis=1)  # [g, L]
        n_predicted = predicted.sum(axis=1)
        f1[start:start + chunk] = _f1_from_counts(tp, n_predicted - tp, positives[None, :] - tp)
    best = f1.max(axis=0, keepdims=True)  # [1, L]
    is_best = f1 >= best - 1e-12  # [G, L]
    # among the best, smallest distance to 0.5, then the lower threshold: lexicographic via a large penalty
    distance = np.abs(grid - 0.5)[:, None] + 1e-9 * grid[:, None]  # [G, 1]
    score = np.where(is_best, distance, np.inf)
    return grid[np.argmin(score, axis=0)].astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------------
# Bootstrap interval
# ----------------------------------------------------------------------------------------------------------------------
def bootstrap_mean_f1_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean per-label F1 (macro F1), resampling examples with replacement.

    Args:
        y_true, y_pred: multi-hot `[n, L]` truth and 0/1 predictions (e.g. `binarize(probs, thresholds)`).
        n_resamples: bootstrap resamples; seed: for numpy's default_rng; confidence: e.g. 0.95.

    Returns `(low, high)`: the (1-confidence)/2 and (1+confidence)/2 percentiles of the resampled macro F1.
    Each resample is a vector of example multiplicities w `[n]`, so its per-label counts are the products
    `w @ (y & p)`, `w @ (~y & p)`, `w @ (y & ~p)`: one matrix product per chunk of resamples, a second or two for
    1000 x 5k x 15.
    """
    y = _as_multi_hot(y_true)
    pred = _as_multi_hot(y_pred, "y_pred")
    if pred.shape != y.shape:
        raise ValueError(f"y_pred has shape {pred.shape} but y_true has shape {y.shape}.")
    n = y.shape[0]
    if n == 0:
        raise ValueError("y_true has no examples: a bootstrap needs at least one.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, e.g. 1000; got {n_resamples!r}.")
    # per example and label: is it a true positive / false positive / false negative  -> [n, 3L] float32
    outcomes = np.concatenate([(y & pred), ((1 - y) & pred), (y & (1 - pred))], axis=1).astype(np.float32)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, int(4e6 // n))  # resamples per chunk: ~4M indices at a time
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        index = rng.integers(0, n, size=(b, n))
        # multiplicity of every example in every resample of the chunk  [b, n]
        weights = np.bincount((index + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n)
        counts = weights.reshape(b, n).astype(np.float32) @ outcomes  # [b, 3L]
        tp, fp, fn = np.split(counts.astype(np.float64), 3, axis=1)
        means[start:start + b] = _f1_from_counts(tp, fp, fn).mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)
