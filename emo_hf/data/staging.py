"""Where `data build` writes before the finished folder moves into place, and how it cleans up after a kill.

    >>> from emo_hf.data.staging import check_out, clean_stale, make_temporary
    >>> check_out(out)                  # before any work: OUT is absent, empty or an earlier build, and writable
    >>> clean_stale(out)                # temp folders of killed builds into OUT: removed (an interrupted swap: undone)
    >>> temporary = make_temporary(out)  # OUT's parent / .OUT.data-build-tmp-XXXX, with an owner marker inside

Every folder the builder creates next to OUT carries a recognisable name (`.OUT.data-build-tmp-*`,
`.OUT.data-build-old-*`) and a marker file naming the process that made it. `clean_stale` removes only folders that
have both and whose process is gone (same host): nothing the tool did not write is ever deleted, and a build still
running into the same OUT is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..atomic import pid_alive

logger = logging.getLogger(__name__)

MARKER = ".emo-hf-data-build.json"
BUILD_INFO_FILE = "build_info.json"


def temporary_prefix(out: Path) -> str:
    return f".{out.name}.data-build-tmp-"


def old_prefix(out: Path) -> str:
    return f".{out.name}.data-build-old-"


def _mark(folder: Path, out: Path) -> Path:
    from ..atomic import umask_mode

    os.chmod(folder, umask_mode(directory=True))  # mkdtemp makes 0700; the folder becomes OUT, so: the umask's mode
    (folder / MARKER).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "out": str(out), "created": time.time()}) + "\n",
        encoding="utf-8",
    )
    return folder


def make_temporary(out: Path) -> Path:
    """A new marked temporary folder next to OUT (same file system, so the final move is a rename)."""
    return _mark(Path(tempfile.mkdtemp(dir=out.parent, prefix=temporary_prefix(out))), out)


def make_old(out: Path) -> Path:
    """A marked folder next to OUT that holds the previous build while the new one moves in."""
    return _mark(Path(tempfile.mkdtemp(dir=out.parent, prefix=old_prefix(out))), out)


def _ours_and_abandoned(folder: Path, out: Path) -> bool:
    """True when `folder` carries this tool's marker for this OUT and its process is gone."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # no marker (or unreadable): not provably ours, keep it
    if not isinstance(marker, dict) or marker.get("out") != str(out) or marker.get("host") != socket.gethostname():
        return False
    pid = marker.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid)


def clean_stale(out: Path) -> list[Path]:
    """Remove the temp folders of earlier builds into OUT that were killed; returns what was removed.

    A kill between the two renames of `move_into_place` leaves OUT absent and the previous build inside an `old`
    folder: it is moved back to OUT first, so the previous build is never lost.
    """
    if not out.parent.is_dir():
        return []
    removed = []
    for prefix in (old_prefix(out), temporary_prefix(out)):
        for folder in sorted(out.parent.glob(f"{prefix}*")):
            if not folder.is_dir() or folder.is_symlink() or not _ours_and_abandoned(folder, out):
                continue
            previous = folder / out.name
            if prefix == old_prefix(out) and not out.exists() and (previous / BUILD_INFO_FILE).is_file():
                os.replace(previous, out)
                logger.warning("restored the previous build %s from %s (a build was killed while replacing it)", out, folder)
            shutil.rmtree(folder)
            removed.append(folder)
            logger.info("removed %s, left by a killed `data build`", folder)
    return removed


def check_out(out: Path) -> None:
    """Refuse an OUT that the build could not replace, before any work: an existing file, a folder holding things
    but no build_info.json, or a place that cannot be written."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is a file, not a dataset folder; choose another --out or remove it.")
        if any(out.iterdir()) and not (out / BUILD_INFO_FILE).is_file():
            raise FileExistsError(
                f"{out} exists and is not an emo-hf dataset folder (no {BUILD_INFO_FILE}); choose another --out or remove it."
            )
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FileExistsError(f"--out {out}: {ancestor} is a file, so the folder cannot be made; choose another --out.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: {ancestor} is not writable; choose another --out or fix the permissions.")


def move_into_place(temporary: Path, out: Path) -> None:
    """Replace OUT by the finished build in `temporary` (OUT absent, empty, or an earlier build: see `check_out`)."""
    check_out(out)  # again: OUT may have changed during the build
    if not out.exists():
        os.replace(temporary, out)
    else:
        old = make_old(out)
        os.replace(out, old / out.name)
        os.replace(temporary, out)  # a kill between these two renames: clean_stale moves the old build back
        shutil.rmtree(old, ignore_errors=True)  # what is left keeps its marker: the next build removes it
    (out / MARKER).unlink()
