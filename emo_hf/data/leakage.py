"""The leakage guard: no row in two splits, synthetic rows made only from train rows; cross-split duplicate texts.

    >>> from emo_hf.data.leakage import check_no_leakage, cross_split_duplicate_texts
    >>> check_no_leakage({"train": ds["train"], "validation": ds["validation"], "test": ds["test"]})
    >>> cross_split_duplicate_texts({s: ds[s]["text"] for s in ds})
    {'train/validation': 46, 'train/test': 37, 'validation/test': ...}

A synthetic row built from a row that later lands in the test set makes test scores optimistic: the model has been
trained on an interpolation of the test row. The builder calls `check_no_leakage` before it writes anything.
Identical texts that the *source* already has in several splits (short comments such as "bless you.") are counted
and reported, not dropped: dropping them would change the official split everyone compares against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any


class LeakageError(ValueError):
    """Raised when splits overlap or a synthetic row was made from a row outside train."""


def _column(split: Any, name: str) -> list:
    if isinstance(split, Mapping):
        return list(split.get(name, []) or [])
    if name in getattr(split, "column_names", []):
        from .loading import column_values

        return column_values(split, name)
    return []


def check_no_leakage(splits: Mapping[str, Any], train_split: str = "train") -> None:
    """Raise `LeakageError` if an id is in more than one split, or a synthetic row's `seed_id` / `neighbor_id` is not
    the id of a real row of `train_split`, or a synthetic row appears outside `train_split`.

    `splits` maps split names to datasets (or dicts of lists) with an `id` column and, where balanced,
    `is_synthetic`, `seed_id`, `neighbor_id` columns.
    """
    owner: dict[str, str] = {}
    problems: list[str] = []
    for split_name, split in splits.items():
        seen_here: set[str] = set()
        for row_id in _column(split, "id"):
            if row_id in seen_here:
                problems.append(f"id {row_id!r} appears twice in {split_name!r}")
            seen_here.add(row_id)
            if row_id in owner and owner[row_id] != split_name:
                problems.append(f"id {row_id!r} is in both {owner[row_id]!r} and {split_name!r}")
            owner.setdefault(row_id, split_name)
        if len(problems) > 20:
            break
    train = splits.get(train_split)
    if train is None:
        raise LeakageError(f"No {train_split!r} split among {list(splits)}.")
    train_synthetic = _column(train, "is_synthetic")
    train_ids = _column(train, "id")
    real_train_ids = {i for i, synthetic in zip(train_ids, train_synthetic or [False] * len(train_ids)) if not synthetic}
    for split_name, split in splits.items():
        flags = _column(split, "is_synthetic")
        if not any(flags):
            continue
        if split_name != train_split:
            problems.append(f"{sum(map(bool, flags))} synthetic row(s) in {split_name!r}: only {train_split!r} may hold them")
            continue
        ids, seeds, neighbors = _column(split, "id"), _column(split, "seed_id"), _column(split, "neighbor_id")
        for row_id, synthetic, seed_id, neighbor_id in zip(ids, flags, seeds, neighbors):
            if not synthetic:
                continue
            if seed_id not in real_train_ids:
                where = owner.get(seed_id, "no split")
                problems.append(f"synthetic row {row_id!r} has seed {seed_id!r} from {where!r}, not a real {train_split!r} row")
            if neighbor_id is not None and neighbor_id not in real_train_ids:
                where = owner.get(neighbor_id, "no split")
                problems.append(f"synthetic row {row_id!r} has neighbour {neighbor_id!r} from {where!r}, not a real {train_split!r} row")
            if len(problems) > 20:
                break
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise LeakageError(
            f"Refusing to write the dataset: {shown}{more}. Ids must be unique across splits and synthetic rows may only "
            f"be built from real {train_split!r} rows; balance the train split alone."
        )


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive form used for the "normalised" duplicate count."""
    return " ".join(text.casefold().split())


def cross_split_duplicate_texts(
    texts_by_split: Mapping[str, Iterable[str]], examples: int = 5
) -> dict[str, dict[str, Any]]:
    """For every pair of splits: texts present in both, counted exactly and after case/whitespace normalisation.

        >>> cross_split_duplicate_texts({"train": ["a", "b"], "test": ["B ", "b", "c"]})["train/test"]
        {'count': 1, 'rows': {'train': 1, 'test': 1}, 'count_normalized': 1, 'examples': ['b']}

    `count`: distinct texts identical in both splits; `rows`: how many rows of each split hold one of them;
    `count_normalized`: distinct texts equal after `normalize_text` (on the official GoEmotions split this gives the
    commonly quoted 46 train/validation and 37 train/test).
    """
    lists = {name: list(texts) for name, texts in texts_by_split.items()}
    result: dict[str, dict[str, Any]] = {}
    for first, second in combinations(lists, 2):
        shared = set(lists[first]) & set(lists[second])
        normalized = {normalize_text(t) for t in lists[first]} & {normalize_text(t) for t in lists[second]}
        result[f"{first}/{second}"] = {
            "count": len(shared),
            "rows": {first: sum(t in shared for t in lists[first]), second: sum(t in shared for t in lists[second])},
            "count_normalized": len(normalized),
            "examples": sorted(shared)[:examples],
        }
    return result
