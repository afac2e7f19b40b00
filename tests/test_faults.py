"""Fault injection: `emo-hf train` and `emo-hf export` SIGKILLed at seeded random points (inside checkpoint writes,
the final model save, the export copy, and at a random moment of training), then rerun / resumed: the final output
equals an uninterrupted run's (same weights, thresholds and validation metrics for the same seed) and no temp
folder remains. (The `data build` part of the module is the dataguard helper's.)

The kill points are emo_hf.checkpoints' fault points (EMO_HF_FAULT_POINT=NAME:K kills at the K-th hit,
EMO_HF_FAULT_AFTER=NAME:SECONDS kills that long after it). EMO_HF_FAULT_SEED picks another seeded plan.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from emo_hf.checkpoints import CHECKPOINT_RE, is_complete_checkpoint, newest_complete_checkpoint
from emo_hf.cli import main

from goemotions_path import REPO

SEED = int(os.environ.get("EMO_HF_FAULT_SEED", "16"))
KILLS = 2  # bounded: each killed run is a fresh interpreter (~10 s of imports on 2 cores)
TRAIN_POINTS = ["checkpoint.model_saved:1", "checkpoint.staged:1", "checkpoint.staged:2", "checkpoint.renamed:1",
                "model.staged:1"]


def train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--preset", "tiny-random", "--epochs", "2",
            "--train-subset", "32", "--batch-size", "16"]


def run_killable(args: list[str], fault_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **fault_env}
    return subprocess.run([sys.executable, "-m", "emo_hf", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def temp_entries(folder: Path) -> list[str]:
    """Hidden entries (every temp name emo_hf makes starts with a dot) anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def assert_complete_or_absent(out: Path) -> None:
    """After a kill: every checkpoint-N is complete, and model/ is absent or complete."""
    for path in (out / "checkpoints").glob("checkpoint-*"):
        if CHECKPOINT_RE.match(path.name):
            assert is_complete_checkpoint(path), f"half-written {path}: {sorted(p.name for p in path.iterdir())}"
    if (out / "model").exists():
        assert (out / "model" / "training_info.json").is_file(), "half-written model/"


def outcome(model: Path) -> dict:
    """What must equal between an interrupted and an uninterrupted run: weights, thresholds, validation metrics."""
    from safetensors.numpy import load_file

    info = json.loads((model / "training_info.json").read_text())
    evals = [{k: v for k, v in entry.items() if not k.endswith(("runtime", "per_second"))}
             for entry in info["log_history"] if "eval_macro_f1" in entry]
    weights = {}
    for name in ("head.safetensors", "adapter/adapter_model.safetensors"):
        weights.update({f"{name}:{k}": v.tolist() for k, v in load_file(str(model / name)).items()})
    return {"weights": weights, "thresholds": json.loads((model / "thresholds.json").read_text()),
            "validation": [info["validation_metrics_at_0.5"], info["validation_metrics_tuned"]], "evals": evals,
            "best": Path(info["best_checkpoint"]).name}


@pytest.fixture(scope="module")
def reference(goemotions_slice_data, tmp_path_factory) -> Path:
    """The uninterrupted run (in-process)."""
    from emo_hf.tiny import resolve_backbone

    resolve_backbone("tiny-random-mistral")  # build the cached backbone first: building it reseeds torch
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(goemotions_slice_data, out)) == 0
    return out


def test_train_killed_at_seeded_points_resumes_to_the_uninterrupted_result(reference, goemotions_slice_data,
                                                                           tmp_path):
    rng = random.Random(SEED)
    train_seconds = json.loads((reference / "model" / "training_info.json").read_text())["train_seconds"]
    plan = [{"EMO_HF_FAULT_POINT": rng.choice(TRAIN_POINTS)},  # inside a checkpoint / the final save
            {"EMO_HF_FAULT_AFTER": f"train.start:{rng.uniform(0.1, max(train_seconds, 0.5)):.2f}"}]  # anywhere
    out = tmp_path / "run"
    finished = False
    for fault in plan[:KILLS]:
        resume = ["--resume"] if newest_complete_checkpoint(out / "checkpoints") else []
        done = run_killable(train_args(goemotions_slice_data, out) + resume, fault)
        if done.returncode == 0:  # the timed kill came after the end of a (short, resumed) run
            finished = True
            break
        assert done.returncode == -9, (fault, done.returncode, done.stderr[-3000:])
        assert_complete_or_absent(out)
    if not finished:
        resume = ["--resume"] if newest_complete_checkpoint(out / "checkpoints") else []
        assert main(train_args(goemotions_slice_data, out) + resume) == 0
    assert outcome(out / "model") == outcome(reference / "model"), plan
    assert temp_entries(out) == []


def test_a_stale_staging_folder_is_removed_and_an_incomplete_checkpoint_skipped(reference, tmp_path, caplog):
    """What a kill left with an older emo_hf (checkpoint-N written in place) or this one (a staging folder)."""
    import shutil

    from emo_hf.checkpoints import prepare_train_out

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    steps = sorted(int(CHECKPOINT_RE.match(p.name).group(1)) for p in (out / "checkpoints").iterdir())
    newest = out / "checkpoints" / f"checkpoint-{steps[-1]}"
    (newest / "trainer_state.json").unlink()  # half-written in place
    (out / "checkpoints" / f".tmp-checkpoint-{steps[-1] + 1}").mkdir()
    (out / ".model.tmp-999999999-x").mkdir()  # a temp folder of a process that is gone
    prepare_train_out(out, resume=True)
    assert newest_complete_checkpoint(out / "checkpoints") == str(out / "checkpoints" / f"checkpoint-{steps[0]}")
    assert temp_entries(out) == []
    assert newest.is_dir()  # skipped, not deleted


def test_export_killed_at_seeded_points_then_rerun_equals_an_uninterrupted_export(reference, tmp_path):
    from emo_hf.export import exported_files

    model = reference / "model"
    expected = tmp_path / "a" / "export"
    assert main(["export", str(model), str(expected)]) == 0
    rng = random.Random(SEED)
    target = tmp_path / "b" / "export"
    plan = [f"export.copy:{rng.randint(1, len(exported_files(model)))}", "export.staged:1"]
    for point in plan:
        done = run_killable(["export", str(model), str(target)], {"EMO_HF_FAULT_POINT": point})
        assert done.returncode == -9, (point, done.returncode, done.stderr[-3000:])
        assert not target.exists(), "an export is complete or absent"
    # a kill while replacing an earlier complete export leaves that export complete
    assert main(["export", str(model), str(target)]) == 0
    done = run_killable(["export", str(model), str(target)], {"EMO_HF_FAULT_POINT": "export.staged:1"})
    assert done.returncode == -9
    assert main(["export", str(model), str(target)]) == 0

    def tree(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    assert tree(target) == tree(expected)
    assert sorted(p.name for p in target.parent.iterdir()) == ["export"]  # the killed runs' temps are gone


def test_saved_files_respect_the_umask(reference, tmp_path):
    """0644 files and 0755 folders under umask 022 (safetensors writes 0600, mkdtemp makes 0700 by themselves)."""
    old = os.umask(0o022)
    try:
        exported = tmp_path / "export"
        assert main(["export", str(reference / "model"), str(exported)]) == 0
        for root in (reference / "model", reference / "checkpoints", exported):
            modes = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}
            wrong = {k: v for k, v in modes.items() if v != (oct(0o755) if (root / k).is_dir() else oct(0o644))}
            assert wrong == {}, (root, wrong)
    finally:
        os.umask(old)


def test_a_data_build_folder_respects_the_umask(goemotions_slice_data):
    """The dataset folder (renamed from a mkdtemp staging folder) and its files: 0755 / 0644 under umask 022."""
    mask = os.umask(0o022)
    os.umask(mask)
    if mask != 0o022:
        pytest.skip("the test process runs under another umask")
    root = Path(goemotions_slice_data)
    wrong = {str(p): oct(p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]
             if p.stat().st_mode & 0o777 != (0o755 if p.is_dir() else 0o644)}
    assert wrong == {}
