"""After training: load the saved model folder the way a user will and compare its predictions with the model that
was trained, so a saved model that is not the trained one is reported the day it is made, not found later in a
score.

    from emo_hf.reload_check import reload_check
    result = reload_check(model, "runs/x/model", validation_texts[:256])
    result["ok"], result["max_abs_probability_difference"]

Why: on the H200 (2026-12-01) Gemma 3 270M scored validation macro-F1 0.526 inside its training run and 0.399
once its saved folder was reloaded by `emo-hf evaluate` (docs/results.md, "Decoders"), while the same round trip on
the CPU was exact. `emo_hf.trainer` runs this check after saving (rank 0, text and embedding mode); the result goes
into training_info.json as `reload_check`, and a failed check is printed as a warning naming the folder. The model
folder is kept either way: it is the user's to inspect, and nothing trained is thrown away.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Largest |probability difference| accepted. A bf16 backbone trained on the GPU and reloaded in float32 differs by
# ~0.02 (Gemma 3 270M on the CPU: 0.019 bf16 vs float32); a wrong reload differs by far more.
RELOAD_TOLERANCE = 0.05


def reload_check(model, model_dir: str | os.PathLike, texts: Sequence[str],
                 tolerance: float = RELOAD_TOLERANCE) -> dict[str, Any]:
    """Predict `texts` with `model` (in memory) and with `model_dir` reloaded; `{"ok", "rows",
    "max_abs_probability_difference", "tolerance"}`, or `{"ok": None, "skipped": why}` when the reload could not be
    made (e.g. no GPU memory left for a second copy). Leaves `model` in the mode it was in."""
    import torch

    from .pipeline import load_trained_model

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        return {"ok": None, "skipped": "no validation texts"}
    was_training = model.training
    model.eval()
    try:
        in_memory = model.predict_proba(texts)
    finally:
        model.train(was_training)
    reloaded = None
    try:
        reloaded = load_trained_model(model_dir)
        from_disk = reloaded.predict_proba(texts)
    except torch.cuda.OutOfMemoryError:
        return {"ok": None, "skipped": "out of GPU memory for a second copy; check with `emo-hf evaluate`"}
    finally:
        del reloaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    difference = float(np.abs(in_memory - from_disk).max())
    result = {"ok": difference <= tolerance, "rows": len(texts), "max_abs_probability_difference": round(difference, 5),
              "tolerance": tolerance}
    if not result["ok"]:
        message = (f"emo_hf: WARNING: the saved model in {model_dir} does not reproduce the trained model: probabilities "
                   f"differ by up to {difference:.3f} on {len(texts)} validation texts (tolerance {tolerance}). Its "
                   f"scores from `emo-hf evaluate` will not match training; please report this with the folder's "
                   f"config.json and training_info.json.")
        logger.warning(message)
        print(message, flush=True)
    return result
