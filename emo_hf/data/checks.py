"""Checks `data build` runs on the loaded splits before any embedding work, so bad input fails in seconds.

    >>> from emo_hf.data.checks import check_splits
    >>> warnings = check_splits({"train": train, "validation": validation, "test": test}, names, balance="ismote",
    ...                         target_per_label=1500, k_neighbors=5)

Refused (ValueError with the fix): a split without rows (train, evaluate and load_dataset would refuse the folder
later), a label with no train positives (nothing to learn or oversample from), and with smote / ismote a label to be
oversampled that has fewer than k+1 train positives (a seed needs k neighbours of its own label). Warned (returned
and logged): a label whose few real examples would be oversampled into many synthetic rows each.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# A label oversampled to more than this many synthetic rows per real positive is mostly near-copies of a few texts.
SYNTHETIC_PER_REAL_WARNING = 10.0


def check_splits(
    splits: Mapping[str, object],
    names: Sequence[str],
    balance: str,
    target_per_label: int,
    k_neighbors: int,
    source: str = "the source",
) -> list[str]:
    """Refuse what the build cannot make a usable folder from; return the warnings (also logged)."""
    from .loading import label_matrix

    empty = [split for split, rows in splits.items() if rows.num_rows == 0]
    if empty:
        raise ValueError(
            f"The {', '.join(repr(s) for s in empty)} split(s) of {source} have no rows: train, evaluate and load_dataset "
            f"need rows in train, validation and test. Add rows (or restore the file), or let the build make the "
            f"splits: a user file without a split column is split 80/10/10."
        )
    counts = (label_matrix(splits["train"]) > 0).sum(axis=0).astype(np.int64)  # [n_labels] train positives
    absent = [name for name, count in zip(names, counts) if count == 0]
    if absent:
        raise ValueError(
            f"Label(s) {absent} have no positive rows in the train split of {source}: nothing to learn them from. "
            f"Remove them from --labels or add examples."
        )
    oversampled = [(name, int(count)) for name, count in zip(names, counts) if count < target_per_label]
    if balance in ("smote", "ismote"):
        few = [(name, count) for name, count in oversampled if count < k_neighbors + 1]
        if few:
            listed = ", ".join(f"{name!r} ({count})" for name, count in few)
            smallest = min(count for _, count in few)
            lower = f", lower --k-neighbors to {smallest - 1}" if smallest >= 2 else ""
            raise ValueError(
                f"--balance {balance} needs at least k+1 = {k_neighbors + 1} train positives for every label it "
                f"oversamples (k = --k-neighbors {k_neighbors} neighbours of the same label); too few: {listed}. "
                f"Fix: remove the label(s) from --labels, add examples{lower}, or use --balance random or --balance none."
            )
    warnings = []
    if balance != "none":
        for name, count in oversampled:
            per_real = (target_per_label - count) / count
            if per_real > SYNTHETIC_PER_REAL_WARNING:
                warnings.append(
                    f"label {name!r} has {count} train positive(s): oversampling it to {target_per_label:,} makes about "
                    f"{per_real:.0f} synthetic rows per real example (near-copies of {count} text(s)); consider a lower "
                    f"--target-per-label, --balance none, or more examples"
                )
    for warning in warnings:
        logger.warning(warning)
    return warnings
