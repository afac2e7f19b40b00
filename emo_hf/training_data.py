"""What the trainer feeds the model: the built dataset's splits, the train rows chosen from them, tokenization and the
collators that make batches.

    >>> from emo_hf.training_data import load_splits, select_train_rows
    >>> splits, label_names = load_splits("runs/data", input_mode="text")
    >>> train_rows = select_train_rows(splits["train"], settings)     # subset / no-emotion undersampling / oversampling
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .presets import TrainSettings


def load_splits(data_dir: str | os.PathLike, input_mode: str):
    """Load the dataset folder that `emo-hf data build` wrote: config `raw` for text mode, `balanced` for embeddings.

    Returns (DatasetDict, label_names). Raises a clear error for a missing folder, config, column or split.
    """
    from .data.builder import load_built

    config = "raw" if input_mode == "text" else "balanced"
    splits = load_built(data_dir, config)
    for split in ("train", "validation"):
        if split not in splits:
            raise ValueError(f"{data_dir} ({config}) has no '{split}' split; it has {list(splits)}.")
        if len(splits[split]) == 0:
            raise ValueError(f"The '{split}' split of {data_dir} ({config}) is empty: nothing to train or select on.")
    needed = ["labels", "text"] if input_mode == "text" else ["labels", "embedding"]
    for split_name, split in splits.items():
        missing = [column for column in needed if column not in split.column_names]
        if missing:
            raise ValueError(
                f"The '{split_name}' split of {data_dir} ({config}) lacks column(s) {missing}; it has "
                f"{split.column_names}. Rebuild it with `emo-hf data build`."
            )
    return splits, label_names_of(splits["train"])


def label_names_of(split) -> list[str]:
    """Label names kept in the features (`emotions` is a list of ClassLabel) of a built split."""
    feature = split.features.get("emotions")
    names = getattr(getattr(feature, "feature", None), "names", None)
    if not names:
        raise ValueError("The dataset has no label names in its features (column 'emotions'); rebuild it with emo-hf data build.")
    return list(names)


def select_train_rows(train, settings: TrainSettings):
    """Text-mode train-split options: seeded subset, no-emotion undersampling, random oversampling of rare labels."""
    rng = np.random.default_rng(settings.seed)
    labels = np.asarray(train["labels"], dtype=np.float32)  # [n, L]
    indices = np.arange(len(train))
    if settings.train_subset is not None and settings.train_subset < len(indices):
        indices = np.sort(rng.choice(indices, size=settings.train_subset, replace=False))
    if settings.keep_no_emotion < 1.0:
        empty = indices[labels[indices].sum(axis=1) == 0]
        dropped = rng.choice(empty, size=len(empty) - int(round(len(empty) * settings.keep_no_emotion)), replace=False)
        indices = np.setdiff1d(indices, dropped)
    if settings.train_balance == "random":
        extra = []
        for label in range(labels.shape[1]):
            positives = indices[labels[indices, label] > 0]
            short = settings.target_per_label - len(positives)
            if short > 0 and len(positives) > 0:
                extra.append(rng.choice(positives, size=short, replace=True))
        if extra:
            indices = np.concatenate([indices, *extra])
        rng.shuffle(indices)
    return train.select(indices.tolist())


# Bump when `encode` below changes what it writes: the map's fingerprint (its cache key) must change with it.
TOKENIZE_RECIPE = "tokenize_splits/1"
# A fixed text run through `format_texts`: its output carries the prompt (config.prompt, the chat template, BOS).
PROMPT_PROBE = "\x00emo_hf prompt probe\x00"


def tokenize_splits(splits, tokenizer, max_length: int, format_texts=None) -> dict:
    """Each split tokenized (text -> input_ids, attention_mask; the config's prompt applied by `format_texts`), labels kept."""
    from datasets.fingerprint import Hasher

    def encode(batch):
        texts = format_texts(batch["text"]) if format_texts is not None else batch["text"]  # the config's prompt
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    # datasets fingerprints a map by pickling its function, and `encode` holds the model (format_texts is its bound
    # method): every weight was copied to the host and hashed, 13.4 s of a 130 s SmolLM2-135M run on the 2-core CPU
    # (cProfile, 2026-12-07), GPU-resident weights included. What `encode` writes depends only on the split, the
    # tokenizer, max_length and the prompt, so the fingerprint is made from those (the same in every DDP rank, so
    # rank 1 still reads the map files rank 0 wrote).
    probe = format_texts([PROMPT_PROBE]) if format_texts is not None else [PROMPT_PROBE]
    recipe = Hasher.hash([TOKENIZE_RECIPE, Hasher.hash(tokenizer), max_length, probe])
    keep = {"input_ids", "attention_mask", "labels"}
    return {
        name: split.map(encode, batched=True, remove_columns=[c for c in split.column_names if c not in keep | {"text"}] + ["text"],
                        desc=f"Tokenizing {name}", new_fingerprint=Hasher.hash([split._fingerprint, recipe]))
        for name, split in splits.items()
    }


def embedding_columns(splits) -> dict:
    """Each split reduced to `sentence_embeddings` [dim] and `labels` (embedding mode)."""
    keep = {"embedding", "labels"}
    out = {}
    for name, split in splits.items():
        split = split.remove_columns([c for c in split.column_names if c not in keep])
        out[name] = split.rename_column("embedding", "sentence_embeddings")
    return out


class EmbeddingCollator:
    """Stacks sentence vectors [batch, dim] and multi-hot labels [batch, L]."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {
            "sentence_embeddings": torch.tensor(np.asarray([f["sentence_embeddings"] for f in features], dtype=np.float32)),
            "labels": torch.tensor(np.asarray([f["labels"] for f in features], dtype=np.float32)),
        }


class TextCollator:
    """Dynamic padding to the longest text of the batch; labels stay float multi-hot."""

    def __init__(self, tokenizer, shared_prefix: Sequence[int] = ()):
        from transformers import DataCollatorWithPadding

        import torch

        # multiples of 8 suit GPU tensor cores; on a CPU they are only extra tokens (~15% more on GoEmotions batches,
        # docs/benchmarks.md "CPU main job"), and padded positions are masked, so the results are the same
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None)
        self.shared_prefix = list(shared_prefix)  # emo_hf.shared_prefix: marked per batch when every row has it

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from .modeling import fill_empty_rows, filler_token_id  # the rule prediction applies too

        labels = torch.tensor(np.asarray([f.pop("labels") for f in features], dtype=np.float32))
        batch = self.pad(fill_empty_rows(features, filler_token_id(self.pad.tokenizer)))  # empty rows break attention
        batch["labels"] = labels
        if self.shared_prefix and self.pad.tokenizer.padding_side == "right":
            from .shared_prefix import mark_shared_prefix

            batch = mark_shared_prefix(batch, self.shared_prefix)
        return batch
