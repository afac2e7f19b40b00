"""Token-budget batches: as many rows per batch as fit a padded-token budget, padded to a few bucketed lengths.

    from emo_hf.batching import TokenBudgetBatchSampler, bucket_lengths
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=4096, buckets=bucket_lengths(128), seed=42)
    sampler.set_epoch(0)
    for rows in sampler: ...          # lists of row indices; len(rows) * bucket(longest row) <= 4096

or `emo-hf train --max-tokens-per-batch 4096 ...` (the Trainer then uses this sampler and `BucketPaddingCollator`).

Why: GoEmotions texts are short (mean ~18 tokens) and of very different lengths, so a fixed row count either wastes
padding or leaves the GPU idle between tiny kernels. A budget of padded tokens fills each step with the same work
whatever the lengths; padding to a handful of bucket lengths keeps the number of distinct shapes small, which is what
`torch.compile` and CUDA graphs need (one graph per shape).

How batches are made (per epoch; deterministic for a seed and epoch, different across epochs):
- every row goes to the smallest bucket >= its token length (fixed for the run);
- bucket b holds k_b = ceil(n_b / rows_per_batch(b)) batches, rows_per_batch(b) = max_tokens // b (capped by
  `max_rows`); its rows are shuffled (seed, epoch) and split evenly into the k_b batches;
- the batches of all buckets are shuffled together (seed, epoch).
Grouping by bucket is length grouping with the whole split as one mega-chunk. The batch count per epoch depends only on
the lengths, never on the shuffle, which the Trainer needs: it reads `len(dataloader)` once and then takes exactly that
many batches each epoch (a sampler whose count varied by epoch would silently skip rows or end epochs early).
transformers' own `LengthGroupedSampler` and `BatchRebalanceSampler` keep a fixed row count per step and pad to the
batch's longest row, so neither gives a token budget or bucketed shapes: hence this module.

Several ranks (DDP): `num_replicas`/`rank` split the same global sequence of batches, rank r taking batches r, r+R, ...;
the batch count is raised to a multiple of R by splitting batches (each still under budget), so every row is used
exactly once across ranks and every rank takes the same number of steps.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# Bucket lengths are multiples of 8 (tensor-core friendly): every 8 up to 64, where short texts crowd (GoEmotions:
# mean 18 tokens, p99 37), then growing by 1.25x: 12 shapes up to 128. Padding of GoEmotions' length mix (Tekken
# token counts, bench/gpu_train.py): 16% of the padded tokens with these buckets, 22% with 16/24/32/48/64.
_BUCKET_STEPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
                 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096)


def bucket_lengths(max_length: int, smallest: int = 8) -> list[int]:
    """The padded lengths batches are rounded up to: 8, 16, ..., 64, 80, 96, 112, 128, 160, ... up to `max_length`
    (always last).

        >>> bucket_lengths(128)
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128]
        >>> bucket_lengths(50)
        [8, 16, 24, 32, 40, 48, 50]
    """
    if max_length < 1:
        raise ValueError(f"max_length={max_length!r} must be >= 1, e.g. bucket_lengths(128).")
    steps = [s for s in _BUCKET_STEPS if smallest <= s < max_length]
    if max_length > _BUCKET_STEPS[-1]:
        steps += list(range(_BUCKET_STEPS[-1] * 2, max_length, _BUCKET_STEPS[-1]))
    return steps + [max_length]


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `length` (the last bucket when `length` is longer than all of them)."""
    i = bisect.bisect_left(buckets, length)
    return int(buckets[min(i, len(buckets) - 1)])


class TokenBudgetBatchSampler:
    """Batches of row indices whose padded size (rows x bucket of the longest row) stays <= `max_tokens`.

    A batch sampler for `torch.utils.data.DataLoader(dataset, batch_sampler=...)`. `shuffle=False` (evaluation) keeps
    a fixed order: buckets longest first (so memory peaks on the first batch), rows in index order within a bucket.
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, buckets: Sequence[int], *, seed: int = 0,
                 shuffle: bool = True, num_replicas: int = 1, rank: int = 0, max_rows: int | None = None,
                 merge_sparse_buckets: bool = False):
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or len(lengths) == 0:
            raise ValueError("TokenBudgetBatchSampler: lengths must be a non-empty list of token counts, one per row.")
        buckets = sorted(int(b) for b in buckets)
        if not buckets or buckets[0] < 1:
            raise ValueError(f"TokenBudgetBatchSampler: buckets={buckets!r} must be positive lengths, e.g. "
                             "bucket_lengths(128).")
        if int(lengths.max()) > buckets[-1]:
            raise ValueError(f"A row has {int(lengths.max())} tokens, more than the largest bucket {buckets[-1]}: "
                             "truncate the texts to max_length or add a larger bucket.")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"TokenBudgetBatchSampler: rank={rank} must be in [0, num_replicas={num_replicas}).")
        self.lengths = lengths
        self.buckets = buckets
        self.max_tokens = int(max_tokens)
        self.seed, self.shuffle, self.epoch = int(seed), bool(shuffle), 0
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.max_rows = max_rows
        self.row_bucket = np.asarray([bucket_of(int(n), buckets) for n in lengths], dtype=np.int64)
        used = sorted(set(self.row_bucket.tolist()))
        if self.max_tokens < used[-1]:
            raise ValueError(f"--max-tokens-per-batch {self.max_tokens} is smaller than one row of the longest bucket "
                             f"({used[-1]} tokens): give at least {used[-1]}, e.g. --max-tokens-per-batch "
                             f"{max(4096, used[-1])}.")
        if len(lengths) < self.num_replicas:
            raise ValueError(f"{len(lengths)} rows cannot be shared by {self.num_replicas} ranks: use fewer ranks.")
        self.merged_sparse_buckets = bool(merge_sparse_buckets)
        if merge_sparse_buckets:
            # A bucket whose rows do not fill one batch makes a batch shape of its own every epoch: its rows join the
            # next longer used bucket instead (chained, shortest first; the longest used bucket stays).
            for bucket, longer in zip(used, used[1:]):
                rows = self.row_bucket == bucket
                if rows.sum() < self.rows_per_batch(bucket):
                    self.row_bucket[rows] = longer
            used = sorted(set(self.row_bucket.tolist()))
        # Rows of each used bucket (index order) and its batch count; both fixed for the run.
        self.used_buckets = used  # the lengths batches are padded to (after merging)
        self.rows_of = {b: np.flatnonzero(self.row_bucket == b) for b in used}
        self.batches_of = {b: math.ceil(len(rows) / self.rows_per_batch(b)) for b, rows in self.rows_of.items()}
        self._split_to_multiple_of_replicas()

    def rows_per_batch(self, bucket: int) -> int:
        rows = max(1, self.max_tokens // bucket)
        return min(rows, self.max_rows) if self.max_rows else rows

    def _split_to_multiple_of_replicas(self) -> None:
        short = (-sum(self.batches_of.values())) % self.num_replicas
        while short:
            # One more batch for the bucket whose batches are fullest (it can always split: n_b > k_b somewhere,
            # because there are at least num_replicas rows).
            splittable = [b for b in self.batches_of if self.batches_of[b] < len(self.rows_of[b])]
            fullest = max(splittable, key=lambda b: (len(self.rows_of[b]) / self.batches_of[b], b))
            self.batches_of[fullest] += 1
            short -= 1

    def set_epoch(self, epoch: int) -> None:
        """The Trainer calls this before each epoch: the order is a function of (seed, epoch)."""
        self.epoch = int(epoch)

    def global_batches(self) -> list[np.ndarray]:
        """All ranks' batches of this epoch, in order (rank r takes [r::num_replicas])."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[np.ndarray] = []
        for bucket in (sorted(self.rows_of) if self.shuffle else sorted(self.rows_of, reverse=True)):
            rows = self.rows_of[bucket]
            if self.shuffle:
                rows = rng.permutation(rows)
            batches += np.array_split(rows, self.batches_of[bucket])
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.rank::self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        return sum(self.batches_of.values()) // self.num_replicas

    def summary(self) -> dict[str, Any]:
        """What training_info.json records: the budget, buckets, batches and rows per batch, padding."""
        rows = {b: len(r) for b, r in self.rows_of.items()}
        padded = sum(b * n for b, n in rows.items())
        per_batch = [len(r) / k for b, r in self.rows_of.items() for k in [self.batches_of[b]]]
        total_batches = sum(self.batches_of.values())
        return {
            "max_tokens_per_batch": self.max_tokens,
            "buckets": self.buckets,
            "rows_per_bucket": {str(b): n for b, n in sorted(rows.items())},
            "batches_per_epoch": total_batches,
            "batches_per_epoch_per_rank": len(self),
            "mean_rows_per_batch": round(len(self.lengths) / total_batches, 2),
            "min_mean_rows_per_batch_in_a_bucket": round(min(per_batch), 2),
            "max_mean_rows_per_batch_in_a_bucket": round(max(per_batch), 2),
            "pad_fraction": round(1 - float(self.lengths.sum()) / padded, 4),
            "num_replicas": self.num_replicas,
            "merged_sparse_buckets": self.merged_sparse_buckets,
            "distinct_batch_shapes": len(self.batch_shapes()),
        }

    def batch_shapes(self, fixed: bool | None = None) -> set[tuple[int, int]]:
        """The (rows, padded length) shapes of an epoch's batches; `fixed` (default: `merged_sparse_buckets`) counts
        them as FixedShapeCollator pads them, one per bucket."""
        fixed = self.merged_sparse_buckets if fixed is None else fixed
        if fixed:
            return {(self.rows_per_batch(b), b) for b in self.rows_of}
        return {(len(part), b) for b, rows in self.rows_of.items()
                for part in np.array_split(np.arange(len(rows)), self.batches_of[b])}


class BucketPaddingCollator:
    """Pads a text batch to the bucket of its longest row (right padding), labels as float multi-hot [batch, L].

        >>> collate = BucketPaddingCollator(tokenizer, bucket_lengths(128))
        >>> collate([{"input_ids": [1, 5, 6], "attention_mask": [1, 1, 1], "labels": [0, 1]}])["input_ids"].shape
        torch.Size([1, 16])
    """

    def __init__(self, tokenizer, buckets: Sequence[int], shared_prefix: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.buckets = sorted(int(b) for b in buckets)
        self.shared_prefix = list(shared_prefix)  # emo_hf.shared_prefix: marked per batch when every row has it

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from .modeling import fill_empty_rows, filler_token_id  # the rule prediction applies too

        labels = torch.tensor(np.asarray([f["labels"] for f in features], dtype=np.float32))
        width = bucket_of(max(len(f["input_ids"]) for f in features), self.buckets)
        keep = fill_empty_rows([{k: v for k, v in f.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                                for f in features], filler_token_id(self.tokenizer))
        batch = self.tokenizer.pad(keep, padding="max_length", max_length=width, return_tensors="pt")
        batch["labels"] = labels
        if self.shared_prefix:
            from .shared_prefix import mark_shared_prefix

            batch = mark_shared_prefix(batch, self.shared_prefix)
        return batch


class FixedShapeCollator:
    """Training batches of one shape per bucket, for compiled steps with CUDA graphs (one graph per shape):
    `collator`'s batch, padded to the sampler's (merged) buckets, gets `sampler.rows_per_batch(length)` rows, the
    missing ones copies of its first row, and `row_weight` [rows] (1, then 0 for the copies): the model's loss is
    the mean over the real rows, so the gradients are those of the unpadded batch (tests/test_speed.py). Costs the
    copies' compute: GoEmotions at 8,192 tokens, 558 filler rows per epoch (~1.3% more rows), 13 shapes become 6.

        >>> sampler = TokenBudgetBatchSampler(lengths, 8192, bucket_lengths(128), merge_sparse_buckets=True)
        >>> collate = FixedShapeCollator(BucketPaddingCollator(tokenizer, bucket_lengths(128)), sampler)
    """

    def __init__(self, collator, sampler: TokenBudgetBatchSampler):
        import copy

        self.collator = copy.copy(collator)
        if hasattr(self.collator, "buckets"):
            self.collator.buckets = list(sampler.used_buckets)  # merged buckets pad to the longer length
        self.sampler = sampler

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.collator(features)
        rows, length = batch["input_ids"].shape
        target = max(rows, self.sampler.rows_per_batch(length))
        weight = torch.zeros(target, dtype=torch.float32)
        weight[:rows] = 1.0
        if target > rows:
            for key, value in list(batch.items()):
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
                    batch[key] = torch.cat([value, value[:1].expand(target - rows, *value.shape[1:])])
        batch["row_weight"] = weight
        return batch


def token_budget_dataloader(trainer, dataset, max_tokens: int, buckets: Sequence[int], *, shuffle: bool,
                            seed: int = 0, fixed_shapes: bool = False):
    """A Trainer's DataLoader over `dataset` (a tokenized datasets.Dataset) with a TokenBudgetBatchSampler;
    `fixed_shapes` (training: --fixed-batch-shapes) merges sparse buckets and pads every batch with
    FixedShapeCollator.

    Training (`shuffle=True`) shards by the Trainer's world size and rank; accelerate's own per-rank re-sharding of a
    batch sampler is turned into a pass-through, as transformers does for its BatchRebalanceSampler (the sampler
    already yields only this rank's batches). The sampler is kept as `loader.token_budget_sampler`.
    """
    from torch.utils.data import DataLoader

    args = trainer.args
    replicas, rank = (args.world_size, args.process_index) if shuffle and args.world_size > 1 else (1, 0)
    lengths = [len(ids) for ids in dataset["input_ids"]]
    sampler = TokenBudgetBatchSampler(lengths, max_tokens, buckets, seed=seed, shuffle=shuffle,
                                      num_replicas=replicas, rank=rank, merge_sparse_buckets=fixed_shapes)
    collate = FixedShapeCollator(trainer.data_collator, sampler) if fixed_shapes else trainer.data_collator
    workers = args.dataloader_num_workers
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        pin_memory=args.dataloader_pin_memory,
                        persistent_workers=args.dataloader_persistent_workers,  # True only with workers (trainer)
                        prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None)
    loader = trainer.accelerator.prepare(loader)
    prepared = getattr(loader, "batch_sampler", None)
    if prepared is not None and getattr(prepared, "batch_sampler", None) is sampler:
        prepared.num_processes, prepared.process_index = 1, 0
    loader.token_budget_sampler = sampler
    return loader
