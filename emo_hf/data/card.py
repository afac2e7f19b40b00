"""The dataset card (README.md with YAML `configs:`) and the per-label bar chart of a built dataset folder.

    >>> from emo_hf.data.card import write_dataset_card, plot_label_counts
    >>> plot_label_counts(labels, before, after, "out/label_counts.png")
    >>> write_dataset_card("out", info)          # info: the build_info.json dict

The YAML `configs:` is what makes `load_dataset(folder, "raw")` / `load_dataset(folder, "balanced")` (and the Hub's
viewer) find the parquet files; the label names travel inside the parquet files' features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHART_FILE = "label_counts.png"


def data_file(config: str, split: str, fingerprint: str | None = None) -> str:
    """Path of one config's split inside the dataset folder, e.g. `data/raw/train-1a2b3c4d5e.parquet`.

    The fingerprint (a hash of the build's parquet bytes) is in the file name because `datasets` keys its cache of a
    local folder on the folder's name and the `configs:` file patterns, not on the files' contents: without it, a
    folder rebuilt with other settings (or another build in a folder of the same name) would load the earlier rows
    from the cache.
    """
    return f"data/{config}/{split}-{fingerprint}.parquet" if fingerprint else f"data/{config}/{split}.parquet"


def configs_yaml(splits: dict[str, Sequence[str]], default: str = "raw", fingerprint: str | None = None) -> list[dict[str, Any]]:
    """The `configs:` entries of the card, one per config, mapping splits to parquet files."""
    entries = []
    for config, names in splits.items():
        entry: dict[str, Any] = {
            "config_name": config,
            "data_files": [{"split": split, "path": data_file(config, split, fingerprint)} for split in names],
        }
        if config == default:
            entry["default"] = True
        entries.append(entry)
    return entries


def plot_label_counts(labels: Sequence[str], before: Sequence[int], after: Sequence[int] | None, path: str | Path,
                      target: int | None = None) -> Path:
    """A horizontal grouped bar chart of train positives per label, before and after balancing (`after` None: the
    train rows alone), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    position = np.arange(len(labels))
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5), dpi=100)
    if after is None:
        axis.barh(position, before, height=0.6, label="train rows", color="#8da0cb")
    else:
        axis.barh(position - 0.2, before, height=0.4, label="before (real rows)", color="#8da0cb")
        axis.barh(position + 0.2, after, height=0.4, label="after balancing", color="#fc8d62")
    if target:
        axis.axvline(target, color="black", linestyle="--", linewidth=1, label=f"target {target}")
    axis.set_yticks(position, labels)
    axis.invert_yaxis()
    axis.set_xlabel("positive train rows")
    axis.set_title("Train positives per label")
    axis.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    # No timestamp in the PNG metadata: the same build gives the same bytes.
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
    return path


def card_text(info: dict[str, Any]) -> str:
    """The full README.md (YAML header + body) for a build described by `info` (the build_info.json dict)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    labels = info["labels"]
    rows = info["rows"]
    balance = info["balance"]
    data = DatasetCardData(
        language="en",
        license="cc-by-4.0" if info.get("source_kind") == "goemotions" else None,
        task_categories=["text-classification"],
        task_ids=["multi-label-classification"],
        pretty_name="emo_hf emotion dataset",
        configs=configs_yaml({config: list(splits) for config, splits in rows.items()}, fingerprint=info.get("fingerprint")),
        tags=["emotion", "goemotions", "ismote", "emo_hf"],
    )
    before, after = info["counts"]["train_before"], info["counts"]["train_after"]
    table = "\n".join(
        f"| {name} | {before[name]:,} | {after[name]:,} | {after[name] - before[name]:+,} |" for name in labels
    )
    split_lines = "\n".join(
        f"| {config} | " + " | ".join(f"{rows[config].get(s, 0):,}" for s in ("train", "validation", "test")) + " |"
        for config in rows
    )
    duplicate_lines = "\n".join(
        f"| {pair} | {d['count']} | {d['count_normalized']} | "
        + ", ".join(f"{split}: {n}" for split, n in d["rows"].items())
        + " | "
        + "; ".join(f"`{e}`" for e in d["examples"][:3]).replace("|", "\\|")
        + " |"
        for pair, d in info["duplicates"].items()
    )
    raw_only = balance is None
    settings = "" if raw_only else ", ".join(f"{key}={value}" for key, value in balance.items() if value is not None)
    source_line = info.get("source_description", str(info.get("source")))
    body = f"""
# emo_hf emotion dataset

Multi-label emotion data built by `emo-hf data build` from {source_line}, with {len(labels)} labels:
{", ".join(labels)}.

```python
from datasets import load_dataset
raw = load_dataset(PATH_OR_REPO_ID, "raw")            # id, text, labels (multi-hot float32), emotions (label names)
{"" if raw_only else 'balanced = load_dataset(PATH_OR_REPO_ID, "balanced")  # + embedding, is_synthetic, seed_id, neighbor_id' + chr(10)}names = raw["train"].features["emotions"].feature.names
```

## Configs and splits

| config | train | validation | test |
|---|---|---|---|
{split_lines}

- **raw**: the source split untouched. `labels` is one float per label in the order above; `emotions` lists the
  positive labels as class indices (names in the features). Rows with none of the labels are all zeros.
{_raw_only_lines(labels, before) if raw_only else _balanced_lines(info, settings, table)}
## Identical texts across splits of the source

Counted and reported, not dropped (dropping would change the official split). "exact": distinct texts identical in
both splits; "normalised": equal after lower-casing and collapsing whitespace.

| splits | exact | normalised | rows holding them | examples |
|---|---|---|---|---|
{duplicate_lines}

## Reproduce

```
{info["command"]}
```

Same inputs and seed give byte-identical parquet files. `build_info.json` holds the settings, counts and timings.
"""
    if info.get("source_kind") == "goemotions":
        body += """
## Source and licence

GoEmotions (Demszky et al., "GoEmotions: A Dataset of Fine-Grained Emotions", ACL 2020), CC BY 4.0,
https://github.com/google-research/google-research/tree/master/goemotions .
"""
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _balanced_lines(info: dict[str, Any], settings: str, table: str) -> str:
    balance = info["balance"]
    return f"""- **balanced**: train is balanced ({settings}); validation and test are the natural rows of `raw` with their
  sentence embeddings (`{info["encoder"]}`, {info["embedding_dim"]} dimensions) and never contain synthetic rows.
  Synthetic train rows have `is_synthetic=True`, no text (except `random`, which duplicates real rows with their
  text), a copy of their seed's labels, and `seed_id` / `neighbor_id` naming the real train rows they were made
  from. The build refuses to write if any seed or neighbour is not a train row or an id is in two splits.

## Balancing: train positives per label

No-emotion train rows: {info["no_emotion"]["before"]:,} before, {info["no_emotion"]["after"]:,} after undersampling
(keep fraction {balance["keep_no_emotion"]}). Synthetic rows added: {info["synthetic_rows"]:,}.

| label | before | after | added |
|---|---|---|---|
{table}

![Train positives per label before and after balancing]({CHART_FILE})
"""


def _raw_only_lines(labels: Sequence[str], before: dict[str, int]) -> str:
    table = "\n".join(f"| {name} | {before[name]:,} |" for name in labels)
    return f"""- Built with `--raw-only`: no `balanced` config (no sentence embeddings, no balancing). Embedding-mode training
  and the balancing ablation need it: rebuild without `--raw-only`.

## Train positives per label

| label | train rows |
|---|---|
{table}

![Train positives per label]({CHART_FILE})
"""


def write_dataset_card(folder: str | Path, info: dict[str, Any]) -> Path:
    """Write README.md (and the bar chart it shows) into a dataset folder."""
    folder = Path(folder)
    labels = info["labels"]
    balance = info["balance"] or {"method": "none"}  # None: a raw-only build (its chart shows one bar per label)
    plot_label_counts(
        labels,
        [info["counts"]["train_before"][n] for n in labels],
        None if info["balance"] is None else [info["counts"]["train_after"][n] for n in labels],
        folder / CHART_FILE,
        target=balance.get("target_per_label") if balance.get("method") != "none" else None,
    )
    path = folder / "README.md"
    path.write_text(card_text(info), encoding="utf-8")
    return path
