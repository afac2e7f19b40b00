"""Where a training run's wall time goes: every optimiser step's seconds, the time before the first step, the time
after each epoch (evaluation, checkpoint), and how much of the run the slow steps took (compiling, CUDA graphs
recorded for each new batch shape, the allocator warming up).

    timer = StepTimer()
    trainer = Trainer(..., callbacks=[timer.callback()])   # emo_hf.trainer adds one to every run
    trainer.train()
    timer.summary()      # -> training_info.json "step_timing"; timer.line() is what `emo-hf train` prints

Why: on the H200, 2 epochs of Qwen2.5-0.5B from a warm compile cache took 77.6 s of `train_runtime` while the second
epoch, evaluation included, took 22 s (docs/benchmarks.md, "16,384-token batches"): ~30 s of the first epoch were
start-up, not steps, and only a record per step says how much and where.

No device synchronisation is added (one per step would stall a host-bound step): a step's time is the host's wall
clock from its `on_step_begin` to the next step's (or its epoch's end), so a step's kernels may finish inside a later
step's time. Over many steps the sum is right; and the steps in which the host compiles or records a graph stand out,
because the host is busy.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

SLOW_FACTOR = 3.0  # a step this many times the median counts as slow (compiling, recording, first of its shape)


class StepTimer:
    """Wall-clock seconds per optimiser step and per phase of `Trainer.train`, from its callbacks."""

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self.train_began: float | None = None
        self.first_step_began: float | None = None
        self.step_seconds: list[float] = []
        self.step_numbers: list[int] = []
        self.epoch_seconds: list[float] = []
        self.after_epoch_seconds: list[float] = []  # from an epoch's end to the next epoch (or the run's end)
        self._step_began: float | None = None
        self._step_number = 0
        self._epoch_began: float | None = None
        self._epoch_ended: float | None = None
        self.compile_seconds: dict[str, float] | None = None  # torch.compile's phases, read at the run's end

    # -- events (the callback below forwards the Trainer's) ------------------------------------------------------
    def train_begin(self) -> None:
        self.train_began = self._clock()

    def epoch_begin(self) -> None:
        now = self._clock()
        self._close_after_epoch(now)
        self._epoch_began = now

    def step_begin(self, step_number: int) -> None:
        # A step lasts until the next one begins (or its epoch ends): the Trainer's logging (a `.item()` that waits
        # for the device) and the next batch's fetch fall between its step callbacks and belong to the step.
        now = self._clock()
        self._close_step(now)
        self._step_began, self._step_number = now, step_number
        if self.first_step_began is None:
            self.first_step_began = now

    def epoch_end(self) -> None:
        now = self._clock()
        self._close_step(now)
        if self._epoch_began is not None:
            self.epoch_seconds.append(now - self._epoch_began)
        self._epoch_began, self._epoch_ended = None, now

    def _close_step(self, now: float) -> None:
        if self._step_began is not None:
            self.step_seconds.append(now - self._step_began)
            self.step_numbers.append(self._step_number)
            self._step_began = None

    def train_end(self) -> None:
        self._close_after_epoch(self._clock())
        self.compile_seconds = compile_phase_seconds()

    def _close_after_epoch(self, now: float) -> None:
        if self._epoch_ended is not None:
            self.after_epoch_seconds.append(now - self._epoch_ended)
            self._epoch_ended = None

    # -- results ---------------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any] | None:
        """The record for training_info.json, or None when no step ran (a resume past the last step)."""
        if not self.step_seconds:
            return None
        seconds = np.asarray(self.step_seconds)
        median = float(np.median(seconds))
        slow = np.flatnonzero(seconds > SLOW_FACTOR * median)
        before = (self.first_step_began - self.train_began
                  if self.first_step_began is not None and self.train_began is not None else None)
        return {
            "steps": len(seconds),
            "before_first_step_s": None if before is None else round(before, 3),
            "first_step_s": round(float(seconds[0]), 3),
            "median_step_ms": round(1000 * median, 2),
            "p90_step_ms": round(1000 * float(np.percentile(seconds, 90)), 2),
            "steps_seconds": round(float(seconds.sum()), 2),
            # what the steps took beyond the median step: start-up (compiling, CUDA graph recording per new shape)
            "above_median_seconds": round(float(np.clip(seconds - median, 0, None).sum()), 2),
            "slow_steps": int(len(slow)),
            "slow_step_numbers": [self.step_numbers[i] for i in slow[:20]],
            "slow_step_seconds": [round(float(seconds[i]), 3) for i in slow[:20]],
            "slow_factor": SLOW_FACTOR,
            "epoch_seconds": [round(s, 2) for s in self.epoch_seconds],
            "after_epoch_seconds": [round(s, 2) for s in self.after_epoch_seconds],
            "clock": "host wall clock from one step's begin to the next, no device synchronisation",
            # Dynamo's whole trace (_compile.compile_inner) against the backend's share (inductor compiling or loading
            # its cache), so a slow first step can be split; None when nothing was compiled.
            "compile_seconds": self.compile_seconds,
        }

    def line(self) -> str | None:
        """One line for the console: where the run's time went."""
        s = self.summary()
        if s is None:
            return None
        after = sum(s["after_epoch_seconds"])
        return (f"emo_hf: {s['steps']} steps in {s['steps_seconds']:.1f} s (median {s['median_step_ms']:.1f} ms, "
                f"first step {s['first_step_s']:.1f} s; start-up: {s['above_median_seconds']:.1f} s above the median, "
                f"{s['slow_steps']} steps over {SLOW_FACTOR:g}x), {after:.1f} s after epochs (evaluation, checkpoints)")

    def callback(self):
        """A transformers TrainerCallback that feeds this timer (transformers imported here, not at module load)."""
        from transformers import TrainerCallback

        timer = self

        class StepTimingCallback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.train_begin()

            def on_epoch_begin(self, args, state, control, **kwargs):
                timer.epoch_begin()

            def on_step_begin(self, args, state, control, **kwargs):
                timer.step_begin(state.global_step + 1)

            def on_epoch_end(self, args, state, control, **kwargs):
                timer.epoch_end()

            def on_train_end(self, args, state, control, **kwargs):
                timer.train_end()

        return StepTimingCallback()


def compile_phase_seconds() -> dict[str, float] | None:
    """Seconds torch.compile spent in this process so far per timed phase, summed over graphs: `_compile.compile_inner`
    is Dynamo's whole trace, `OutputGraph.call_user_compiler` the backend's share of it (cache loads included). None
    when Dynamo was never imported or compiled nothing. torch's own record (`torch._dynamo.utils`), read, not
    recomputed."""
    utils = sys.modules.get("torch._dynamo.utils")
    metrics = getattr(utils, "compilation_time_metrics", None) if utils is not None else None
    if not metrics:
        return None
    return {str(name): round(float(sum(values)), 2) for name, values in sorted(metrics.items()) if values}
