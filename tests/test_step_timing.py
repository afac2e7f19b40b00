"""Where a run's time goes (emo_hf.step_timing): the timer fed the Trainer's callbacks in their order, on a clock the
test moves (the real run's record: tests/test_training.py)."""

from __future__ import annotations

import pytest

from emo_hf.step_timing import StepTimer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(timer: StepTimer, clock: Clock, epochs: list[list[float]], before: float, after: float) -> None:
    """Feed `timer` the callbacks of a run whose epoch e has steps lasting epochs[e] seconds."""
    timer.train_begin()
    clock.now += before
    step = 0
    for steps in epochs:
        timer.epoch_begin()
        for seconds in steps:
            step += 1
            timer.step_begin(step)
            clock.now += seconds
        timer.epoch_end()
        clock.now += after  # evaluation and checkpoint
    timer.train_end()


def test_the_first_steps_compile_time_shows_above_the_median():
    clock = Clock()
    timer = StepTimer(clock=clock)
    # epoch 1: a 12 s first step (compiling), a 2 s one (a new batch shape), then 0.1 s steps; epoch 2: steady
    _run(timer, clock, [[12.0, 2.0, 0.1, 0.1, 0.1, 0.1], [0.1] * 6], before=1.5, after=3.0)
    s = timer.summary()
    assert s["steps"] == 12 and s["first_step_s"] == 12.0 and s["before_first_step_s"] == 1.5
    assert s["median_step_ms"] == pytest.approx(100.0)
    assert s["above_median_seconds"] == pytest.approx(11.9 + 1.9)
    assert s["slow_steps"] == 2 and s["slow_step_numbers"] == [1, 2] and s["slow_step_seconds"] == [12.0, 2.0]
    assert s["epoch_seconds"] == pytest.approx([14.4, 0.6]) and s["after_epoch_seconds"] == pytest.approx([3.0, 3.0])
    # the phases add up to the run: before + steps + after epochs
    assert s["before_first_step_s"] + s["steps_seconds"] + sum(s["after_epoch_seconds"]) == pytest.approx(clock.now)
    assert "12 steps in 15.0 s" in timer.line() and "start-up: 13.8 s above the median, 2 steps over 3x" in timer.line()


def test_the_compile_phases_are_torchs_own_record_of_this_process():
    import torch

    from emo_hf.step_timing import compile_phase_seconds

    torch._dynamo.utils.compilation_time_metrics.clear()  # what other tests compiled is not this test's record
    assert compile_phase_seconds() is None  # nothing compiled yet: no phases
    torch.compile(lambda x: torch.sin(x) + 1, backend="eager")(torch.ones(3))
    phases = compile_phase_seconds()
    assert phases is not None and "_compile.compile_inner" in phases  # Dynamo's whole trace of the function
    assert all(isinstance(v, float) and v >= 0 for v in phases.values())
    clock = Clock()
    timer = StepTimer(clock=clock)
    _run(timer, clock, [[0.1, 0.1]], before=0.0, after=0.0)
    assert timer.summary()["compile_seconds"] == phases  # read at the run's end, into training_info.json


def test_a_run_with_no_steps_records_nothing():
    clock = Clock()
    timer = StepTimer(clock=clock)
    _run(timer, clock, [[]], before=0.5, after=1.0)  # e.g. a resume past the last step
    assert timer.summary() is None and timer.line() is None
