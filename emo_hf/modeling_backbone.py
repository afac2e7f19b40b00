"""How a saved model's base backbone and tokenizer are loaded, inside emo_hf and in a saved model's remote code.

    from .modeling_backbone import load_base_backbone, load_saved_tokenizer
    base = load_base_backbone("Qwen/Qwen2.5-0.5B", dtype=torch.float32)    # emo_hf.backbones inside emo_hf

Inside the emo_hf package the loading is emo_hf.backbones' (offline copies, GGUF files converted once to a bf16
folder, per-family pad tokens). This file is also part of the trust_remote_code copy saved next to models (emo_hf.
modeling_files.REMOTE_CODE_FILES), where emo_hf may not be installed: there a small plain-transformers loader does
the same for a folder, a `.gguf` file or a Hub id, and nothing here imports emo_hf by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from .configuration import resolve_pretrained

# Every emo_hf model trains on right-padded batches (the token-budget collator pads right; the families' tokenizers
# are set to the right: emo_hf.backbones.families), so a saved model predicts padding on the right too.
TRAINING_PADDING_SIDE = "right"
# Config keys compared between a saved model and the backbone it is loaded onto.
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "head_dim")

# True in the emo_hf package, False in a saved model's remote-code copy (a `transformers_modules.*` module).
INSIDE_EMO_HF = __name__.startswith("emo_hf.")


def text_backbone(model: nn.Module) -> nn.Module:
    """The text decoder/encoder stack of a loaded model (the language model of a multimodal Mistral 3)."""
    language_model = getattr(model, "language_model", None)
    return language_model if isinstance(language_model, nn.Module) else model



def emo_hf_module(module: str):
    """`emo_hf.<module>`, imported by name: transformers scans a remote-code file's import statements and refuses to
    run it unless every imported package is installed, so this file has no `import emo_hf` statement at all."""
    import importlib

    return importlib.import_module(f"emo_hf.{module}")


def plain_load_backbone(name_or_path: str, gguf_file: str | None = None, *, dtype: torch.dtype | None = None,
                         quantization_config: Any = None, device_map: Any = None) -> PreTrainedModel:
    """The trust_remote_code loader: a folder or `.gguf` file as it is (the GGUF dequantised by transformers, its
    GGUF quantizer detached), else the Hub id's own weights (a GGUF name recorded for an emo_hf offline copy does
    not exist on the Hub: the Hub's original weights are loaded, which the GGUF approximates)."""
    folder, resolved_gguf = resolve_pretrained(name_or_path)
    gguf_file = resolved_gguf or (gguf_file if Path(folder).is_dir() and (Path(folder) / str(gguf_file)).is_file()
                                  else None)
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True, **kwargs)
    if gguf_file:
        model.hf_quantizer = None  # the weights are plain tensors by now; the GGUF quantizer only blocks saving
    missing = [key for key in info.get("missing_keys", ()) if "vision" not in key and "multi_modal" not in key]
    if missing:  # those weights would be random: refuse rather than classify with a half-initialised backbone
        raise ValueError(f"The checkpoint {name_or_path!r} lacks {len(missing)} weight(s) of its backbone, e.g. "
                         f"{sorted(missing)[:5]}: it does not match its config. Check the path / gguf file.")
    backbone = text_backbone(model)
    if backbone is not model and hasattr(model, "vision_tower"):
        del model.vision_tower  # free the vision tower's memory: the classifier reads text only
    return backbone


def load_base_backbone(name_or_path: str, gguf_file: str | None = None, **kwargs: Any) -> PreTrainedModel:
    if INSIDE_EMO_HF:
        return emo_hf_module("backbones.loading").load_pretrained_backbone(name_or_path, gguf_file, **kwargs)
    return plain_load_backbone(name_or_path, gguf_file, **kwargs)


def match_saved_vocab(base: nn.Module, saved: PretrainedConfig | None) -> None:
    """Give the embedding the rows the model was trained with: a pad token that emo_hf added to a vocabulary with no
    reserved one has a row the base checkpoint lacks. Its values never reach the logits (pads come after the text
    under causal attention, or are masked), so the new rows need not be saved."""
    rows = base.get_input_embeddings().weight.shape[0]
    wanted = getattr(saved, "vocab_size", None) if saved is not None else None
    if isinstance(wanted, int) and wanted > rows:
        base.resize_token_embeddings(wanted, mean_resizing=False)


def load_saved_tokenizer(folder: Path, config: PretrainedConfig, trust_remote_code: bool | None = None):
    """The tokenizer saved in a model folder, loaded without ever asking whether to trust remote code.

    `AutoTokenizer.from_pretrained(folder)` alone would read config.json through AutoConfig; where emo_hf is not
    imported (the trust_remote_code copy of this file), `emo_multilabel` is unknown there and config.json's auto_map
    makes transformers prompt "Do you wish to run the custom code? [y/N]" (and wait) before falling back. Passing the
    already loaded config skips that lookup, and trust_remote_code is always given explicitly: True where the user
    already trusted this folder's code (this file runs as remote code, or trust_remote_code=True was passed), False
    otherwise, so a tokenizer with code of its own is refused with an error rather than a prompt.
    """
    trusted = bool(trust_remote_code) or not INSIDE_EMO_HF
    tokenizer = AutoTokenizer.from_pretrained(str(folder), config=config, trust_remote_code=trusted)
    return pad_as_in_training(ensure_pad_token(tokenizer))


def pad_as_in_training(tokenizer):
    """`tokenizer` padding on the side the model was trained with (TRAINING_PADDING_SIDE), also when it is saved again.

    Why: a tokenizer's `padding_side` attribute is not written by `save_pretrained` (only its init kwargs are), so a
    reloaded tokenizer pads on its class's default: GemmaTokenizer's is the left. Gemma 3 270M, trained right-padded on
    the H200, scored validation macro-F1 0.527 in its run and 0.395 reloaded left-padded (docs/results.md, "Decoders";
    with this fix, 0.526 in the run and 0.525 reloaded, H200 2026-12-02); folders saved before it get the side here on
    load.
    emo_hf.backbones.families.set_padding_side does the same for a family's side; not imported here because this file
    also runs as a saved model's remote code, without emo_hf."""
    tokenizer.padding_side = TRAINING_PADDING_SIDE
    tokenizer.init_kwargs["padding_side"] = TRAINING_PADDING_SIDE
    return tokenizer


def ensure_pad_token(tokenizer):
    """A pad token for a tokenizer saved without one (folders saved before emo_hf chose pads per family): eos.
    New models get their family's reserved pad token at load time (emo_hf.backbones.families), saved with them."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"The tokenizer {type(tokenizer).__name__} has no pad, eos or unk token to pad with: "
                             "set one, e.g. tokenizer.pad_token = '<pad>' after adding it to the vocabulary.")
        tokenizer.pad_token = fallback
    return tokenizer


def filler_token_id(tokenizer) -> int:
    """The token an empty row is given: unk, else eos, else bos, whichever is not the pad token. Not the pad token:
    decoders give it a zero embedding (`padding_idx`), and a row holding only a zero vector stays zero through every
    layer, where each RMSNorm's backward multiplies its gradient by 1/sqrt(eps) (~1000): inf within a dozen layers."""
    pad = tokenizer.pad_token_id
    for candidate in (tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None and candidate != pad:
            return int(candidate)
    return int(pad if pad is not None else 0)


def fill_empty_rows(features: list[dict[str, Any]], token_id: int) -> list[dict[str, Any]]:
    """Rows with no tokens at all (a tokenizer that drops unknown words, a text of characters it ignores) become one
    attended `token_id` (see `filler_token_id`). An all-zero attention-mask row breaks attention: cuDNN's fused
    attention returned NaN gradients for the whole batch (seen on an H200, torch 2.11), and a batch of only such rows
    has width 0."""
    out = []
    for f in features:
        if len(f["input_ids"]) == 0:
            f = {**f, "input_ids": [token_id], "attention_mask": [1]}
            if "token_type_ids" in f:
                f["token_type_ids"] = [0]
        out.append(f)
    return out


def fill_empty_tensor_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_id: int,
                           token_type_ids: torch.Tensor | None = None):
    """fill_empty_rows for a batch tokenized elsewhere (transformers' `pipeline(...)` calls the tokenizer itself): a
    row whose attention mask is all zero gets `token_id`, attended, at position 0, where a training collator's
    right-padded `[filler]` row has it; a batch of width 0 becomes width 1. No host sync (torch.where over the first
    column), so it costs a GPU nothing it waits on. Returns (input_ids, attention_mask, token_type_ids)."""
    if input_ids.shape[1] == 0:  # [batch, 0]: every row empty
        input_ids = torch.full((input_ids.shape[0], 1), token_id, dtype=input_ids.dtype, device=input_ids.device)
        attention_mask = torch.ones(input_ids.shape, dtype=attention_mask.dtype, device=input_ids.device)
        if token_type_ids is not None:
            token_type_ids = torch.zeros_like(input_ids)
        return input_ids, attention_mask, token_type_ids
    empty = attention_mask.sum(1) == 0  # [batch]
    first_ids = torch.where(empty, torch.full_like(input_ids[:, 0], token_id), input_ids[:, 0])
    first_mask = torch.where(empty, torch.ones_like(attention_mask[:, 0]), attention_mask[:, 0])
    input_ids = torch.cat([first_ids[:, None], input_ids[:, 1:]], dim=1)
    attention_mask = torch.cat([first_mask[:, None], attention_mask[:, 1:]], dim=1)
    if token_type_ids is not None:
        token_type_ids = torch.cat([torch.where(empty, 0, token_type_ids[:, 0])[:, None], token_type_ids[:, 1:]], 1)
    return input_ids, attention_mask, token_type_ids


def tokenize_for_prediction(tokenizer, texts: list[str], max_length: int, padding: bool | str = True,
                            return_tensors: str | None = "pt"):
    """`texts` tokenized as training's collator sees them: truncated to max_length, a row of no tokens given the one
    filler token (fill_empty_rows), then padded. Without the filler such a row's attention mask is all zero and its
    scores depend on the batch's padding (0.10 apart from training's on a tiny Qwen2 whose tokenizer drops unknown
    words, 2026-12-06)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    if any(len(ids) == 0 for ids in encoded["input_ids"]):
        rows = fill_empty_rows([{k: encoded[k][i] for k in encoded} for i in range(len(texts))],
                               filler_token_id(tokenizer))
        encoded = {k: [row[k] for row in rows] for k in encoded}
    return tokenizer.pad(encoded, padding=padding, return_tensors=return_tensors)


def is_4bit(module: nn.Module) -> bool:
    return any(type(p).__name__ == "Params4bit" for p in module.parameters())


def check_backbone_matches(saved: PretrainedConfig | None, loaded: PretrainedConfig, source: str) -> None:
    if saved is None:
        return
    loaded = loaded.get_text_config()
    diffs = {key: (getattr(saved, key, None), getattr(loaded, key, None)) for key in SHAPE_KEYS
             if getattr(saved, key, None) != getattr(loaded, key, None)}
    if diffs:
        raise ValueError(
            f"The backbone loaded from {source!r} does not match the one this model was trained on "
            f"(saved vs loaded: {diffs}). Pass the right base model: "
            "EmoModelForMultiLabel.from_pretrained(folder, backbone_name_or_path='<the original backbone>')."
        )

