"""Build the dataset folder: load -> embed -> balance train -> leakage guard -> parquet + card -> move into place.

    >>> from emo_hf.data.builder import build_dataset
    >>> summary = build_dataset("../shared/goemotions", "runs/data")          # 15 default labels, ISMOTE
    >>> from datasets import load_dataset
    >>> load_dataset("runs/data", "balanced")["train"].features["emotions"].feature.names[:2]
    ['fear', 'sadness']

Folder layout:

    OUT/
      README.md                     dataset card; YAML `configs:` maps configs -> parquet files
      build_info.json               labels, encoder, balance settings, seed, counts, duplicates, timings
      label_counts.png              train positives per label, before / after balancing
      data/raw/{train,validation,test}-<fingerprint>.parquet        id, text, labels, emotions
      data/balanced/{train,validation,test}-<fingerprint>.parquet   + embedding, is_synthetic, seed_id, neighbor_id
                                                                    (not written with raw_only / --raw-only)

Everything is written to a temporary folder next to OUT and moved into place at the end, so a failed build leaves
OUT as it was. OUT is checked before any work, the loaded splits are checked before embedding (`checks`), a killed
build's temporary folders are removed by the next build into the same OUT (`staging`), and the embedding cache grows
in shards, so a rerun only embeds what a killed build had not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .balancing import METHODS, balance as balance_rows
from .card import data_file, write_dataset_card
from .checks import check_splits
from .embedding import DEFAULT_ENCODER, embed_texts, resolve_backend
from .leakage import check_no_leakage, cross_split_duplicate_texts
from .loading import (
    GOEMOTIONS_FILES, GOEMOTIONS_HUB_ID, SPLITS, column_values, label_matrix, label_names, load_goemotions, load_user_data,
)
from .staging import check_out, clean_stale, make_temporary, move_into_place

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict, Features

logger = logging.getLogger(__name__)

# Defaults for GoEmotions with the 15 default labels (train positives: fear 596 ... admiration 4,130, median 1,452).
DEFAULT_TARGET_PER_LABEL = 1500
DEFAULT_KEEP_NO_EMOTION = 0.5
BUILD_INFO_FILE = "build_info.json"
SYNTHETIC_ID_PREFIX = "synthetic-"


def balanced_features(labels: Sequence[str], dim: int) -> Features:
    """Features of the `balanced` config: the raw columns plus embedding and provenance."""
    from datasets import Features, List, Value

    from .loading import emotion_features

    features = dict(emotion_features(labels))
    features.update(
        {
            "embedding": List(Value("float32"), length=dim),
            "is_synthetic": Value("bool"),
            "seed_id": Value("string"),
            "neighbor_id": Value("string"),
        }
    )
    return Features(features)


def _balanced_table(
    ids: list, texts: list, labels: np.ndarray, embeddings: np.ndarray, is_synthetic: np.ndarray,
    seed_ids: list, neighbor_ids: list, features: Features,
) -> Dataset:
    """Assemble a balanced split with pyarrow directly: [n, dim] embeddings never go through Python lists."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets.table import InMemoryTable

    n, n_labels = labels.shape
    dim = embeddings.shape[1]
    emotions = [np.flatnonzero(row).tolist() for row in labels > 0]
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.string()),
            "labels": pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1), pa.float32()), n_labels),
            "emotions": pa.array(emotions, pa.list_(pa.int64())),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), dim),
            "is_synthetic": pa.array(is_synthetic, pa.bool_()),
            "seed_id": pa.array(seed_ids, pa.string()),
            "neighbor_id": pa.array(neighbor_ids, pa.string()),
        }
    )
    assert n == table.num_rows
    return Dataset(InMemoryTable(table.cast(features.arrow_schema)), info=DatasetInfo(features=features))


def _load_source(
    source: Any, labels: Sequence[str] | str | None, seed: int, user_data: dict[str, Any] | None = None
) -> tuple[DatasetDict, str, str]:
    """-> (DatasetDict, source kind, description). `source`: GoEmotions folder, Hub id, user file or DatasetDict."""
    from datasets import DatasetDict

    if isinstance(source, DatasetDict):
        return source, "datasetdict", "a DatasetDict given in Python"
    path = Path(str(source)).expanduser()
    if path.is_dir():
        if any((path / name).exists() for name in GOEMOTIONS_FILES):
            return load_goemotions(path, labels), "goemotions", f"the GoEmotions TSV files in `{path.name}/`"
        raise FileNotFoundError(
            f"{path} is a folder without GoEmotions files ({', '.join(GOEMOTIONS_FILES)}, labels.txt); pass that folder, "
            f"a CSV/JSONL/parquet file, or the Hub id {GOEMOTIONS_HUB_ID!r}."
        )
    if path.is_file():
        return load_user_data(path, labels=labels, seed=seed, **(user_data or {})), "user", f"the file `{path.name}`"
    if str(source) == GOEMOTIONS_HUB_ID or ("/" in str(source) and not str(source).startswith((".", "/", "~"))):
        return load_goemotions(str(source), labels), "goemotions", f"the Hub dataset `{source}` (config simplified)"
    raise FileNotFoundError(
        f"Source {str(source)!r} not found: pass the GoEmotions folder (e.g. --source ../shared/goemotions), "
        f"a CSV/JSONL/parquet file, or the Hub id {GOEMOTIONS_HUB_ID!r}."
    )


def build_dataset(
    source: Any,
    out: str | Path,
    labels: Sequence[str] | str | None = None,
    balance: str = "ismote",
    target_per_label: int = DEFAULT_TARGET_PER_LABEL,
    keep_no_emotion: float = DEFAULT_KEEP_NO_EMOTION,
    encoder: str = DEFAULT_ENCODER,
    seed: int = 42,
    push_to_hub: str | None = None,
    private: bool = True,
    k_neighbors: int = 5,
    expansion: float = 0.5,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    command: str | None = None,
    user_data: dict[str, Any] | None = None,
    raw_only: bool = False,
) -> dict[str, Any]:
    """Build the `raw` + `balanced` dataset folder at `out` and return the summary (also saved as build_info.json).

    `raw_only=True` (`--raw-only`) writes the `raw` config alone: no sentence embeddings and no balancing, which is all
    text-mode training needs (every decoder preset, and `minilm`); the embedding of every text is most of a build's
    time on a CPU (GoEmotions, 2-core Zen 5 VM, 2026-12-02: embedding 126.8 of 130.6 s with balance='none'; raw-only
    3.4 s). Embedding-mode training and the ablation need the `balanced` config: loading it from such a folder names
    the fix.

    `source`: a GoEmotions TSV folder, the Hub id `google-research-datasets/go_emotions`, a CSV/JSONL/parquet file
    (see `load_user_data`; splits are made when it has none) or a `DatasetDict` from `load_user_data(...)`.
    `balance`: ismote | smote | random | none. `push_to_hub`: a dataset repo id to upload the finished folder to.
    `user_data`: extra arguments for `load_user_data` when `source` is a file (text_column, label_column,
    split_column, id_column).

        >>> build_dataset("mine.csv", "runs/mine", labels=["joy", "anger"], user_data={"label_column": "emotions"})
    """
    if balance not in METHODS:
        raise ValueError(f"--balance {balance!r} is not one of {', '.join(METHODS)}; e.g. --balance ismote.")
    timings: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    out = Path(out).expanduser().absolute()
    check_out(out)  # before any work: a bad --out fails now, not after minutes of embedding
    clean_stale(out)
    dataset, source_kind, source_description = _load_source(source, labels, seed, user_data)
    missing = [s for s in SPLITS if s not in dataset]
    if missing:
        raise ValueError(f"The source has no {missing} split(s); it needs train, validation and test.")
    names = label_names(dataset)
    check_no_leakage({split: dataset[split] for split in SPLITS})
    warnings = check_splits({split: dataset[split] for split in SPLITS}, names, balance, target_per_label, k_neighbors,
                            source=source_description)
    texts = {split: column_values(dataset[split], "text") for split in SPLITS}
    duplicates = cross_split_duplicate_texts(texts)
    lap("load")
    configs = {"raw": dataset}
    if raw_only:
        info = _build_info(source, source_kind, source_description, names, dataset, None, None, duplicates, warnings,
                           command or _python_call(source, out, labels, balance, target_per_label, keep_no_emotion,
                                                   encoder, seed, raw_only=True), seed)
        return _write(out, configs, info, timings, start, lap, push_to_hub, private)

    # Embed every split once (validation/test embeddings ship in the balanced config); the cache makes rebuilds cheap.
    everything = [t for split in SPLITS for t in texts[split]]
    backend = resolve_backend()  # onnx on a CPU (same vectors up to float rounding, faster), torch on a GPU
    vectors = embed_texts(everything, encoder=encoder, cache_dir=cache_dir, show_progress=show_progress,
                          backend=backend)  # [N, dim]
    offsets = np.cumsum([0] + [len(texts[s]) for s in SPLITS])
    embeddings = {split: vectors[offsets[i]: offsets[i + 1]] for i, split in enumerate(SPLITS)}
    dim = int(vectors.shape[1])
    lap("embed")

    train = dataset["train"]
    train_labels = label_matrix(train)  # [n_train, n_labels]
    result = balance_rows(
        embeddings["train"], train_labels, method=balance, target_per_label=target_per_label,
        keep_no_emotion=keep_no_emotion, k_neighbors=k_neighbors, expansion=expansion, seed=seed,
        show_progress=show_progress, label_names=names,
    )
    lap("balance")

    features = balanced_features(names, dim)
    train_ids, train_texts = column_values(train, "id"), texts["train"]
    n_real = int((~result.is_synthetic).sum())
    ids, row_texts, seed_ids, neighbor_ids = [], [], [], []
    for row in range(len(result.is_synthetic)):
        if row < n_real:
            source_row = int(result.source_index[row])
            ids.append(train_ids[source_row])
            row_texts.append(train_texts[source_row])
            seed_ids.append(None)
            neighbor_ids.append(None)
        else:
            seed_row, neighbor_row = int(result.seed_index[row]), int(result.neighbor_index[row])
            ids.append(f"{SYNTHETIC_ID_PREFIX}{names[result.synthetic_label[row]]}-{row - n_real:06d}")
            # a `random` duplicate is a real text; interpolated points have no text
            row_texts.append(train_texts[seed_row] if neighbor_row < 0 else None)
            seed_ids.append(train_ids[seed_row])
            neighbor_ids.append(train_ids[neighbor_row] if neighbor_row >= 0 else None)
    balanced = {
        "train": _balanced_table(ids, row_texts, result.labels, result.embeddings, result.is_synthetic,
                                 seed_ids, neighbor_ids, features)
    }
    for split in ("validation", "test"):
        split_labels = label_matrix(dataset[split])
        n = len(split_labels)
        balanced[split] = _balanced_table(
            column_values(dataset[split], "id"), texts[split], split_labels, embeddings[split], np.zeros(n, bool),
            [None] * n, [None] * n, features,
        )
    # The guard: refuse to write if ids collide across splits or a synthetic row comes from outside train.
    check_no_leakage(balanced)
    lap("assemble")

    configs["balanced"] = balanced
    info = _build_info(source, source_kind, source_description, names, dataset, balanced, result, duplicates, warnings,
                       command or _python_call(source, out, labels, balance, target_per_label, keep_no_emotion,
                                               encoder, seed), seed, encoder=encoder, backend=backend, dim=dim)
    return _write(out, configs, info, timings, start, lap, push_to_hub, private)


def _build_info(source, source_kind, source_description, names, dataset, balanced, result, duplicates, warnings,
                command, seed, *, encoder=None, backend=None, dim=None) -> dict[str, Any]:
    """build_info.json's content; `balanced` / `result` None for a raw-only build (no encoder, no balancing)."""
    count = lambda matrix: {name: int(v) for name, v in zip(names, (np.asarray(matrix) > 0).sum(axis=0))}  # noqa: E731
    rows = {"raw": {split: dataset[split].num_rows for split in SPLITS}}
    if balanced is not None:
        rows["balanced"] = {split: balanced[split].num_rows for split in SPLITS}
    before = count(label_matrix(dataset["train"])) if result is None else \
        {n: int(v) for n, v in zip(names, result.counts_before)}
    return {
        "source": str(source) if source_kind != "datasetdict" else None,
        "source_kind": source_kind,
        "source_description": source_description,
        "labels": names,
        "encoder": encoder,
        "embedding_backend": backend,
        "embedding_dim": dim,
        "balance": None if result is None else result.settings,
        "seed": seed,
        "rows": rows,
        "synthetic_rows": 0 if result is None else int(result.is_synthetic.sum()),
        "no_emotion": None if result is None else {"before": result.no_emotion_before, "after": result.no_emotion_after},
        "counts": {
            "train_before": before,
            "train_after": before if result is None else {n: int(v) for n, v in zip(names, result.counts_after)},
            "validation": count(label_matrix(dataset["validation"])),
            "test": count(label_matrix(dataset["test"])),
        },
        "duplicates": duplicates,
        "warnings": warnings,
        "command": command,
    }


def _write(out: Path, configs: dict, info: dict[str, Any], timings: dict[str, float], start: float, lap, push_to_hub,
           private: bool) -> dict[str, Any]:
    """Write every config's parquet files, the card and build_info.json into a temporary folder, move it into place,
    push if asked; returns `info` with `out` (and `pushed_to`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = make_temporary(out)
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one "Creating parquet" bar per file is noise next to the summary
    try:
        for config, splits in configs.items():
            for split in SPLITS:
                target = temporary / data_file(config, split)
                target.parent.mkdir(parents=True, exist_ok=True)
                splits[split].to_parquet(str(target))
        # File names carry a hash of every parquet byte (see card.data_file): deterministic, and new per content.
        digest = hashlib.sha256()
        for config in configs:
            for split in SPLITS:
                digest.update((temporary / data_file(config, split)).read_bytes())
        info["fingerprint"] = digest.hexdigest()[:10]
        info["files"] = {config: {split: data_file(config, split, info["fingerprint"]) for split in SPLITS}
                         for config in configs}
        for config in configs:
            for split in SPLITS:
                os.replace(temporary / data_file(config, split), temporary / info["files"][config][split])
        write_dataset_card(temporary, info)
        lap("write")
        info["seconds"] = {**timings, "total": round(time.perf_counter() - start, 2)}
        (temporary / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        move_into_place(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    info["out"] = str(out)

    if push_to_hub:
        from ..hub import upload_folder  # lazy: huggingface_hub upload code only when pushing

        what = "raw only" if info["balance"] is None else f"balance={info['balance']['method']}"
        info["pushed_to"] = upload_folder(
            out, push_to_hub, repo_type="dataset", private=private,
            commit_message=f"emo-hf data build: {len(info['labels'])} labels, {what}, seed={info['seed']}",
        )
    return info


def _python_call(source, out, labels, balance, target, keep, encoder, seed, raw_only: bool = False) -> str:
    label_part = "" if labels is None else f" --labels {labels if isinstance(labels, str) else ','.join(labels)}"
    if raw_only:
        return f"emo-hf data build --source {source} --out {Path(out).name}{label_part} --raw-only --seed {seed}"
    return (
        f"emo-hf data build --source {source} --out {Path(out).name}{label_part} --balance {balance} "
        f"--target-per-label {target} --keep-no-emotion {keep} --encoder {encoder} --seed {seed}"
    )


def format_summary(info: dict[str, Any]) -> str:
    """Human-readable end-of-build summary: rows per split, per-label counts before/after, time taken."""
    lines = [f"Dataset written to {info.get('out')}"]
    for config, rows in info["rows"].items():
        lines.append(f"  {config:9s} " + "  ".join(f"{split} {n:,}" for split, n in rows.items()))
    balance = info["balance"]
    if balance is None:
        lines.append("  raw config only (--raw-only): no embeddings, no balancing; train positives per label:")
        for name in info["labels"]:
            lines.append(f"  {name:16s} {info['counts']['train_before'][name]:7,d}")
    else:
        lines.append(
            f"  balance: {balance['method']}, target {balance['target_per_label']}, keep no-emotion "
            f"{balance['keep_no_emotion']} ({info['no_emotion']['before']:,} -> {info['no_emotion']['after']:,}), "
            f"synthetic rows {info['synthetic_rows']:,}"
        )
        lines.append(f"  {'label':16s} {'before':>7s} {'after':>7s}")
        for name in info["labels"]:
            lines.append(f"  {name:16s} {info['counts']['train_before'][name]:7,d} "
                         f"{info['counts']['train_after'][name]:7,d}")
    duplicates = ", ".join(
        f"{pair} {d['count']} ({d['count_normalized']} case-insensitive)" for pair, d in info["duplicates"].items()
    )
    lines.append(f"  identical texts across source splits (kept): {duplicates}")
    seconds = info.get("seconds", {})
    lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    for warning in info.get("warnings") or []:
        lines.append(f"  warning: {warning}")
    if info.get("pushed_to"):
        lines.append(f"  pushed to {info['pushed_to']}")
    return "\n".join(lines)


def load_built(folder: str | Path, config: str = "raw"):
    """`load_dataset(folder, config)` for a folder this module wrote, reading exactly the parquet files that its
    build_info.json names.

    Loading through the `parquet` builder with explicit files keys `datasets`' cache on those files (path and
    modification time), so a folder edited or rebuilt in place is never answered from an older cached copy.
    """
    import datasets

    folder = Path(folder).expanduser()
    info_path = folder / BUILD_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder} is not a dataset folder written by `emo-hf data build` (no {BUILD_INFO_FILE}). "
                                f"Build it first: emo-hf data build --out {folder}")
    built = json.loads(info_path.read_text(encoding="utf-8"))
    files = built.get("files") or {}
    if config not in files:
        raw_only = sorted(files) == ["raw"]
        why = " (built with --raw-only: no embeddings, no balancing)" if raw_only else ""
        raise ValueError(f"{folder} has no {config!r} config (it has {sorted(files)}){why}; rebuild it"
                         f"{' without --raw-only' if raw_only else ''}: emo-hf data build --source "
                         f"{built.get('source') or 'SOURCE'} --out {folder}")
    missing = [name for name in files[config].values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}, named in its {BUILD_INFO_FILE}; rebuild it: emo-hf data build --out {folder}")
    import pyarrow.parquet as pq

    # Checked here, with the file named, before `datasets` fails on them with a generic generation error.
    columns = {split: pq.read_schema(folder / name).names for split, name in files[config].items()}
    expected = columns.get("train") or next(iter(columns.values()))
    for split, name in files[config].items():
        lacking = [c for c in expected if c not in columns[split]]
        if lacking:
            raise ValueError(f"The '{split}' split of {folder} ({config}) lacks column(s) {lacking} in {name}; it has "
                             f"{columns[split]}. Rebuild it: emo-hf data build --out {folder}")
        if pq.read_metadata(folder / name).num_rows == 0:
            raise ValueError(f"The '{split}' split of {folder} ({config}) is empty ({name} has no rows): nothing to "
                             f"train, select or evaluate on. Rebuild it from data with rows in every split.")
    return datasets.load_dataset("parquet", data_files={split: str(folder / name) for split, name in files[config].items()})
