"""Writing folders so that a kill leaves them complete or absent, with the permissions the umask asks for.

    from emo_hf.atomic import make_temp_dir, remove_stale_temps, check_out_dir
    staging = make_temp_dir(out.parent, f".{out.name}.tmp-")   # 0755 under umask 022 (mkdtemp alone gives 0700)
    ...write into staging..., then os.replace(staging, out)
    remove_stale_temps(out.parent, [f".{out.name}.tmp-"])      # on the next run: temp folders of dead processes

Temp names made here carry the pid of the process that writes them (`<prefix><pid>-<random>`), so the next run
removes only the leftovers of processes that are gone and never a folder a live run is still writing, nor anything
whose name this tool does not make.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)


def current_umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(directory: bool) -> int:
    """The mode a plain `mkdir` / `open` would give under the current umask: 0755 / 0644 for umask 022."""
    return (0o777 if directory else 0o666) & ~current_umask()


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """`tempfile.mkdtemp` in `parent`, named `<prefix><pid>-<random>`, chmod-ed to the umask's folder mode.

    mkdtemp creates 0700 on purpose (private /tmp folders); a folder that is renamed into place as the user's output
    must get the mode the user's umask asks for instead.
    """
    Path(parent).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    os.chmod(path, umask_mode(directory=True))
    return path


def fix_file_mode(path: str | os.PathLike) -> None:
    """chmod a file made by `tempfile.mkstemp` (0600) to the umask's file mode (0644 under umask 022)."""
    os.chmod(path, umask_mode(directory=False))


def respect_umask(folder: str | os.PathLike) -> None:
    """chmod `folder` and everything under it to the umask's modes (safetensors writes 0600, mkdtemp makes 0700,
    shutil.copy2 keeps the mode of its source)."""
    root = Path(folder)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, umask_mode(directory=path.is_dir()))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(parent: str | os.PathLike, prefixes: Iterable[str]) -> list[Path]:
    """Remove entries of `parent` named `<prefix><pid>-...` (made by make_temp_dir) whose process is gone.

    Returns what was removed (logged). Entries without a pid after the prefix, or of a live process, are kept.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for prefix in prefixes:
        pattern = re.compile(re.escape(prefix) + r"(\d+)-")
        for entry in parent.iterdir():
            match = pattern.match(entry.name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.info("Removed %d temporary folder(s) left by an interrupted run: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def replace_dir(staging: Path, target: Path, old_prefix: str | None = None) -> None:
    """Move the complete folder `staging` to `target`, replacing an earlier `target` (moved aside first, then
    deleted), so `target` is at every moment either the old complete folder or the new one (or, between the two
    renames, absent)."""
    if target.exists():
        aside = make_temp_dir(target.parent, old_prefix or f".{target.name}.old-")
        os.replace(target, aside / target.name)
        os.replace(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, target)
