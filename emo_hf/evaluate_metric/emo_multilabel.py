"""emo_hf's multi-label metrics as an `evaluate` module, computed by emo_hf.metrics (the functions behind
compute_metrics and the reports: one implementation, two doors). Loads offline, by path:

    >>> import evaluate, emo_hf.metrics
    >>> metric = evaluate.load(emo_hf.metrics.EVALUATE_MODULE)
    >>> metric.compute(predictions=[[0.9, 0.2], [0.3, 0.6]], references=[[1, 0], [0, 1]], label_names=["joy", "fear"])
    {'subset_accuracy': 1.0, 'micro_f1': 1.0, 'macro_f1': 1.0, ..., 'f1_joy': 1.0, ...}

In your own Trainer: `compute_metrics=lambda p: metric.compute(predictions=p.predictions, references=p.label_ids,
from_logits=True)`, which gives the numbers of `emo_hf.metrics.compute_metrics`.
"""

import datasets
import evaluate
import numpy as np

from emo_hf.metrics import flat_metrics, multilabel_metrics, sigmoid, tune_thresholds

_DESCRIPTION = """Multi-label classification metrics at per-label thresholds (prob >= threshold is positive; scikit-learn,
zero_division=0): subset accuracy (exact match), micro F1, macro F1 (the mean per-label F1 published for GoEmotions),
macro precision and recall, and per label f1_<name>, precision_<name>, recall_<name>. With tune=True the thresholds
are first tuned per label for F1 on these same rows (do that on validation data, then pass them for test)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: probabilities [n, labels] (or logits with from_logits=True).
    references: multi-hot 0/1 [n, labels].
    thresholds: one float for every label or one per label (default 0.5).
    label_names: names used in the per-label keys (default label_0, label_1, ...).
    from_logits: apply a sigmoid to predictions first.
    tune: tune one threshold per label on these rows; the result gains a "thresholds" list.
Returns: a flat dict of floats (and "thresholds" with tune=True).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmoMultilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            # float64: probabilities are compared with thresholds exactly as compute_metrics compares them
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("int32"))}),
        )

    def _compute(self, predictions, references, thresholds=0.5, label_names=None, from_logits=False, tune=False):
        probs = np.asarray(predictions, dtype=np.float64)
        if from_logits:
            probs = sigmoid(probs)
        y_true = np.asarray(references)
        if tune:
            thresholds = tune_thresholds(y_true, probs)
        result = flat_metrics(multilabel_metrics(y_true, probs, thresholds, label_names))
        if tune:
            result["thresholds"] = [float(t) for t in thresholds]
        return result
