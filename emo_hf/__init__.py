"""emo_hf: a multi-label emotion classifier on an open-weight language model, the Hugging Face way."""

from .labels import DEFAULT_LABELS, GOEMOTIONS_LABELS, resolve_labels

__version__ = "0.1.0"
