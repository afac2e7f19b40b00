"""Crash-safe training output: checkpoints that are complete or absent, resume from the newest complete one, an
output folder checked before any work, and the leftovers of a killed run removed on the next one.

    from emo_hf.checkpoints import prepare_train_out, newest_complete_checkpoint
    prepare_train_out(out, resume=False)                       # refuses a folder emo-hf did not write; cleans temps
    newest_complete_checkpoint(out / "checkpoints")            # -> ".../checkpoint-12" or None

How a checkpoint is written (EmoTrainer._save_checkpoint calls `save_checkpoint_atomically`): transformers' Trainer
writes model, optimizer, scheduler, RNG and trainer_state.json into `checkpoints/.tmp-checkpoint-N/checkpoint-N`
(the Trainer's own code, pointed at a staging folder), then the folder is renamed to `checkpoints/checkpoint-N` in
one `os.replace`. A kill at any moment leaves either no checkpoint-N or a complete one; the staging folder of a
killed run is removed when the next run starts.

Fault injection for tests: `EMO_HF_FAULT_POINT=NAME[:K]` makes the K-th (default first) call of `fault_point(NAME)`
SIGKILL the process, e.g. `checkpoint.staged` (the checkpoint is in its staging folder, not yet renamed). The names
are listed in FAULT_POINTS; `EMO_HF_FAULT_AFTER=NAME:SECONDS` kills SECONDS after NAME is reached instead (e.g.
`train.start:4.2`: somewhere in training, evaluation or a save). Unset variables cost two dictionary lookups.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING_PREFIX = ".tmp-checkpoint-"
MODEL_TEMP_PREFIX = ".model.tmp-"        # OUT/model is written here first (emo_hf.training_record.save_trained_model)
SAVE_TEMP_PREFIX = ".tmp-emo-save-"      # EmoModelForMultiLabel.save_pretrained's own staging folder
OLD_PREFIX = ".model.old-"               # an earlier OUT/model moved aside while the new one is moved in
# What `emo-hf train` / `emo-hf run` write at the top of OUT (plus hidden temp names): a folder holding anything
# else was not written by this tool and is refused, so nothing of the user's is ever replaced.
TRAIN_OUTPUTS = ("checkpoints", "model", "data", "train_settings.json", "run_info.json", "report.json", "report.md",
                 "per_label_f1.png", "label_counts.png", "test_probabilities.npy", "validation_probabilities.npy",
                 "train_probabilities.npy", "model.tmp")  # model.tmp: the temp name of emo_hf before 2026-12-01
# What a complete checkpoint holds: trainer_state.json is written last by the Trainer.
CHECKPOINT_FILES = ("config.json", "head.safetensors", "trainer_state.json")
FAULT_ENV = "EMO_HF_FAULT_POINT"
FAULT_AFTER_ENV = "EMO_HF_FAULT_AFTER"
FAULT_POINTS = ("train.start", "checkpoint.model_saved", "checkpoint.staged", "checkpoint.renamed", "model.staged",
                "export.copy", "export.staged")
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process here when $EMO_HF_FAULT_POINT names this point, or SECONDS after it when
    $EMO_HF_FAULT_AFTER is `NAME:SECONDS` (a kill at an arbitrary moment of what follows). Tests of crash safety only."""
    timed = os.environ.get(FAULT_AFTER_ENV)
    if timed and timed.rpartition(":")[0] == name and name not in _fault_hits:
        import threading

        _fault_hits[name] = 0
        timer = threading.Timer(float(timed.rpartition(":")[2]), os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] >= int(count or 1):
        print(f"FAULT_POINT {name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------- checkpoints


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """True when `folder` holds every file a resume needs (written by this version or by one without staging)."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in CHECKPOINT_FILES):
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def newest_complete_checkpoint(checkpoints: str | os.PathLike) -> str | None:
    """The highest-step `checkpoint-N` under `checkpoints` that is complete; incomplete ones are skipped, with a
    warning (they can only come from a version of emo_hf that wrote checkpoints in place)."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in checkpoints.iterdir()
                    if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))), reverse=True)
    for _, path in found:
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning("Skipping %s: it is incomplete (a save was interrupted); resuming from an earlier one.", path)
    return None


def save_checkpoint_atomically(trainer, parent_save, model, trial) -> None:
    """Run the Trainer's own `_save_checkpoint` into a staging folder, then rename the finished checkpoint into place.

    `parent_save` is `transformers.Trainer._save_checkpoint` bound to `trainer`. The Trainer computes its paths from
    `_get_output_dir`, which EmoTrainer answers with `trainer._emo_staging` while this runs; afterwards the paths it
    stored (best_model_checkpoint, in memory and in trainer_state.json) are moved to the final folder, and the
    checkpoint rotation (save_total_limit) runs on the real folder.
    """
    from transformers.trainer_utils import rotate_checkpoints

    run_dir = Path(trainer._get_output_dir(trial=trial))
    step = trainer.state.global_step
    name = f"checkpoint-{step}"
    # The same name in every process of a distributed run (each writes its rng_state_<rank>.pth into it).
    staging = run_dir / f"{STAGING_PREFIX}{step}"
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    limit = trainer.args.save_total_limit
    trainer._emo_staging = str(staging)
    trainer.args.save_total_limit = None  # rotation runs below, on the real folder
    try:
        parent_save(model, trial)
    finally:
        trainer._emo_staging = None
        trainer.args.save_total_limit = limit
    trainer.accelerator.wait_for_everyone()
    if not trainer.args.should_save:
        return
    staged, final = staging / name, run_dir / name
    if trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint) == staged:
        trainer.state.best_model_checkpoint = str(final)
        trainer.state.save_to_json(str(staged / "trainer_state.json"))
    fault_point("checkpoint.staged")
    if final.exists():  # an incomplete checkpoint-N of an earlier version, or a rerun of the same step
        aside = run_dir / f"{STAGING_PREFIX}{step}-old"
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(staged, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staged, final)
    shutil.rmtree(staging, ignore_errors=True)
    fault_point("checkpoint.renamed")
    rotate_checkpoints(output_dir=str(run_dir), save_total_limit=limit,
                       best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=True)


# ------------------------------------------------------------------------------------------------- output folder


def check_out_dir(out: str | os.PathLike, known: tuple[str, ...] = TRAIN_OUTPUTS, flag: str = "--out") -> Path:
    """Refuse `out` before any work unless a run can write there without touching anything of the user's: it is
    absent, or a writable folder holding only names this tool writes (`known`, or hidden temp names), and a
    `model/` in it is an emo_hf model (a save replaces it). Returns `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{flag} {str(out)!r} is a file, not a folder; pass a new folder name, e.g. "
                                 f"{flag} {out.with_suffix('')}-run")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in known and not p.name.startswith("."))
        if foreign:
            raise FileExistsError(f"{flag} {str(out)!r} already holds files emo-hf did not write "
                                  f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); pick a new or "
                                  "empty folder (nothing in this one is touched)")
        model = out / "model"
        if model.exists() and any(model.iterdir()) and not _is_emo_model(model):
            raise FileExistsError(f"{flag} {str(out)!r} holds a model/ folder that is not an emo_hf model (its "
                                  "config.json is missing or of another model type); a run would replace it, so pick "
                                  "a new --out or move that folder away")
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(f"{flag} {str(out)!r} is not writable by this user; pick a folder you can write to")
    else:
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
            raise PermissionError(f"{flag} {str(out)!r} cannot be created: {parent} is not a writable folder; pick "
                                  "a folder you can write to")
    return out


def _is_emo_model(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "emo_multilabel"
    except (OSError, ValueError, AttributeError):
        return False


def remove_train_leftovers(out: Path) -> None:
    """Temp folders that a killed `emo-hf train` leaves in OUT and OUT/checkpoints (only this tool's names)."""
    from .atomic import remove_stale_temps

    remove_stale_temps(out, [MODEL_TEMP_PREFIX, SAVE_TEMP_PREFIX, OLD_PREFIX])
    legacy = out / "model.tmp"  # what a kill during the final save left with emo_hf before 2026-12-01
    if legacy.is_dir() and (legacy / "config.json").is_file() and _is_emo_model(legacy):
        shutil.rmtree(legacy, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted save of an earlier emo_hf version", legacy)
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        # Staging names carry the step, not a pid (all processes of a distributed run share them); a live run in
        # the same OUT is refused before this point (fresh: checkpoints exist; --resume: one run at a time).
        stale = [p for p in checkpoints.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir()]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        if stale:
            logger.info("Removed %d staging folder(s) of interrupted checkpoint saves: %s", len(stale),
                        ", ".join(p.name for p in stale))


def prepare_train_out(out: str | os.PathLike, *, resume: bool) -> Path:
    """Before any work: `out` is usable (check_out_dir) and the leftovers of a killed run in it are removed."""
    out = check_out_dir(out)
    if out.is_dir() and _is_main_process():
        remove_train_leftovers(out)
    return out


def _is_main_process() -> bool:
    """Rank 0 of a torchrun launch (RANK unset: a single process): the only one that removes anything."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def cleanup_on_failure(out: str | os.PathLike, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """On an exception, remove what this call added at the top of `out` (and `out` itself if it created it), unless
    a complete checkpoint was written (then the run can continue with --resume) or the entry is in `keep` (e.g. a
    finished data/ build). Entries that existed before are never touched. The exception is re-raised."""
    out = Path(out)
    existed = out.exists()
    before = {p.name for p in out.iterdir()} if out.is_dir() else set()
    try:
        yield
    except BaseException:
        if out.is_dir() and _is_main_process() and newest_complete_checkpoint(out / "checkpoints") is None:
            added = [p for p in out.iterdir() if p.name not in before and p.name not in keep
                     and (p.name in TRAIN_OUTPUTS or p.name.startswith("."))]
            for path in added:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            if not existed and not any(out.iterdir()):
                out.rmdir()
        raise
