"""Per-family rules, in one table keyed by the backbone's `model_type`: pad token, padding side, pooling, LoRA targets.

    >>> from emo_hf.backbones.families import family_for, choose_pad_token
    >>> family_for("qwen2").pad_candidates[0]
    '<|fim_pad|>'
    >>> choose_pad_token(tokenizer, "qwen2")          # sets tokenizer.pad_token in place
    PadChoice(token='<|fim_pad|>', reason='pad token was the eos token <|endoftext|>', added=False)

Why these rules:
- pad token: a decoder tokenizer usually has none, or reuses eos. Unsloth refuses pad == eos ("Could not find a valid
  pad token"), and a pad that is also eos would hide the end of a text from anything that masks pads by id. Every
  family ships reserved tokens that never occur in text (Qwen `<|fim_pad|>`, Llama-3 `<|finetune_right_pad_id|>`,
  Gemma `<pad>`, Phi-3 `<|placeholder1|>` ...): using one needs no new embedding row. Only when none exists is a
  token added (then the embedding is resized before any quantisation, emo_hf.backbones.gguf / loading).
- padding side: right for every family. Unsloth ignores the attention mask while training, harmless only when the
  pads come after the text (causal attention never looks ahead); BERT-style encoders have absolute positions.
  Last-token pooling finds the last real token on either side (modeling._pool), so a left-padded batch works too.
- pooling: last token for decoders (the only position that has read the whole text), masked mean for encoders.
- LoRA targets: the attention and MLP projections, named per family; a backbone whose Linear layers match none of
  them raises, listing the names it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECODER_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BERT_TARGETS: tuple[str, ...] = ("query", "key", "value", "dense")


@dataclass(frozen=True)
class Family:
    """The rules of one family. `pad_candidates`: exact token strings, or prefixes ending in `*`."""

    name: str
    model_types: tuple[str, ...]
    pooling: str
    lora_targets: tuple[str, ...]
    pad_candidates: tuple[str, ...] = ()
    padding_side: str = "right"
    is_encoder: bool = False


FAMILIES: tuple[Family, ...] = (
    # Mistral Small 3.x (Tekken) has <pad> (id 11); v0.3 SentencePiece tokenizers have [control_N] tokens.
    Family("mistral", ("mistral", "mistral3", "ministral", "mixtral"), "last", DECODER_PROJECTIONS,
           ("<pad>", "[control_*")),
    # Llama 3.x: <|finetune_right_pad_id|> (3.1+), else a reserved special token; SmolLM2 (llama type) has
    # <|endoftext|> distinct from its eos <|im_end|>.
    Family("llama", ("llama",), "last", DECODER_PROJECTIONS,
           ("<|finetune_right_pad_id|>", "<|finetune_right_pad|>", "<|reserved_special_token_*", "<pad>",
            "<|endoftext|>")),
    Family("qwen", ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"), "last", DECODER_PROJECTIONS,
           ("<|fim_pad|>", "<|vision_pad|>", "<|endoftext|>")),
    Family("gemma", ("gemma", "gemma2", "gemma3", "gemma3_text"), "last", DECODER_PROJECTIONS, ("<pad>",)),
    # Phi-3 keeps qkv and gate/up fused.
    Family("phi3", ("phi3",), "last", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
           ("<|placeholder*", "<|dummy_*", "<|endoftext|>")),
    Family("bert", ("bert", "roberta", "xlm-roberta", "camembert", "electra", "nomic_bert", "xlm"), "mean",
           BERT_TARGETS, ("[PAD]", "<pad>"), is_encoder=True),
    Family("albert", ("albert",), "mean", ("query", "key", "value", "dense"), ("<pad>",), is_encoder=True),
    Family("mpnet", ("mpnet",), "mean", ("q", "k", "v", "o", "dense"), ("<pad>",), is_encoder=True),
    Family("distilbert", ("distilbert",), "mean", ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
           ("[PAD]",), is_encoder=True),
    Family("deberta", ("deberta", "deberta-v2"), "mean", ("query_proj", "key_proj", "value_proj", "dense"),
           ("[PAD]",), is_encoder=True),
    Family("modernbert", ("modernbert",), "mean", ("Wqkv", "Wo", "Wi"), ("[PAD]",), is_encoder=True),
)
_BY_TYPE: dict[str, Family] = {t: family for family in FAMILIES for t in family.model_types}
# Any other model type is treated as a decoder with the usual projection names (checked against the model).
DEFAULT_DECODER = Family("decoder", (), "last", DECODER_PROJECTIONS)
# Tried after a family's own candidates (pad-named reserved tokens of other vocabularies).
GENERIC_PAD_CANDIDATES: tuple[str, ...] = ("<pad>", "[PAD]", "<|pad|>", "<PAD>", "<|finetune_right_pad_id|>")
ADDED_PAD_TOKEN = "<|emo_pad|>"


def family_for(model_type: str) -> Family:
    """The family rules for a `model_type` (config.model_type of the text backbone)."""
    return _BY_TYPE.get(model_type, DEFAULT_DECODER)


def is_encoder(model_type: str) -> bool:
    return family_for(model_type).is_encoder


@dataclass(frozen=True)
class PadChoice:
    token: str
    reason: str  # why it was (re)chosen, or "kept"
    added: bool  # a new token was added to the vocabulary (the embedding needs a row for it)


def _eos_ids(tokenizer) -> set[int]:
    ids = tokenizer.eos_token_id
    return {i for i in (ids if isinstance(ids, (list, tuple)) else [ids]) if isinstance(i, int)}


def _candidates(tokenizer, patterns: tuple[str, ...]) -> list[str]:
    vocab = tokenizer.get_vocab()
    found: list[str] = []
    for pattern in patterns:
        if pattern.endswith("*"):
            prefix = pattern[:-1]
            found += sorted((t for t in vocab if t.startswith(prefix)), key=vocab.__getitem__)
        elif pattern in vocab:
            found.append(pattern)
    return found


def choose_pad_token(tokenizer, model_type: str, *, allow_add: bool = True) -> PadChoice:
    """Give `tokenizer` a pad token distinct from eos (in place) and say which and why.

    Kept when it already has one that is not eos. Else the first of the family's reserved tokens, then of the
    generic pad-named ones, then unk, that the vocabulary already has; only when there is none is
    `<|emo_pad|>` added (`added=True`: the caller must give the embedding a row for it before quantising; with
    `allow_add=False` that case raises instead).
    """
    eos = tokenizer.eos_token
    eos_ids = _eos_ids(tokenizer)
    pad, pad_id = tokenizer.pad_token, tokenizer.pad_token_id
    if pad is not None and pad != eos and pad_id not in eos_ids:
        return PadChoice(pad, "kept", False)
    reason = "no pad token" if pad is None else f"pad token was the eos token {pad}"
    family = family_for(model_type)
    choices = _candidates(tokenizer, family.pad_candidates + GENERIC_PAD_CANDIDATES)
    if tokenizer.unk_token is not None:
        choices.append(tokenizer.unk_token)
    for token in choices:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token != eos and isinstance(token_id, int) and token_id not in eos_ids:
            # As a special token: never split or normalised, and listed where Unsloth's own check looks.
            tokenizer.add_special_tokens({"pad_token": token})
            return PadChoice(token, reason, False)
    if not allow_add:
        raise ValueError(f"The {model_type} tokenizer has {reason} and no reserved token to pad with; a new one "
                         "would need an embedding row. Load the backbone unquantised once so emo_hf can add it.")
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    return PadChoice(ADDED_PAD_TOKEN, reason, True)


def prepare_tokenizer(tokenizer, model_type: str, *, allow_add: bool = True) -> PadChoice:
    """The family's pad token and padding side on `tokenizer` (in place)."""
    choice = choose_pad_token(tokenizer, model_type, allow_add=allow_add)
    set_padding_side(tokenizer, family_for(model_type).padding_side)
    return choice


def set_padding_side(tokenizer, side: str) -> None:
    """`tokenizer.padding_side = side`, kept by `save_pretrained` too (it writes the init kwargs, not the attribute: a
    reloaded GemmaTokenizer would pad left otherwise)."""
    tokenizer.padding_side = side
    tokenizer.init_kwargs["padding_side"] = side


def linear_module_names(model: Any) -> list[str]:
    """The distinct last names of the model's Linear layers (4-bit Linear4bit subclasses nn.Linear)."""
    from torch import nn

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and name})


def lora_targets(model_type: str, model: Any = None, requested: list[str] | None = None) -> list[str]:
    """The LoRA target module names: `requested`, else the family's; checked against `model`'s Linear layers
    (when given), raising with the names it has when none matches."""
    targets = list(requested) if requested else list(family_for(model_type).lora_targets)
    if model is not None:
        names = linear_module_names(model)
        full = [name for name, _ in model.named_modules()]
        if not any(n == t or n.endswith("." + t) for t in targets for n in full):
            raise ValueError(f"No LoRA target {targets} matches a layer of this {model_type!r} backbone. Its Linear "
                             f"layers are named {names}: pass lora target_modules from those, e.g. "
                             f"LoraSettings(target_modules={names[:2]}).")
    return targets
