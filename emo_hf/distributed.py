"""Several processes (GPUs, or CPU processes for CI) training one model: rank, world size, batch split, gathering.

    accelerate launch --num_processes 2 -m emo_hf train --data DATA --out OUT --preset qwen2.5-0.5b
    torchrun --nproc_per_node 2 -m emo_hf train --data DATA --out OUT --preset tiny-random      # gloo on CPU

transformers' Trainer runs the DDP itself (it wraps the model, all-reduces the gradients and shards the batches
through accelerate); this module holds the few decisions emo_hf adds on top of it:

- `batch_size` is the batch of one step over ALL processes (the single-process run's batch): each process gets
  `batch_size / world_size` rows (`per_device_batch_size`), so the global batch per optimiser step,
  `batch_size x gradient_accumulation_steps`, and thus the learning-rate schedule stay those of the preset whatever
  the number of processes.
- The length-grouped train order is a pure function of (seed, epoch) (`SeededLengthGroupedSampler`), grouped in
  global batches: every rank builds the same order, accelerate hands rank r the r-th slice of each global batch, and
  the union of a step's slices is exactly the batch a single process would have taken at that step.
- Only the main process writes shared files (`OUT/model`, reports, the card, `train_settings.json`) and prints the
  summary; checkpoints' shared files are written by Trainer's main process, `rng_state_{rank}.pth` by each rank.

Everything here is a no-op in a plain single process (no process group is created).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from typing import Any

# Environment variables a launcher (torchrun, accelerate launch, mpirun) sets; read before the process group exists.
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """The number of processes the launcher started (1 without a launcher); needs no process group."""
    for name in _WORLD_SIZE_VARS:
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def setup():
    """Join the launcher's process group (once; nccl on GPUs, gloo on CPU) and pin this process to its GPU.

    Called at the start of `emo_hf.trainer.train`, before the backbone loads, so that `torch.cuda.current_device()`
    is this rank's GPU: the 4-bit loader places the model with `device_map={"": torch.cuda.current_device()}`, i.e.
    `{"": local_rank}`, instead of stacking every rank's copy on GPU 0. Returns accelerate's `PartialState`.
    """
    import torch
    from accelerate import PartialState

    state = PartialState(**_state_kwargs())  # a singleton; TrainingArguments(use_cpu=use_cpu()) finds it set up
    if state.num_processes > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(state.local_process_index)
        # A process that exits with its gloo group still open can abort in the group's threads ("terminate called
        # without an active exception", SIGABRT, seen in tests/test_ddp.py): close the group on the way out.
        atexit.register(_destroy_process_group)
    return state


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def use_cpu() -> bool:
    """`TrainingArguments(use_cpu=...)`: True for several processes on a machine without CUDA. accelerate makes CPU
    processes a gloo group (MULTI_CPU) only when asked for the CPU; otherwise each would train alone."""
    if launched_world_size() == 1:
        return False
    import torch

    return not torch.cuda.is_available()


def _state():
    if launched_world_size() == 1:
        return None
    from accelerate import PartialState

    return PartialState(**_state_kwargs())


def _state_kwargs() -> dict[str, Any]:
    from datetime import timedelta

    # Trainer's default ddp_timeout (30 min): the group is created here first (a data build under
    # main_process_first may keep the other ranks waiting), and Trainer reuses it as it is.
    return {"cpu": use_cpu(), "timeout": timedelta(seconds=1800)}


def world_size() -> int:
    """Number of processes (1 in a plain run)."""
    state = _state()
    return state.num_processes if state is not None else 1


def rank() -> int:
    """This process's global rank (0 in a plain run)."""
    state = _state()
    return state.process_index if state is not None else 0


def local_rank() -> int:
    """This process's index on its host, i.e. its GPU (0 in a plain run)."""
    state = _state()
    return state.local_process_index if state is not None else 0


def is_main_process() -> bool:
    """True on global rank 0 only: the process that writes the shared files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op in a plain run)."""
    state = _state()
    if state is not None:
        state.wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (builds caches: the tiny model, `datasets` map files), then each host's
    first process (for caches on a host's own disk), then the others; a no-op in a plain run.

    The others then read what was written instead of racing it. `enter_main_process_first()` and
    `exit_main_process_first()` are the same two halves, for code that is not one block.
    """
    enter_main_process_first()
    yield
    exit_main_process_first()


def enter_main_process_first() -> None:
    """First half of `main_process_first`: every rank passes two barriers in all (the same count on every rank)."""
    state = _state()
    if state is None:
        return
    if not state.is_main_process:
        state.wait_for_everyone()  # 1: the main process is done
        if not state.is_local_main_process:
            state.wait_for_everyone()  # 2: this host's first process is done


def exit_main_process_first() -> None:
    """Second half of `main_process_first`."""
    state = _state()
    if state is None:
        return
    if state.is_main_process:
        state.wait_for_everyone()  # 1
        state.wait_for_everyone()  # 2
    elif state.is_local_main_process:
        state.wait_for_everyone()  # 2


def broadcast_object(value: Any) -> Any:
    """The main process's `value` on every process (picklable objects; no-op in a plain run)."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def shard_range(n_rows: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """The contiguous rows [start, stop) of `n_rows` that a rank handles (the first `n % world` ranks get one more)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n_rows, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def gather_in_row_order(local_rows):
    """Concatenate every rank's `shard_range` block (a numpy array or list) in rank order = the input's row order.

    Each rank passes the rows it computed for `shard_range(n)`; all ranks get the whole result, exactly n rows (no
    padding or duplicate rows, unlike a fixed-shape all_gather of uneven shards). Uses `all_gather_object`, which
    works on gloo and nccl; meant for predictions (megabytes), not for tensors in a training step.
    """
    if world_size() == 1:
        return local_rows
    import numpy as np
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, local_rows)
    if isinstance(local_rows, np.ndarray):
        return np.concatenate(parts, axis=0)
    return [row for part in parts for row in part]


@contextlib.contextmanager
def cpu_map_location() -> Iterator[None]:
    """Within the block, `torch.load(..., map_location=cpu:N)` loads on "cpu".

    accelerate gives CPU processes the device `torch.device("cpu", 0)`, and Trainer resumes a multi-process run with
    `torch.load(optimizer.pt, map_location=args.device)`, which torch refuses for "cpu:0" ("don't know how to
    restore data location"). GPUs (cuda:N) are left alone.
    """
    import torch

    original = torch.load

    def load(*args, **kwargs):
        where = kwargs.get("map_location")
        if isinstance(where, (str, torch.device)) and torch.device(where).type == "cpu":
            kwargs["map_location"] = "cpu"
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


# ---------------------------------------------------------------------------------------------- batches and sampler
def per_device_batch_size(batch_size: int, world: int | None = None) -> int:
    """`batch_size` (one step over all processes) split over the processes; a clear error when it does not divide."""
    world = launched_world_size() if world is None else world
    if batch_size % world:
        lower, upper = (batch_size // world) * world, (batch_size // world + 1) * world
        raise ValueError(
            f"--batch-size {batch_size} is the batch of one step over all {world} processes and must divide evenly "
            f"between them: use --batch-size {upper}" + (f" or {lower}" if lower else "")
            + " (raise --gradient-accumulation-steps to keep a larger global batch)."
        )
    return batch_size // world


def find_unused_parameters(lora_r: int | None) -> bool:
    """DDP's `find_unused_parameters`: False with LoRA (every adapter and the head get a gradient each step, and
    gradient checkpointing needs it off); True for full fine-tuning, where e.g. BERT's pooler is never used."""
    return not lora_r


def batch_info(batch_size: int, gradient_accumulation_steps: int) -> dict[str, int]:
    """What training_info.json records about the batch of this run."""
    world = launched_world_size()
    return {"world_size": world, "per_device_train_batch_size": per_device_batch_size(batch_size, world),
            "global_batch_size": batch_size * gradient_accumulation_steps}


def make_length_grouped_sampler(dataset, *, global_batch_size: int, seed: int, model_input_name: str = "input_ids"):
    """The train sampler for `train_sampling_strategy="group_by_length"` (see `SeededLengthGroupedSampler`)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class SeededLengthGroupedSampler(LengthGroupedSampler):
        """transformers' LengthGroupedSampler (mega-batches sorted by length) whose order depends only on
        (seed, epoch), grouped in batches of the GLOBAL batch size.

        Trainer's own uses the process's global RNG and the per-device batch, so under DDP its order would depend
        on the world size and on how accelerate seeds a fresh generator; this one gives a single process and N
        processes the same global batches, and `--resume` (which calls `set_epoch`) the same order as a run
        that was never interrupted.
        """

        def __init__(self) -> None:
            super().__init__(global_batch_size, dataset=dataset, model_input_name=model_input_name)
            self.seed, self.epoch = seed, 0
            import torch

            self.generator = torch.Generator()  # accelerate syncs a sampler's generator; we re-seed it anyway

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            self.generator.manual_seed(self.seed + self.epoch)
            return super().__iter__()

    return SeededLengthGroupedSampler()
