"""Data: loading GoEmotions or the user's data, sentence embeddings, balancing, the leakage guard and the builder.

    >>> from emo_hf.data import load_goemotions, build_dataset
    >>> summary = build_dataset("../shared/goemotions", "runs/data")
    >>> from datasets import load_dataset
    >>> balanced = load_dataset("runs/data", "balanced")

Submodules import datasets / sentence-transformers lazily, so importing this package stays cheap.
"""

from __future__ import annotations

from .loading import load_goemotions, load_user_data

__all__ = ["load_goemotions", "load_user_data", "build_dataset"]


def __getattr__(name: str):
    if name == "build_dataset":
        from .builder import build_dataset

        return build_dataset
    raise AttributeError(name)
