"""Keep the validation predictions of each epoch's evaluation, so the best epoch's need not be computed again.

    memory = EvaluationMemory(make_compute_metrics(label_names))
    trainer = Trainer(..., compute_metrics=memory.compute_metrics, callbacks=[memory.callback()])
    trainer.train()
    logits, labels = memory.for_checkpoint(trainer.state.best_model_checkpoint) or predict_again()

`emo_hf.trainer.train` tunes the thresholds on the best checkpoint's validation probabilities. Trainer has just
computed exactly those (same weights, same rows, same batches) when it evaluated that epoch; running the split through
the model again cost one more validation pass (5,426 texts, about half a minute of the CPU main job).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np


def _first(array: Any) -> np.ndarray:
    return np.asarray(array[0] if isinstance(array, tuple) else array)


class EvaluationMemory:
    """Wraps `compute_metrics`; remembers (logits [n, L], labels [n, L]) per global step of each evaluation."""

    def __init__(self, compute_metrics: Callable[[Any], dict[str, float]]):
        self._compute = compute_metrics
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self.by_step: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        self._last = (_first(eval_pred.predictions), _first(eval_pred.label_ids))
        return self._compute(eval_pred)

    def callback(self):
        from transformers import TrainerCallback

        memory = self

        class RememberEvaluation(TrainerCallback):
            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                # only evaluations of the eval split carry `eval_` metrics; a predict() call goes elsewhere
                if memory._last is not None and any(k.startswith("eval_") for k in (metrics or {})):
                    memory.by_step[state.global_step] = memory._last
                memory._last = None

        return RememberEvaluation()

    def for_checkpoint(self, checkpoint: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(logits, labels) of the evaluation at `checkpoint`'s step (`.../checkpoint-<step>`), or None if not seen."""
        match = re.search(r"checkpoint-(\d+)$", str(checkpoint or "").rstrip("/"))
        return self.by_step.get(int(match.group(1))) if match else None
