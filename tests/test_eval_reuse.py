"""The best epoch's validation predictions are reused for the thresholds instead of a second validation pass."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from emo_hf.eval_reuse import EvaluationMemory


def test_memory_keeps_each_evaluation_by_step_and_ignores_predict():
    seen = []
    memory = EvaluationMemory(lambda pred: seen.append(pred) or {"macro_f1": 0.5})
    callback = memory.callback()
    for step, value in ((10, 1.0), (20, 2.0)):
        logits, labels = np.full((3, 2), value), np.eye(3, 2)
        assert memory.compute_metrics(SimpleNamespace(predictions=(logits, "hidden"), label_ids=labels)) == {"macro_f1": 0.5}
        callback.on_evaluate(None, SimpleNamespace(global_step=step), None, metrics={"eval_macro_f1": 0.5})
    memory.compute_metrics(SimpleNamespace(predictions=np.zeros((3, 2)), label_ids=np.zeros((3, 2))))
    callback.on_evaluate(None, SimpleNamespace(global_step=30), None, metrics={"predict_macro_f1": 0.1})
    assert len(seen) == 3 and sorted(memory.by_step) == [10, 20]
    logits, labels = memory.for_checkpoint("/runs/x/checkpoints/checkpoint-20/")
    assert (logits == 2.0).all() and (labels == np.eye(3, 2)).all()
    assert memory.for_checkpoint("/runs/x/checkpoints/checkpoint-30") is None
    assert memory.for_checkpoint(None) is None


def test_training_tunes_on_the_best_epochs_own_predictions(goemotions_slice_data, tmp_path, monkeypatch):
    from emo_hf import trainer as trainer_module
    from emo_hf.metrics import multilabel_metrics
    from emo_hf.pipeline import load_trained_model, split_probabilities
    from emo_hf.presets import get_preset
    from emo_hf.training_data import load_splits

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the validation split was predicted again after training")

    monkeypatch.setattr(trainer_module, "predict_split_probs", no_second_pass)
    result = trainer_module.train(goemotions_slice_data, tmp_path / "run", get_preset("tiny-random").replace(epochs=2),
                                  show_progress=False)
    info = json.loads((result.model_dir / "training_info.json").read_text())
    evals = [entry["eval_macro_f1"] for entry in info["log_history"] if "eval_macro_f1" in entry]
    assert info["validation_metrics_at_0.5"]["macro_f1"] == pytest.approx(max(evals), abs=1e-6)
    # the saved model, run afresh on validation, scores what the reused predictions scored
    splits, names = load_splits(goemotions_slice_data, "text")
    probs = split_probabilities(load_trained_model(result.model_dir), splits["validation"], show_progress=False)
    fresh = multilabel_metrics(np.asarray(splits["validation"]["labels"], dtype=np.float32), probs, 0.5, names)
    assert fresh["macro_f1"] == pytest.approx(info["validation_metrics_at_0.5"]["macro_f1"], abs=1e-6)
