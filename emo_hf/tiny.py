"""Kept for imports written before emo_hf.backbones: the tiny models live in emo_hf.backbones.tiny."""

from .backbones.tiny import TINY_BACKBONE, build_tiny_mistral, build_tiny_model, cache_dir, resolve_backbone  # noqa: F401
