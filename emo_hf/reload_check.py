"""After training: load the saved model folder the way a user will and compare its predictions with the model that
was trained, so a saved model that is not the trained one is reported the day it is made, not found later in a
score.

    from emo_hf.reload_check import reload_check
    result = reload_check(model, "runs/x/model", validation_texts[:256])
    result["ok"], result["max_abs_probability_difference"]

Why: on the H200 (2026-12-01, and again 2026-12-02) Gemma 3 270M scored validation macro-F1 0.526-0.527 inside its
training run and 0.395-0.396 once its saved folder was reloaded by `emo-hf evaluate` (docs/results.md, "Decoders"),
while this check, run in the training process, passed. What differed: the reloaded tokenizer padded on the left
(GemmaTokenizer's class default; `save_pretrained` did not keep the side it trained with, now fixed in
emo_hf.modeling.pad_as_in_training), and `emo-hf evaluate` batched 64 unsorted rows, heavily padded, while this check
predicts length-sorted batches with almost no padding. That the left padding caused the GPU gap is likely but not yet
measured on a GPU (on the CPU, float32, left and right padding agree to 1e-6). So the check compares the reloaded
folder with every way the trained model saw the texts: `predict_proba` in memory, the Trainer's own path (from
emo_hf.trainer: its collated batches under its autocast), and up to 64 of the texts of mixed lengths in one padded
batch (`one_padded_batch`). `emo_hf.trainer` runs it after saving (rank 0); the result goes into
training_info.json as `reload_check`, a failed check is printed as a warning naming the folder, and the model
card (written by `emo-hf evaluate` / `export`) opens its limitations with it. The model folder
is kept either way: it is the user's to inspect, and nothing trained is thrown away.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Accepted |probability difference| between the reloaded folder and the trained model: a bf16 backbone trained on the
# GPU and reloaded in float32 differs by up to ~0.02 per probability, ~0.003 on average (Gemma 3 270M on the CPU, bf16
# vs float32: max 0.019, mean 0.0027); these bounds are 5x and 4x that. A wrong reload differs by far more.
MAX_TOLERANCE = 0.1
MEAN_TOLERANCE = 0.01


def reload_check(model, model_dir: str | os.PathLike, texts: Sequence[str],
                 trainer_probabilities: np.ndarray | None = None) -> dict[str, Any]:
    """Predict `texts` with `model` (in memory) and with `model_dir` reloaded, and compare; `trainer_probabilities`
    `[len(texts), L]` (the same texts through the training loop's batches) is compared too when given. Returns
    `{"ok", "rows", "max_abs_difference", "mean_abs_difference", ...}` (the largest over the references), or
    `{"ok": None, "skipped": why}` when no reload could be made (e.g. no GPU memory for a second copy). Blank texts
    are not scored. Leaves `model` in the mode it was in."""
    import torch

    from .pipeline import load_trained_model

    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    if not keep:
        return {"ok": None, "skipped": "no validation texts"}
    texts = [texts[i] for i in keep]
    was_training = model.training
    model.eval()
    try:
        references = {"predict_proba": model.predict_proba(texts)}
    finally:
        model.train(was_training)
    if trainer_probabilities is not None:
        references["training_loop"] = np.asarray(trainer_probabilities)[keep]
    reloaded = None
    differing = None
    try:
        reloaded = load_trained_model(model_dir)
        from_disk = reloaded.predict_proba(texts)
        gaps = {name: np.abs(reference - from_disk) for name, reference in references.items()}
        # Up to 64 texts of mixed lengths in one batch, as a user's unsorted batches pad them: length-sorted batches
        # carry almost no padding, so a reloaded tokenizer padding on another side than training (GemmaTokenizer's
        # default left, 2026-12-02) would pass the comparison above.
        mixed = texts[:64]
        one_batch = reloaded.predict_proba(mixed, batch_size=len(mixed))
        gaps["one_padded_batch"] = np.abs(references["predict_proba"][:len(mixed)] - one_batch)
        if max(float(gap.max()) for gap in gaps.values()) > MAX_TOLERANCE or \
                max(float(gap.mean()) for gap in gaps.values()) > MEAN_TOLERANCE:
            differing = differing_tensors(model, reloaded)
    except torch.cuda.OutOfMemoryError:
        return {"ok": None, "skipped": "out of GPU memory for a second copy; check with `emo-hf evaluate`"}
    finally:
        del reloaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result: dict[str, Any] = {"rows": len(texts), "max_tolerance": MAX_TOLERANCE, "mean_tolerance": MEAN_TOLERANCE}
    result.update({name: {"max_abs_difference": round(float(gap.max()), 5),
                          "mean_abs_difference": round(float(gap.mean()), 6)} for name, gap in gaps.items()})
    result["max_abs_difference"] = max(result[name]["max_abs_difference"] for name in gaps)
    result["mean_abs_difference"] = max(result[name]["mean_abs_difference"] for name in gaps)
    result["ok"] = result["max_abs_difference"] <= MAX_TOLERANCE and result["mean_abs_difference"] <= MEAN_TOLERANCE
    if differing is not None:
        result["differing_tensors"] = differing
    if not result["ok"]:
        message = (f"emo_hf: WARNING: the saved model in {model_dir} does not reproduce the trained model: its "
                   f"probabilities on {len(texts)} validation texts differ by up to {result['max_abs_difference']:.3f} "
                   f"(mean {result['mean_abs_difference']:.4f}; accepted {MAX_TOLERANCE} / {MEAN_TOLERANCE}). Its "
                   f"scores from `emo-hf evaluate` will not match training's; please report this with the folder's "
                   f"config.json and training_info.json (its reload_check entry says which path differs).")
        logger.warning(message)
        print(message, flush=True)
    return result


def differing_tensors(model, reloaded, limit: int = 10) -> dict[str, Any]:
    """Where two models differ, for a failed check: parameters and buffers (compared in float32 on the CPU) whose
    largest |difference| exceeds 1% of the tensor's largest |value|, the names only one side has, and the attention
    implementation and dtype of each; at most `limit` names per list, largest gap first."""
    import torch

    def tensors(m) -> dict[str, torch.Tensor]:
        found = dict(m.named_parameters())
        found.update(dict(m.named_buffers()))
        return found

    mine, theirs = tensors(model), tensors(reloaded)
    gaps = []
    for name in sorted(set(mine) & set(theirs)):
        a, b = mine[name], theirs[name]
        if a.shape != b.shape:
            gaps.append((float("inf"), name, f"shape {tuple(a.shape)} vs {tuple(b.shape)}"))
            continue
        if not (a.is_floating_point() and b.is_floating_point()):
            continue
        a32, b32 = a.detach().float().cpu(), b.detach().float().cpu()
        gap = float((a32 - b32).abs().max()) if a32.numel() else 0.0
        if gap > 0.01 * max(float(a32.abs().max()) if a32.numel() else 0.0, 1e-6):
            gaps.append((gap, name, f"max |diff| {gap:.4g}"))
    gaps.sort(key=lambda item: -item[0])

    def backbone_facts(m) -> dict[str, Any]:
        config = m.backbone.config
        return {"attention": getattr(config, "_attn_implementation", None),
                "dtype": str(next(m.backbone.parameters()).dtype)}

    return {"tensors": [f"{name}: {what}" for _, name, what in gaps[:limit]], "tensors_differing": len(gaps),
            "only_in_trained": sorted(set(mine) - set(theirs))[:limit],
            "only_in_reloaded": sorted(set(theirs) - set(mine))[:limit],
            "trained": backbone_facts(model), "reloaded": backbone_facts(reloaded)}
