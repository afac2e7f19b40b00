"""Label sets: the 15 default emotions, the 28 GoEmotions names, and validation of custom sets.

    >>> from emo_hf.labels import resolve_labels
    >>> resolve_labels(["joy", "anger"])
    ['joy', 'anger']
"""

from __future__ import annotations

from collections.abc import Sequence

# The label set this project classifies by default, in this order (the order of the model's logits).
DEFAULT_LABELS: tuple[str, ...] = (
    "fear",
    "sadness",
    "disgust",
    "disapproval",
    "annoyance",
    "anger",
    "disappointment",
    "optimism",
    "amusement",
    "surprise",
    "admiration",
    "excitement",
    "confusion",
    "joy",
    "love",
)

# GoEmotions' 28 names in id order (labels.txt of the official release; id 27 is "neutral").
GOEMOTIONS_LABELS: tuple[str, ...] = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)


def resolve_labels(labels: Sequence[str] | str | None = None, valid: Sequence[str] | None = None) -> list[str]:
    """Return a validated label list.

    `labels` may be None (the 15 defaults), the words "default" or "goemotions" (all 28 names), a comma-separated
    string, or a list of names. Names must be unique; when `valid` is given (the names a source provides, GoEmotions'
    by default for the named sets) each name must be in it, else the error lists the valid ones.
    """
    if labels is None or labels == "default":
        return list(DEFAULT_LABELS)
    if labels == "goemotions":
        return list(GOEMOTIONS_LABELS)
    if isinstance(labels, str):
        labels = [name.strip() for name in labels.split(",") if name.strip()]
    names = [str(name) for name in labels]
    if not names:
        raise ValueError("The label set is empty: pass at least one label name, e.g. labels=['joy', 'anger'].")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Label names must be unique; repeated: {duplicates!r}.")
    if valid is not None:
        unknown = [name for name in names if name not in valid]
        if unknown:
            raise ValueError(
                f"Unknown label name(s) {unknown!r}. Valid names are: {', '.join(valid)}. "
                f"For example: labels={[n for n in names if n in valid] or list(valid[:2])!r}."
            )
    return names
