"""DDP on 2 CPU processes (gloo), as `torchrun --standalone --nproc_per_node 2 -m emo_hf run ...` runs it: rank 1
is killed in epoch 2, `--resume` finishes; one model, one report, one summary; no file written by two processes; the
validation metrics and tuned thresholds equal those of one process with the same global batch (16) and seed.

The runs go through tests/ddp_entry.py (`python -m emo_hf` plus a write log and the kill). Classifier dropout is 0
in both runs: dropout masks are drawn per process, so with dropout the two runs would train on different masks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from emo_hf.presets import get_preset

from goemotions_path import REPO

ENTRY = REPO / "tests" / "ddp_entry.py"
SETTINGS = ["--preset", "tiny-random", "--epochs", "2", "--batch-size", "16", "--classifier-dropout", "0"]
KILL_STEP = 30  # 400 train rows / global batch 16 = 25 steps per epoch: step 30 is in epoch 2, after checkpoint-25


def torchrun(args: list[str], log_dir: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "EMO_HF_TEST_WRITE_LOG": str(log_dir), **extra_env}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ENTRY), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ddp_run(goemotions_slice_data, tmp_path_factory):
    """`emo-hf run` on 2 processes, rank 1 killed at step 30, then `emo-hf run --resume` on 2 processes."""
    root = tmp_path_factory.mktemp("ddp")
    out = root / "out"
    args = ["run", "--data", str(goemotions_slice_data), "--out", str(out), "--no-baselines", *SETTINGS]
    killed = torchrun(args, root / "log-killed", EMO_HF_TEST_KILL_RANK="1", EMO_HF_TEST_KILL_STEP=str(KILL_STEP))
    resumed = torchrun([*args, "--resume"], root / "log-resumed")
    return out, killed, resumed, root


def test_a_kill_of_rank_1_then_resume_finishes(ddp_run):
    out, killed, resumed, root = ddp_run
    assert killed.returncode != 0 and f"KILLED rank 1 at step {KILL_STEP}" in killed.stdout, killed.stderr[-3000:]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = json.loads((out / "model" / "training_info.json").read_text())
    steps = [entry["step"] for entry in info["log_history"] if "eval_macro_f1" in entry]
    assert steps == [25, 50]  # both epochs evaluated: epoch 1 by the killed run, epoch 2 after the resume
    killed_log = (root / "log-killed" / "writes-0.tsv").read_text()
    resumed_log = (root / "log-resumed" / "writes-0.tsv").read_text()
    assert "checkpoint-25" in killed_log and str(out / "model") not in killed_log  # killed after epoch 1's save
    # resumed from checkpoint-25 (not trained again from step 0): the second run never writes that checkpoint
    assert "checkpoint-25" not in resumed_log and "checkpoint-50" in resumed_log


def test_one_model_one_report_one_summary(ddp_run):
    from emo_hf.pipeline import load_trained_model

    out, _, resumed, _ = ddp_run
    assert resumed.stdout.count("Test macro-F1") == 1, resumed.stdout  # printed by rank 0 only
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["n_examples"] == 200
    assert (out / "model" / "report.json").is_file() and (out / "model" / "README.md").is_file()
    info = json.loads((out / "model" / "training_info.json").read_text())
    assert {k: info["hyperparameters"][k] for k in ("world_size", "per_device_train_batch_size", "global_batch_size")} \
        == {"world_size": 2, "per_device_train_batch_size": 8, "global_batch_size": 16}
    model = load_trained_model(out / "model")
    predictions = model.predict(["I am so happy for you!", "This is awful."])
    assert len(predictions) == 2 and set(predictions[0]["probabilities"]) == set(model.config.labels)


def test_no_file_is_written_by_two_processes(ddp_run):
    out, _, _, root = ddp_run
    writers: dict[str, set[str]] = defaultdict(set)
    for log in sorted(root.glob("log-*/writes-*.tsv")):
        rank = log.stem.split("-")[1]
        for line in log.read_text().splitlines():
            path, _event = line.split("\t")
            if path.startswith(str(out)):
                writers[f"{log.parent.name}:{path}"].add(rank)
    twice = sorted(path for path, ranks in writers.items() if len(ranks) > 1)
    assert not twice, twice
    by_rank = {rank: sorted(p.split(":", 1)[1] for p, r in writers.items() if rank in r) for rank in ("0", "1")}
    # the probe sees both processes: rank 0 writes the model, the report and the checkpoints; rank 1 only its RNG state
    assert str(out / "model") in by_rank["0"] and str(out / "report.json") in by_rank["0"]  # model.tmp -> model
    assert by_rank["1"] and all(Path(p).name == "rng_state_1.pth" for p in by_rank["1"]), by_rank["1"]


def test_validation_metrics_and_thresholds_equal_one_process(ddp_run, goemotions_slice_data, tmp_path):
    """Same global batch (16 = 2 x 8), seed and data order: the same model up to float rounding (each process pads its
    half-batch to its own longest text and the gradients are averaged by an all-reduce), so the same validation
    metrics and thresholds. Metrics from gathered logits must agree to 1e-6; `eval_loss` is Trainer's per-batch mean,
    which counts accelerate's duplicate padding rows of the last evaluation batch, so it is compared to 1e-2 only."""
    from emo_hf.trainer import train

    out = ddp_run[0]
    single = train(goemotions_slice_data, tmp_path / "single",
                   get_preset("tiny-random").replace(epochs=2, batch_size=16, classifier_dropout=0.0),
                   show_progress=False)
    one = json.loads((single.model_dir / "training_info.json").read_text())
    two = json.loads((out / "model" / "training_info.json").read_text())
    assert one["hyperparameters"]["world_size"] == 1 and one["hyperparameters"]["global_batch_size"] == 16
    for key in ("validation_metrics_at_0.5", "validation_metrics_tuned"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert two["validation_metrics_tuned"]["macro_f1"] > 0  # a non-trivial number is compared
    thresholds = [json.loads((folder / "thresholds.json").read_text()) for folder in (single.model_dir, out / "model")]
    assert thresholds[0] == thresholds[1]
    evals = [[e for e in info["log_history"] if "eval_macro_f1" in e] for info in (one, two)]
    assert [e["eval_macro_f1"] for e in evals[1]] == pytest.approx([e["eval_macro_f1"] for e in evals[0]], abs=1e-6)
    assert [e["eval_loss"] for e in evals[1]] == pytest.approx([e["eval_loss"] for e in evals[0]], rel=1e-2)
    assert Path(two["best_checkpoint"]).name == Path(one["best_checkpoint"]).name


def test_the_gathered_validation_rows_are_each_row_once(ddp_run, goemotions_slice_data):
    """The thresholds were tuned on predictions gathered from both processes (200 rows: one full batch of 128 on
    rank 0, 72 rows + 56 padding rows on rank 1): the saved model scored on validation in the dataset's order, with
    every row once, reproduces the recorded tuned metrics."""
    from emo_hf.data.builder import load_built
    from emo_hf.metrics import multilabel_metrics
    from emo_hf.pipeline import load_trained_model, split_probabilities

    out = ddp_run[0]
    model = load_trained_model(out / "model")
    validation = load_built(goemotions_slice_data, "raw")["validation"]
    probs = split_probabilities(model, validation, show_progress=False)
    info = json.loads((out / "model" / "training_info.json").read_text())
    tuned = multilabel_metrics(np.asarray(validation["labels"]), probs, list(model.config.thresholds))
    assert tuned["macro_f1"] == pytest.approx(info["validation_metrics_tuned"]["macro_f1"], abs=1e-6)
    assert tuned["micro_f1"] == pytest.approx(info["validation_metrics_tuned"]["micro_f1"], abs=1e-6)


GATHER = textwrap.dedent("""
    import numpy as np
    from emo_hf import distributed

    distributed.setup()
    start, stop = distributed.shard_range(7)
    rows = distributed.gather_in_row_order(np.arange(start, stop) * 10)
    if distributed.is_main_process():
        print("GATHERED", rows.tolist(), distributed.world_size(), flush=True)
""")


def test_gather_in_row_order_over_two_processes(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("GATHERED") == 1, done.stdout + done.stderr[-3000:]
    assert "GATHERED [0, 10, 20, 30, 40, 50, 60] 2" in done.stdout, done.stdout


def test_the_batch_must_divide_over_the_processes():
    from emo_hf.distributed import per_device_batch_size, shard_range

    assert per_device_batch_size(64, 2) == 32 and per_device_batch_size(16, 1) == 16
    with pytest.raises(ValueError, match=r"--batch-size 30 .* 4 processes .* use --batch-size 32 or 28"):
        per_device_batch_size(30, 4)
    assert [shard_range(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
