"""Load GoEmotions (local TSV folder or the Hub) or the user's own data into one `DatasetDict` shape.

    >>> from emo_hf.data.loading import load_goemotions
    >>> ds = load_goemotions("../shared/goemotions")            # or "google-research-datasets/go_emotions"
    >>> ds["train"].features["emotions"].feature.names[:3]
    ['fear', 'sadness', 'disgust']

Every split has the columns
- `id` (string),
- `text` (string),
- `labels`: multi-hot float32, one value per selected label, in label order (what a BCE / focal loss eats),
- `emotions`: `List(ClassLabel(names=labels))`, the indices of the positive labels, so the label names travel with
  the features through parquet, `load_dataset` and the Hub.
A row with none of the selected labels is a no-emotion row: `labels` all zeros, `emotions` empty.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import logging

import numpy as np

from ..labels import GOEMOTIONS_LABELS, resolve_labels
from .readers import decode, read_delimited, read_table

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # datasets is heavy: imported inside the functions
    from datasets import Dataset, DatasetDict, Features

GOEMOTIONS_HUB_ID = "google-research-datasets/go_emotions"
GOEMOTIONS_HUB_CONFIG = "simplified"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
# official file name -> split name
GOEMOTIONS_FILES: dict[str, str] = {"train.tsv": "train", "dev.tsv": "validation", "test.tsv": "test"}
# rows of the official files (the shared README; tests/test_data_loading.py checks them on the real folder)
OFFICIAL_ROWS: dict[str, int] = {"train.tsv": 43410, "dev.tsv": 5426, "test.tsv": 5427}
SPLIT_ALIASES: dict[str, str] = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                                 "dev": "validation", "test": "test"}


def emotion_features(labels: Sequence[str]) -> Features:
    """The `id`, `text`, `labels`, `emotions` features for a label set (label names live in `emotions`)."""
    from datasets import ClassLabel, Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "labels": List(Value("float32"), length=len(labels)),
            "emotions": List(ClassLabel(names=list(labels))),
        }
    )


def label_names(dataset: Dataset | DatasetDict) -> list[str]:
    """The label names a dataset built by this module carries in its `emotions` feature."""
    features = dataset[next(iter(dataset))].features if hasattr(dataset, "keys") else dataset.features
    return list(features["emotions"].feature.names)


def column_values(dataset: Dataset, name: str) -> list:
    """One column as a Python list, read through Arrow (datasets 4's `ds[name]` is a lazy Column that formats row by
    row: ~40x slower on GoEmotions-sized splits)."""
    return dataset.with_format("arrow")[:][name].to_pylist()


def label_matrix(dataset: Dataset, column: str = "labels") -> np.ndarray:
    """The multi-hot `labels` column as a float32 array [n_rows, n_labels], without Python lists."""
    import pyarrow as pa

    values = dataset.with_format("arrow")[:][column].combine_chunks()
    if isinstance(values.type, pa.FixedSizeListType):
        width = values.type.list_size
        return np.asarray(values.flatten(), dtype=np.float32).reshape(len(values), width)
    return np.asarray(values.to_pylist(), dtype=np.float32)


def _multi_hot(positives: list[list[int]], n_labels: int) -> np.ndarray:
    """[n, n_labels] float32 multi-hot matrix from per-row lists of label indices."""
    matrix = np.zeros((len(positives), n_labels), dtype=np.float32)
    rows = np.repeat(np.arange(len(positives)), [len(p) for p in positives])
    cols = np.fromiter((c for p in positives for c in p), dtype=np.int64, count=len(rows))
    matrix[rows, cols] = 1.0
    return matrix


def from_id_rows(
    rows: Dataset, source_names: Sequence[str], labels: Sequence[str] | None = None, where: str = "dataset"
) -> Dataset:
    """Convert rows shaped like the Hub's go_emotions `simplified` (`text`, `labels` = list of ids into
    `source_names`, `id`) to this package's features. Both the TSV folder and the Hub path go through here.

        >>> from datasets import Dataset
        >>> rows = Dataset.from_dict({"text": ["wow", "meh"], "labels": [[26, 0], [27]], "id": ["a", "b"]})
        >>> from_id_rows(rows, GOEMOTIONS_LABELS, ["surprise", "joy"])["labels"]
        [[1.0, 0.0], [0.0, 0.0]]
    """
    from datasets import Dataset

    labels = resolve_labels(labels, valid=list(source_names))
    for column in ("text", "labels", "id"):
        if column not in rows.column_names:
            raise ValueError(f"{where}: missing column {column!r}; columns are {rows.column_names}.")
    position = {name: i for i, name in enumerate(labels)}
    # source id -> position in `labels`, or -1 for a source label outside the selection
    to_selected = np.array([position.get(name, -1) for name in source_names], dtype=np.int64)
    texts, ids, id_lists = (column_values(rows, c) for c in ("text", "id", "labels"))
    positives: list[list[int]] = []
    for row, (text, label_ids) in enumerate(zip(texts, id_lists)):
        if text is None or not str(text).strip():
            raise ValueError(f"{where}: row {row} (id {ids[row]!r}) has an empty text; remove the row or fill it in.")
        bad = [i for i in label_ids if not 0 <= int(i) < len(source_names)]
        if bad:
            raise ValueError(
                f"{where}: row {row} (id {ids[row]!r}) has unknown label id(s) {bad}; valid ids are 0..{len(source_names) - 1} "
                f"({', '.join(f'{i}={n}' for i, n in enumerate(source_names))})."
            )
        selected = sorted({int(to_selected[int(i)]) for i in label_ids} - {-1})
        positives.append(selected)
    multi_hot = _multi_hot(positives, len(labels))
    return Dataset.from_dict(
        {"id": [str(i) for i in ids], "text": list(texts), "labels": multi_hot.tolist(), "emotions": positives},
        features=emotion_features(labels),
    )


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, BOM dropped, or UTF-16 with a BOM); undecodable bytes name the file, line and offset."""
    return decode(path)


def _read_goemotions_tsv(path: Path, n_source_labels: int) -> dict[str, list]:
    """Parse one official TSV: `text<TAB>comma-separated label ids<TAB>comment id`, CSV quoting, no header.
    `read_delimited` refuses merged lines (a stray quote) and checks records against physical lines."""
    _, records = read_delimited(path, delimiter="\t", n_fields=3)
    if not records:
        raise ValueError(
            f"{path} has no rows: every split needs rows (the official GoEmotions {path.name} has "
            f"{OFFICIAL_ROWS.get(path.name, 'thousands of')} rows). Restore the file, e.g. from the GoEmotions release."
        )
    texts, id_lists, ids = [], [], []
    for line, (body, label_field, comment_id) in records:
        if not body.strip():
            raise ValueError(f"{path}: line {line} (id {comment_id!r}) has an empty text; remove the line or fill it in.")
        try:
            label_ids = [int(value) for value in label_field.split(",")]
        except ValueError:
            raise ValueError(
                f"{path}: line {line} has label field {label_field!r}; expected comma-separated integer ids "
                f"0..{n_source_labels - 1}, e.g. '3,27'."
            ) from None
        bad = [i for i in label_ids if not 0 <= i < n_source_labels]
        if bad:
            raise ValueError(
                f"{path}: line {line} has unknown label id(s) {bad}; valid ids are 0..{n_source_labels - 1} (see labels.txt)."
            )
        texts.append(body)
        id_lists.append(label_ids)
        ids.append(comment_id)
    return {"text": texts, "labels": id_lists, "id": ids}


def load_goemotions(source: str | Path = GOEMOTIONS_HUB_ID, labels: Sequence[str] | str | None = None) -> DatasetDict:
    """GoEmotions as a `DatasetDict` with splits train / validation / test (see the module docstring for columns).

    `source` is a folder holding the official `train.tsv`, `dev.tsv`, `test.tsv` and `labels.txt`, or the Hub id
    `google-research-datasets/go_emotions` (config `simplified`). `labels`: the label set (default: the 15 defaults,
    "goemotions" for all 28, or a list of names).

        >>> ds = load_goemotions("../shared/goemotions", labels=["joy", "anger"])
        >>> ds["train"].num_rows
        43410
    """
    from datasets import Dataset, DatasetDict

    folder = Path(source).expanduser()
    if folder.is_dir():
        labels_file = folder / "labels.txt"
        if not labels_file.is_file():
            raise FileNotFoundError(f"{labels_file} is missing: a GoEmotions folder holds train.tsv, dev.tsv, test.tsv and labels.txt.")
        source_names = [line.strip() for line in _read_text(labels_file).splitlines() if line.strip()]
        splits = {}
        for file_name, split in GOEMOTIONS_FILES.items():
            path = folder / file_name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: a GoEmotions folder holds {', '.join(GOEMOTIONS_FILES)} and labels.txt."
                )
            rows = Dataset.from_dict(_read_goemotions_tsv(path, len(source_names)))
            splits[split] = from_id_rows(rows, source_names, labels, where=str(path))
        return DatasetDict(splits)
    if str(source) != GOEMOTIONS_HUB_ID and (Path(source).is_absolute() or str(source).startswith(".") or Path(source).exists()):
        raise FileNotFoundError(
            f"GoEmotions source {str(source)!r} is not a folder. Pass the folder with the official TSV files, "
            f"e.g. --source ../shared/goemotions, or the Hub id {GOEMOTIONS_HUB_ID!r}."
        )
    # The Hub path (needs network or a populated HF cache): same rows, converted by the same function.
    from datasets import load_dataset

    try:
        hub = load_dataset(str(source), GOEMOTIONS_HUB_CONFIG)
    except Exception as error:  # network, auth, missing repo: one actionable message
        raise RuntimeError(
            f"Could not load {str(source)!r} (config {GOEMOTIONS_HUB_CONFIG!r}) from the Hugging Face Hub: "
            f"{type(error).__name__}: {error}. Without Hub access pass the folder with the official TSV files, e.g. "
            f"--source ../shared/goemotions, or set EMO_HF_GOEMOTIONS to it."
        ) from error
    source_names = list(hub["train"].features["labels"].feature.names) if hasattr(
        hub["train"].features["labels"], "feature") else list(GOEMOTIONS_LABELS)
    return DatasetDict({split: from_id_rows(hub[split], source_names, labels, where=f"{source}[{split}]") for split in SPLITS})


# ---------------------------------------------------------------------------------------------------------------------
# The user's own data
# ---------------------------------------------------------------------------------------------------------------------


def _parse_name_list(value, place: str, path: Path) -> list[str]:
    """A cell of the label-name-list column: a list, a JSON list string, or 'a,b' / 'a;b'."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value]
    value = str(value).strip()
    if value.startswith("["):
        try:
            names = json.loads(value)
        except json.JSONDecodeError:
            names = None
        if not isinstance(names, list):
            raise ValueError(f"{path}: {place}: label list {value!r} is not a valid JSON list; write e.g. [\"joy\", \"anger\"].")
        return [str(v).strip() for v in names]
    return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]


def _refuse_unknown_names(name_lists: list[list[str]], chosen: list[str], place, path: Path, drop: bool) -> None:
    """Label names in the data outside the chosen set (a typo `angr`) are refused, with counts and the first places,
    unless `drop` (then logged): silently dropping them would turn those rows into no-emotion rows."""
    allowed = set(chosen)
    unknown: dict[str, list[int]] = {}
    for row, names in enumerate(name_lists):
        for name in names:
            if name not in allowed:
                unknown.setdefault(name, []).append(row)
    if not unknown:
        return
    n_rows = len({row for rows in unknown.values() for row in rows})
    ranked = sorted(unknown.items(), key=lambda item: (-len(item[1]), item[0]))
    examples = ", ".join(f"{name!r} x{len(rows)} (first at {place(rows[0])})" for name, rows in ranked[:5])
    more = f" and {len(ranked) - 5} more name(s)" if len(ranked) > 5 else ""
    message = f"{path}: {n_rows} row(s) carry label name(s) outside the label set {chosen}: {examples}{more}"
    if drop:
        logger.warning("%s; dropped as asked (--drop-unknown-labels)", message)
        return
    raise ValueError(
        f"{message}. Fix the typos, add the names to --labels, or pass --drop-unknown-labels "
        f"(drop_unknown_labels=True) to ignore them (a row left with no label becomes a no-emotion row)."
    )


def _checked(chosen: list[str], valid: list[str], path: Path) -> list[str]:
    """resolve_labels returns named sets ("default", "goemotions") unchecked: check them against the file's labels."""
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise ValueError(f"{path}: label(s) {unknown} do not occur in the file; valid names are: {', '.join(valid)}.")
    return chosen


def _flag(value, place: str, column: str, path: Path) -> float:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes"):
        return 1.0
    if text in ("0", "0.0", "false", "no", "", "nan", "none"):
        return 0.0
    raise ValueError(f"{path}: {place}, column {column!r} holds {value!r}; label columns must be 0 or 1.")


def stratified_split(
    texts: Sequence[str], labels: np.ndarray, seed: int = 42, validation_size: float = 0.1, test_size: float = 0.1
) -> dict[str, np.ndarray]:
    """Seeded train / validation / test row indices, stratified over the labels, identical texts in one split.

    Rows are grouped by text (so a duplicate can't leak across splits); each group is stratified by its rarest
    positive label (scikit-learn's `train_test_split` has no multi-label stratification; the rarest label is what
    needs protecting). Keys with too few groups to stratify fall back to one "rare" key.

        >>> parts = stratified_split(["a", "b", "a", "c"] * 10, np.eye(2, dtype=np.float32)[[0, 1, 0, 1] * 10])
    """
    from sklearn.model_selection import train_test_split

    texts = [str(t) for t in texts]
    unique, group_of_row = np.unique(np.array(texts, dtype=object), return_inverse=True)
    n_groups = len(unique)
    group_labels = np.zeros((n_groups, labels.shape[1]), dtype=np.float32)
    np.maximum.at(group_labels, group_of_row, labels)
    frequency = group_labels.sum(axis=0)
    # key = rarest positive label of the group, or -1 for no-emotion groups
    masked = np.where(group_labels > 0, frequency[None, :], np.inf)
    keys = np.where(group_labels.any(axis=1), masked.argmin(axis=1), -1)

    def split(indices: np.ndarray, fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
        sub_keys = keys[indices].copy()
        values, counts = np.unique(sub_keys, return_counts=True)
        rare = values[counts < 4]
        sub_keys[np.isin(sub_keys, rare)] = -2
        try:
            return train_test_split(indices, test_size=fraction, random_state=split_seed, stratify=sub_keys)
        except ValueError:  # too few rows per key for the requested size: plain seeded split
            return train_test_split(indices, test_size=fraction, random_state=split_seed)

    if n_groups < 3:
        raise ValueError(f"Only {n_groups} distinct text(s): at least 3 are needed to make train/validation/test splits.")
    groups = np.arange(n_groups)
    train_groups, rest = split(groups, validation_size + test_size, seed)
    validation_groups, test_groups = split(rest, test_size / (validation_size + test_size), seed + 1)
    result = {}
    for name, chosen in (("train", train_groups), ("validation", validation_groups), ("test", test_groups)):
        result[name] = np.flatnonzero(np.isin(group_of_row, chosen))
    return result


def load_user_data(
    path: str | Path,
    text_column: str = "text",
    label_column: str | Sequence[str] | None = None,
    labels: Sequence[str] | str | None = None,
    split_column: str | None = None,
    id_column: str | None = None,
    seed: int = 42,
    drop_unknown_labels: bool = False,
) -> DatasetDict:
    """The user's CSV / TSV / JSONL / parquet file as the same `DatasetDict` shape as `load_goemotions`.

    Labels come either from one column holding lists of label names (`label_column="emotions"`; in a CSV write
    `joy,anger` or `["joy", "anger"]`) or from one 0/1 column per label (`label_column=["joy", "anger"]`, or
    `label_column=None` with `labels` naming columns of the file). `labels` selects and orders the label set (default:
    every name found, sorted, for a list column; the given columns for 0/1 columns). `split_column` holds
    train / validation (or dev) / test; without it, seeded stratified splits are made (80/10/10, identical texts kept
    in one split). Ids come from `id_column` (default: an `id` column when there is one, else the row number).
    Label names in a list column that are not in `labels` (a typo `angr`) are refused with their count and first
    lines unless `drop_unknown_labels=True`. Every error names the file and the line (the row for parquet).

        >>> ds = load_user_data("mine.csv", label_column="emotions", labels=["joy", "anger"])
        >>> ds = load_user_data("mine.jsonl", label_column=["joy", "anger"])
    """
    from datasets import Dataset, DatasetDict

    path = Path(path).expanduser()
    frame, lines, lacking = read_table(path)
    columns = list(frame.columns)

    def place(row: int) -> str:
        return f"row {row} (line {lines[row]})" if lines is not None else f"row {row}"

    def need(column: str, role: str) -> None:
        if column not in columns:
            raise ValueError(f"{path}: no {role} column {column!r}; columns are {columns}. Pass e.g. {role}_column={columns[0]!r}.")
        if lacking.get(column):  # a JSONL record without the key: say so instead of reading it as empty
            where = lacking[column]
            raise ValueError(
                f"{path}: line {where[0]} has no {column!r} key ({len(where)} record(s) lack it); give every record the "
                f"key (null or [] for no labels)."
            )

    need(text_column, "text")
    if label_column is None:
        if labels is not None and not isinstance(labels, str) and all(name in columns for name in labels):
            label_column = list(labels)
        elif "labels" in columns:
            label_column = "labels"
        else:
            raise ValueError(
                f"{path}: say where the labels are: label_column='<column of label-name lists>' or "
                f"label_column=[<one 0/1 column per label>]; columns are {columns}."
            )
    if isinstance(label_column, str):
        need(label_column, "label")
        name_lists = [_parse_name_list(v, place(row), path) for row, v in enumerate(frame[label_column].tolist())]
        found = sorted({name for names in name_lists for name in names})
        chosen = _checked(resolve_labels(labels, valid=found), found, path) if labels is not None else found
        if not chosen:
            raise ValueError(f"{path}: column {label_column!r} holds no label names.")
        _refuse_unknown_names(name_lists, chosen, place, path, drop_unknown_labels)
        position = {name: i for i, name in enumerate(chosen)}
        positives = [sorted({position[n] for n in names if n in position}) for names in name_lists]
    else:
        label_columns = list(label_column)
        missing = [c for c in label_columns if c not in columns]
        if missing:
            raise ValueError(f"{path}: label column(s) {missing} not found; columns are {columns}.")
        for column in label_columns:
            need(column, "label")
        chosen = _checked(resolve_labels(labels, valid=label_columns), label_columns, path) if labels is not None else label_columns
        positives = []
        flags = {c: [_flag(v, place(row), c, path) for row, v in enumerate(frame[c].tolist())] for c in chosen}
        for row in range(len(frame)):
            positives.append([i for i, c in enumerate(chosen) if flags[c][row] > 0])
    texts = frame[text_column].tolist()
    for row, text in enumerate(texts):
        if isinstance(text, (list, dict, tuple, np.ndarray)):
            raise ValueError(f"{path}: {place(row)}: {text_column!r} holds a {type(text).__name__}, not a text: {text!r:.80}.")
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            raise ValueError(f"{path}: {place(row)} has an empty {text_column!r}; fill it in or drop the row.")
    texts = [str(t) for t in texts]
    if id_column is None and "id" in columns:
        id_column = "id"
    if id_column is not None:
        need(id_column, "id")
        ids = [str(v) for v in frame[id_column].tolist()]
        seen: dict[str, int] = {}
        for row, value in enumerate(ids):
            if value in seen:
                raise ValueError(f"{path}: id {value!r} appears in {place(seen[value])} and {place(row)}; ids must be unique.")
            seen[value] = row
    else:
        ids = [f"row-{row}" for row in range(len(frame))]
    multi_hot = _multi_hot(positives, len(chosen))
    full = Dataset.from_dict(
        {"id": ids, "text": texts, "labels": multi_hot.tolist(), "emotions": positives}, features=emotion_features(chosen)
    )
    if split_column is not None:
        need(split_column, "split")
        names = [str(v).strip().lower() for v in frame[split_column].tolist()]
        bad = sorted({n for n in names if n not in SPLIT_ALIASES})
        if bad:
            raise ValueError(f"{path}: column {split_column!r} holds {bad}; use train, validation (or dev) and test.")
        canonical = np.array([SPLIT_ALIASES[n] for n in names])
        parts = {split: np.flatnonzero(canonical == split) for split in SPLITS}
        empty = [s for s, idx in parts.items() if len(idx) == 0]
        if empty:
            raise ValueError(f"{path}: column {split_column!r} has no {empty} rows; every split needs rows.")
    else:
        parts = stratified_split(texts, multi_hot, seed=seed)
    return DatasetDict({split: full.select(parts[split]) for split in SPLITS})
