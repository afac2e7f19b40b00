"""Sentence embeddings for balancing, with an on-disk cache keyed by encoder and text.

    >>> from emo_hf.data.embedding import embed_texts
    >>> vectors = embed_texts(["I love it", "so scared"])      # float32 [2, 384] with the default MiniLM
    >>> vectors = embed_texts(["I love it"])                   # second call: read from the cache, no model load

The cache lives in `$EMO_HF_CACHE/embeddings` (default `~/.cache/emo_hf/embeddings`), one folder per encoder, holding
shards `*.npz` of (sha1 of text, vector). The texts to embed are encoded in chunks of `shard_size` texts
(`$EMO_HF_EMBED_SHARD_SIZE`, default 4096), each saved as its own shard as soon as it is done, so a killed build keeps
every finished chunk and a rerun embeds only the rest (the chunks are cut the same way on the rerun, so the vectors
are the same as an uninterrupted run's). A shard is written to a temporary name (`.shard-<pid>-*.tmp`) and renamed
into place, so a crash never leaves a half-written shard; temporary files of dead processes are removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..configuration import resolve_pretrained

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SHARD_SIZE_ENV = "EMO_HF_EMBED_SHARD_SIZE"
# 32 batches of 128 texts per shard: the 54,263 GoEmotions texts make 14 shards.
DEFAULT_SHARD_SIZE = 4096


def default_cache_dir() -> Path:
    """`$EMO_HF_CACHE/embeddings`, else `~/.cache/emo_hf/embeddings`."""
    root = os.environ.get("EMO_HF_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "emo_hf") / "embeddings"


def encoder_key(encoder: str) -> str:
    """A file-system-safe cache folder name for an encoder: the Hub id as given, or a local folder's absolute path."""
    path = Path(encoder).expanduser()
    name = str(path.resolve()) if path.exists() else encoder
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/"))[-60:]
    return f"{readable}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:10]}"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _load_cache(folder: Path) -> dict[str, np.ndarray]:
    cache: dict[str, np.ndarray] = {}
    for shard in sorted(folder.glob("*.npz")):
        try:
            with np.load(shard) as data:
                for key, vector in zip(data["keys"], data["vectors"]):
                    cache[str(key)] = vector
        except (OSError, ValueError, KeyError) as error:  # a corrupt shard only costs a re-embedding
            logger.warning("ignoring unreadable embedding cache shard %s (%s)", shard, error)
    return cache


def _write_shard(folder: Path, keys: list[str], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1("".join(keys).encode()).hexdigest()[:16]
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".shard-{os.getpid()}-", suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, keys=np.array(keys), vectors=vectors.astype(np.float32))
    from ..atomic import fix_file_mode

    fix_file_mode(temporary)  # mkstemp makes 0600: the shard gets the umask's mode like any other file
    os.replace(temporary, folder / f"{name}.npz")


def _remove_dead_temporaries(folder: Path) -> None:
    """`.shard-<pid>-*.tmp` files of processes that are gone (killed while writing a shard); only this module's names."""
    for leftover in folder.glob(".shard-*-*.tmp"):
        try:
            pid = int(leftover.name.split("-")[1])
            os.kill(pid, 0)
        except ValueError:
            continue  # not a name this module writes
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except PermissionError:
            continue  # a live process of another user


def shard_size() -> int:
    """Texts per cache shard: `$EMO_HF_EMBED_SHARD_SIZE`, default 4096."""
    value = os.environ.get(SHARD_SIZE_ENV, "")
    try:
        size = int(value) if value else DEFAULT_SHARD_SIZE
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"${SHARD_SIZE_ENV}={value!r} must be a positive number of texts, e.g. {DEFAULT_SHARD_SIZE}.")
    return size


def load_encoder(encoder: str = DEFAULT_ENCODER, device: str | None = None):
    """A `SentenceTransformer` for a Hub id or local folder (bundled offline copies are used when installed), on the
    GPU when there is one unless `device` says otherwise."""
    import torch
    from sentence_transformers import SentenceTransformer

    location, _ = resolve_pretrained(encoder)
    return SentenceTransformer(location, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


def embed_texts(
    texts: Sequence[str],
    encoder: str = DEFAULT_ENCODER,
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
    show_progress: bool = True,
    model=None,
) -> np.ndarray:
    """Embed `texts` with a sentence encoder -> float32 array [len(texts), dim].

    Texts already in the cache for this encoder are not embedded again; new ones are embedded (deduplicated) in
    chunks of `shard_size()` texts, each added to the cache as a shard when done. `cache_dir` None means
    `default_cache_dir()`. `model` lets a caller reuse a loaded SentenceTransformer (`load_encoder(...)`).
    """
    texts = [str(t) for t in texts]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / encoder_key(encoder)
    if folder.is_dir():
        _remove_dead_temporaries(folder)
    cache = _load_cache(folder) if folder.is_dir() else {}
    keys = [text_key(t) for t in texts]
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if key not in cache and key not in missing:
            missing[key] = text
    logger.info("embeddings: %d texts, %d cached, %d to embed with %s", len(texts), len(texts) - len(missing), len(missing), encoder)
    if missing:
        from tqdm.auto import tqdm

        model = model or load_encoder(encoder)
        new_keys, size = list(missing), shard_size()
        bar = tqdm(total=len(new_keys), desc="embedding", unit="text", disable=not show_progress)
        for start in range(0, len(new_keys), size):
            chunk = new_keys[start:start + size]
            vectors = model.encode(
                [missing[k] for k in chunk], batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True,
            ).astype(np.float32)  # [len(chunk), dim]
            _write_shard(folder, chunk, vectors)  # kept even if the process dies during the next chunk
            cache.update(zip(chunk, vectors))
            bar.update(len(chunk))
        bar.close()
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cache[k] for k in keys]).astype(np.float32, copy=False)  # [n, dim]
