"""`torchrun ... tests/ddp_entry.py ARGS` is `python -m emo_hf ARGS` with two test probes (tests/test_ddp.py):

- a write log: every file this process opens for writing, renames, saves (torch.save, safetensors) or deletes is
  appended to `$EMO_HF_TEST_WRITE_LOG/writes-<rank>.tsv` ("path<TAB>event"), through a Python audit hook plus
  wrappers of the two savers that write from C/Rust and so raise no audit event;
- a hard kill: with EMO_HF_TEST_KILL_RANK=R and EMO_HF_TEST_KILL_STEP=S, rank R calls os._exit(9) at the end of
  optimiser step S (no cleanup, like SIGKILL), and torchrun then stops the other ranks.
"""

from __future__ import annotations

import os
import sys

RANK = os.environ.get("RANK", "0")
LOG_DIR = os.environ.get("EMO_HF_TEST_WRITE_LOG")
_log = None
_busy = False


def _record(event: str, path) -> None:
    global _busy
    if _log is None or _busy or path is None or isinstance(path, int):
        return
    _busy = True
    try:
        _log.write(f"{os.path.abspath(os.fsdecode(path))}\t{event}\n")
        _log.flush()
    finally:
        _busy = False


def _audit(event: str, args) -> None:
    if event == "open":
        path, _mode, flags = args
        if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
            _record("open-write", path)
    elif event == "os.rename":
        _record("rename-from", args[0])
        _record("rename-to", args[1])
    elif event in ("os.remove", "os.unlink", "os.rmdir", "shutil.rmtree"):
        _record(event, args[0])


def _install_write_log() -> None:
    global _log
    os.makedirs(LOG_DIR, exist_ok=True)
    _log = open(os.path.join(LOG_DIR, f"writes-{RANK}.tsv"), "a", encoding="utf-8")  # before the hook: not logged
    sys.addaudithook(_audit)
    import safetensors.torch
    import torch

    save_file, torch_save = safetensors.torch.save_file, torch.save

    def logged_save_file(tensors, filename, *args, **kwargs):
        _record("safetensors", filename)
        return save_file(tensors, filename, *args, **kwargs)

    def logged_torch_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, bytes, os.PathLike)):
            _record("torch.save", f)
        return torch_save(obj, f, *args, **kwargs)

    # before transformers / peft import them (`from safetensors.torch import save_file as safe_save_file`)
    safetensors.torch.save_file, torch.save = logged_save_file, logged_torch_save


def _install_kill(rank: str, step: int) -> None:
    import emo_hf.trainer
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step and RANK == rank:
                print(f"KILLED rank {rank} at step {step}", flush=True)
                os._exit(9)

    original = emo_hf.trainer.train

    def train_with_kill(*args, callbacks=None, **kwargs):
        return original(*args, callbacks=[*(callbacks or []), Kill()], **kwargs)

    emo_hf.trainer.train = train_with_kill  # commands and the pipeline import `train` at call time


if __name__ == "__main__":
    if LOG_DIR:
        _install_write_log()
    if os.environ.get("EMO_HF_TEST_KILL_RANK"):
        _install_kill(os.environ["EMO_HF_TEST_KILL_RANK"], int(os.environ["EMO_HF_TEST_KILL_STEP"]))
    from emo_hf.cli import main

    sys.exit(main(sys.argv[1:]))
