"""A fabricated emo_hf model folder for the publishing tests (card, export, push): NOT a trained model.

The files have the layout and keys that emo_hf saves (config.json, thresholds.json, adapter files, head.safetensors,
tokenizer file, code files, report.json, training_info.json, a chart), with small made-up weights. report.json is
written by the real emo_hf.evaluation.write_report from seeded random labels and scores, so it follows the real schema
and its numbers are consistent with each other (per-label rows, averages, support) the way a real evaluation's are.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

LABELS = ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
          "gratitude", "grief", "joy", "love", "pride", "sadness", "neutral"]
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# A 1x1 PNG, enough for the card to link a chart that exists.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")


def _fake_scores(labels: list[str], n: int, seed: int):
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.01, 0.3, len(labels))  # some labels rare (small support), some frequent
    y_true = (rng.random((n, len(labels))) < rates).astype(int)
    scores = np.clip(0.55 * y_true + rng.normal(0.25, 0.2, y_true.shape), 0, 1)
    baseline = np.clip(0.3 * y_true + rng.normal(0.3, 0.2, y_true.shape), 0, 1)
    return y_true, scores, baseline


def fake_report(labels: list[str], thresholds: list[float], n: int = 600, seed: int = 0) -> dict:
    """The report.json dict of emo_hf.evaluation.build_report on seeded random labels and scores (nothing written):
    the real schema, made-up data, so the numbers mean nothing."""
    from emo_hf.evaluation import build_report

    y_true, scores, baseline = _fake_scores(labels, n, seed)
    return build_report(label_names=labels, split="test", y_true=y_true, probs=scores, thresholds=thresholds,
                        val_tuned=True, baselines={"tfidf_logreg": {"probs": baseline}},
                        meta={"note": "fabricated test fixture"})


def write_fake_report(folder: Path, labels: list[str], thresholds: list[float], n: int = 600, seed: int = 0) -> dict:
    """Like fake_report, written into `folder` by emo_hf.evaluation.write_report (report.json, report.md, plots)."""
    from emo_hf.evaluation import write_report

    y_true, scores, baseline = _fake_scores(labels, n, seed)
    return write_report(folder, label_names=labels, split="test", y_true=y_true, probs=scores, thresholds=thresholds,
                        val_tuned=True, baselines={"tfidf_logreg": {"probs": baseline}},
                        meta={"note": "fabricated test fixture"})


_BUILT: dict[tuple[bool, bool, bool], Path] = {}


def make_model_folder(folder: Path, *, report: bool = True, training_info: bool = True, lora: bool = True) -> Path:
    """Write the fabricated model into `folder` (created) and return it.

    Built once per process and variant (the report's plots and bootstrap take seconds), then copied for each call.
    """
    key = (report, training_info, lora)
    if key not in _BUILT:
        _BUILT[key] = _build(Path(tempfile.mkdtemp(prefix="emo-fake-model-")) / "model", report=report,
                             training_info=training_info, lora=lora)
    shutil.copytree(_BUILT[key], folder, dirs_exist_ok=True)
    return folder


def _build(folder: Path, *, report: bool, training_info: bool, lora: bool) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    thresholds = [round(float(t), 2) for t in rng.uniform(0.2, 0.7, len(LABELS))]
    lora_settings = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none", "target_modules": ["query", "value"]}
    config = {
        "model_type": "emo_multilabel",
        "architectures": ["EmoModelForMultiLabel"],
        "auto_map": {"AutoConfig": "configuration.EmoConfig", "AutoModel": "modeling.EmoModelForMultiLabel"},
        "id2label": {str(i): label for i, label in enumerate(LABELS)},
        "label2id": {label: i for i, label in enumerate(LABELS)},
        "backbone_name_or_path": BASE_MODEL,
        "input_mode": "text",
        "focal_gamma": 2.0,
        "thresholds": thresholds,
        "lora": lora_settings if lora else None,
        "load_in_4bit": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "thresholds.json").write_text(json.dumps(dict(zip(LABELS, thresholds)), indent=2))
    save_file({"score.weight": rng.normal(size=(len(LABELS), 8)).astype(np.float32),
               "score.bias": np.zeros(len(LABELS), np.float32)}, str(folder / "head.safetensors"),
              metadata={"labels": json.dumps(LABELS), "hidden_size": "8", "input_mode": "text"})
    if lora:
        (folder / "adapter").mkdir()  # where save_pretrained puts it (never the root: see emo_hf/modeling.py)
        (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **lora_settings}))
        save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight":
                   rng.normal(size=(8, 8)).astype(np.float32)}, str(folder / "adapter" / "adapter_model.safetensors"))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    (folder / "configuration.py").write_text("# EmoConfig (copied from emo_hf/configuration.py when saving)\n")
    (folder / "modeling.py").write_text("# EmoModelForMultiLabel (copied from emo_hf/modeling.py when saving)\n")
    if report:
        write_fake_report(folder, LABELS, thresholds)
    if training_info:
        before = {label: int(n) for label, n in zip(LABELS, rng.integers(80, 4000, len(LABELS)))}
        info = {
            "preset": "minilm",
            "base_model": BASE_MODEL,
            "hyperparameters": {"learning_rate": 2e-4, "num_train_epochs": 3, "per_device_train_batch_size": 32,
                                "focal_gamma": 2.0, "seed": 42, "max_length": 128},
            "data": {
                "source": "goemotions",
                "splits": {"train": 43410, "validation": 5426, "test": 5427},
                "label_counts_before": before,
                "label_counts_after": {label: max(n, 1500) for label, n in before.items()},
                "balancing": "Labels with fewer than 1500 training examples were oversampled to 1500.",
                "chart": "label_balance.png",
            },
            "selection": {"checkpoint_metric": "macro F1", "threshold_split": "validation",
                          "threshold_objective": "F1 per label"},
        }
        (folder / "training_info.json").write_text(json.dumps(info, indent=2))
        (folder / "label_balance.png").write_bytes(PNG)
    return folder
