"""Where the real GoEmotions folder is: $EMO_HF_GOEMOTIONS, else ../shared/goemotions next to the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def goemotions_dir() -> Path | None:
    """The folder holding the official train.tsv / dev.tsv / test.tsv / labels.txt, or None when it is missing."""
    candidate = Path(os.environ.get("EMO_HF_GOEMOTIONS") or REPO.parent / "shared" / "goemotions").expanduser()
    return candidate if (candidate / "train.tsv").is_file() else None


SKIP_REASON = (
    "real GoEmotions folder not found: set EMO_HF_GOEMOTIONS to the folder with train.tsv, dev.tsv, test.tsv and "
    f"labels.txt (default {REPO.parent / 'shared' / 'goemotions'})"
)


def write_goemotions_slice(folder: Path, train: int, dev: int, test: int) -> Path:
    """A GoEmotions folder (official format) holding the first rows of the real files, for fast end-to-end tests.
    The caller skips when `goemotions_dir()` is None."""
    source = goemotions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_bytes((source / "labels.txt").read_bytes())
    for name, rows in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    return folder
