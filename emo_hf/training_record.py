"""What a training run leaves besides its weights: training_info.json (settings, data, timings, the memory plan),
the model folder saved with it in one rename, and the reload check recorded into it.

    info = training_info(settings, data_dir, train_split, label_names)      # then emo_hf.trainer adds the results
    save_trained_model(model, out / "model", info, data_dir)                 # temp folder + rename
    record_reload_check(model, out / "model", validation, encoded_validation, collator, settings)

The keys that the model card reads are listed in emo_hf.model_card.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .presets import TrainSettings

TRAINING_INFO_NAME = "training_info.json"


def save_trained_model(model, model_dir: Path, training_info: dict, data_dir: str | os.PathLike | None = None) -> None:
    """Save the model with its training_info.json (and the data's balancing chart) atomically: a temp folder next to
    `model_dir`, then a rename, so an interrupted save never leaves half a model."""
    from .atomic import make_temp_dir, replace_dir
    from .checkpoints import MODEL_TEMP_PREFIX, OLD_PREFIX, fault_point

    tmp = make_temp_dir(model_dir.parent, MODEL_TEMP_PREFIX)
    try:
        model.save_pretrained(tmp)
        chart = Path(data_dir) / "label_counts.png" if data_dir is not None else None
        if chart is not None and chart.is_file() and (training_info.get("data") or {}).get("chart"):
            shutil.copyfile(chart, tmp / training_info["data"]["chart"])
        elif training_info.get("data"):
            training_info["data"].pop("chart", None)
        (tmp / TRAINING_INFO_NAME).write_text(json.dumps(training_info, indent=2, default=str))
        fault_point("model.staged")
        replace_dir(tmp, model_dir, OLD_PREFIX)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def training_info(settings: TrainSettings, data_dir, train_split, label_names: list[str]) -> dict[str, Any]:
    """The provenance saved as training_info.json; the keys the model card reads are in emo_hf.model_card."""
    build = build_info(data_dir) or {}
    counts = build.get("counts") or {}
    y_train = np.asarray(train_split["labels"], dtype=np.float32)
    after = {name: int(v) for name, v in zip(label_names, y_train.sum(axis=0))}
    from .model_card_sections import describe_no_emotion, describe_text_balancing

    if settings.input_mode == "embedding":
        balance = build.get("balance") or {}
        balancing = (f"{balance.get('method', 'ismote')} oversampling in sentence-embedding space to "
                     f"{balance.get('target_per_label')} positives per label, "
                     f"{describe_no_emotion(balance.get('keep_no_emotion'))} (train split only)")
    else:
        balancing = describe_text_balancing(settings.to_dict())
    rows = (build.get("rows") or {}).get("raw") or {}
    data = {
        "source": build.get("source_kind") or "unknown",
        "description": f"Built with `emo-hf data build` from {build['source_description']}." if build.get("source_description") else None,
        "splits": {"train (used)": len(train_split), **{k: v for k, v in rows.items() if k != "train"}} if rows else None,
        "label_counts_before": counts.get("train_before"),
        "label_counts_after": after,
        "balancing": balancing,
        "chart": "label_balance.png" if settings.input_mode == "embedding" else None,
    }
    hyperparameters = {
        "input_mode": settings.input_mode, "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.epochs,
        **distributed.batch_info(settings.batch_size, settings.gradient_accumulation_steps),
        "gradient_accumulation_steps": settings.gradient_accumulation_steps, "weight_decay": settings.weight_decay,
        "warmup_ratio": settings.warmup_ratio, "max_length": settings.max_length, "focal_gamma": settings.focal_gamma,
        "focal_alpha": settings.focal_alpha, "lora_r": settings.lora_r or "full fine-tuning",
        "load_in_4bit": settings.load_in_4bit, "bf16": settings.bf16, "seed": settings.seed,
        "max_tokens_per_batch": settings.max_tokens_per_batch,
    }
    return {
        "base_model": settings.backbone,
        "preset": settings.preset,
        "hyperparameters": hyperparameters,
        "data": {k: v for k, v in data.items() if v is not None},
        "selection": {"checkpoint_metric": "macro_f1 on validation at threshold 0.5, evaluated every epoch",
                      "threshold_split": "validation", "threshold_objective": "F1 of each label over a grid"},
        "settings": settings.to_dict(),
        "data_dir": str(data_dir),
        "train_rows": len(train_split),
    }


def headline(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def build_info(data_dir) -> dict | None:
    path = Path(data_dir) / "build_info.json"
    return json.loads(path.read_text()) if path.is_file() else None


def encoder_of(data_dir) -> dict:
    info = build_info(data_dir) or {}
    encoder = info.get("encoder")
    if not encoder:
        raise ValueError(f"{data_dir}/build_info.json does not name the sentence encoder; rebuild with emo-hf data build.")
    return {"encoder_name": encoder, "encoder_dim": int(info.get("embedding_dim") or 0) or None}


def peak_gpu_gib() -> float | None:
    """This process's peak allocated GPU memory (GiB), or None on CPU: the figure a smaller card must hold."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def device_name() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"



def record_reload_check(model, model_dir: Path, validation, encoded_validation, collator, settings) -> None:
    """emo_hf.reload_check on the first settings.reload_check_rows validation texts, against the model in memory and
    against the training loop's own path (its collator, its autocast); the result is added to training_info.json in
    place (temp file + rename)."""
    import torch

    from .metrics import sigmoid
    from .reload_check import reload_check

    if "text" not in validation.column_names:
        return
    rows = range(min(settings.reload_check_rows, len(validation)))
    texts = list(validation.select(rows)["text"])
    # The training loop's path, run here rather than through predict_split_probs: Trainer's prediction loop may
    # reorder the rows (length-grouped evaluation), and these probabilities must line up with `texts`.
    device = next(model.parameters()).device
    logits = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(settings.bf16)):
            for start in range(0, len(rows), 32):
                batch = collator([dict(encoded_validation[i]) for i in rows[start:start + 32]])
                batch = {k: v.to(device) for k, v in batch.items() if k != "labels" and hasattr(v, "to")}
                logits.append(model(**batch).logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    result = reload_check(model, model_dir, texts, trainer_probabilities=sigmoid(np.concatenate(logits)))
    path = model_dir / TRAINING_INFO_NAME
    info = json.loads(path.read_text())
    info["reload_check"] = result
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, path)
