"""EmoModelForMultiLabel: a language-model backbone, pooled, with a multi-label `score` head and focal loss.

    >>> from emo_hf.modeling import EmoModelForMultiLabel
    >>> model = EmoModelForMultiLabel.from_backbone("HuggingFaceTB/SmolLM2-135M-Instruct", labels=["joy", "anger"])
    >>> model.predict(["What a lovely day!"])          # [{'labels': [...], 'probabilities': {'joy': 0.51, ...}}]
    >>> model.save_pretrained("my-model")              # then AutoModel.from_pretrained("my-model", trust_remote_code=True)

This file is copied next to saved models for `trust_remote_code=True`: it imports `.configuration` relatively and
nothing from `emo_hf`, so everything needed to load a saved model and predict lives in these two files.

Saved folder layout (`save_pretrained`) and why:
    config.json                 EmoConfig (labels, thresholds, backbone id + its config, LoRA settings, auto_map)
    thresholds.json             {label: threshold}, readable and editable (it wins over config.json when loading)
    head.safetensors            `score.*` and `projection.*` only, float32, with the labels in its metadata
    adapter/adapter_config.json         the LoRA adapter in PEFT's own layout, *for the backbone alone*: its keys
    adapter/adapter_model.safetensors   are those of `PeftModel(backbone)`, so plain peft can also apply it to the
                                base model (`PeftModel.from_pretrained(base, folder, subfolder="adapter")`). The head is
                                not part of the backbone, hence its own file rather than PEFT's modules_to_save (which
                                would tie the adapter to this wrapper's module names). In a sub-folder, not at the
                                root: transformers' `AutoModel.from_pretrained(hub_id)` takes a repo with a root-level
                                adapter_config.json for a PEFT adapter repo and loads the bare base model instead.
                                (Folders saved with the adapter at the root still load locally with from_pretrained.)
    backbone.safetensors        optional: the whole backbone (default when no LoRA is applied and it is not 4-bit);
                                otherwise the base weights are loaded from `backbone_name_or_path` (Hub or offline).
    tokenizer files, configuration.py, modeling.py
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import PROMPT_QUESTION, EmoConfig, resolve_pretrained

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"
ADAPTER_DIR = "adapter"  # sub-folder of the LoRA adapter files (never the root: see the module docstring)
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
THRESHOLDS_FILE = "thresholds.json"
# Every emo_hf model trains on right-padded batches (the token-budget collator pads right; the families' tokenizers
# are set to the right: emo_hf.backbones.families), so a saved model predicts padding on the right too.
TRAINING_PADDING_SIDE = "right"
ADAPTER_NAME = "default"  # PEFT's default adapter name, used by peft and Unsloth alike
# Config keys compared between a saved model and the backbone it is loaded onto.
_SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "head_dim")


# The instruction prompt's shared prefix, run once per batch (training only: emo_hf.shared_prefix decides when and
# tests/test_shared_prefix.py checks it against whole rows). The attention function's name in transformers' registry
# (AttentionInterface), set on the backbone's config only for the duration of a packed call
# (EmoModelForMultiLabel._backbone_with_shared_prefix): every other call keeps the backbone's own attention.
_PACKED_ATTENTION = "emo_shared_prefix"


def _packed_inputs(input_ids, attention_mask, prefix: int):
    """A right-padded batch [B, P + L] whose rows all begin with the same P tokens, packed for one backbone call:
    (input_ids [1, P + B*L]: the prefix once, then each row's L own tokens; position_ids [1, P + B*L]: 0..P-1, then
    P..P+L-1 for every row; mask [B, 1, L, P + L] bool: row b's query i sees the whole prefix and its own tokens j <= i
    that are not padding)."""
    rows, width = input_ids.shape
    own = width - prefix
    device = input_ids.device
    ids = torch.cat([input_ids[0, :prefix], input_ids[:, prefix:].reshape(-1)]).unsqueeze(0)
    positions = torch.arange(width, device=device)
    position_ids = torch.cat([positions[:prefix], positions[prefix:].repeat(rows)]).unsqueeze(0)
    causal = torch.ones(own, own, dtype=torch.bool, device=device).tril()  # [L, L]
    own_keys = attention_mask[:, prefix:].bool()  # [B, L]
    mask = torch.cat([torch.ones(rows, own, prefix, dtype=torch.bool, device=device),
                      causal.unsqueeze(0) & own_keys.unsqueeze(1)], dim=2).unsqueeze(1)  # [B, 1, L, P + L]
    return ids, position_ids, mask


def _shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                             shared_prefix_mask=None, **kwargs):
    """Attention over a packed batch (`_packed_inputs`), in transformers' attention-function signature: query [1, H,
    P + B*L, d], key / value [1, H_kv, P + B*L, d] (rotary already applied) -> ([1, P + B*L, H, d], None). Without
    `shared_prefix_mask` (an unpacked call) it is transformers' SDPA attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if shared_prefix_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    rows, own, width = shared_prefix_mask.shape[0], shared_prefix_mask.shape[2], shared_prefix_mask.shape[3]
    prefix = width - own
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)

    def per_row(x):  # [1, H, B*L, d] -> [B, H, L, d]
        return x.unflatten(2, (rows, own)).squeeze(0).transpose(0, 1)

    ahead = F.scaled_dot_product_attention(query[:, :, :prefix], key[:, :, :prefix], value[:, :, :prefix],
                                           is_causal=True, scale=scaling)  # [1, H, P, d]
    keys = torch.cat([key[:, :, :prefix].expand(rows, -1, -1, -1), per_row(key[:, :, prefix:])], dim=2)
    values = torch.cat([value[:, :, :prefix].expand(rows, -1, -1, -1), per_row(value[:, :, prefix:])], dim=2)
    own_out = F.scaled_dot_product_attention(per_row(query[:, :, prefix:]), keys, values,
                                             attn_mask=shared_prefix_mask, scale=scaling)  # [B, H, L, d]
    out = torch.cat([ahead, own_out.transpose(0, 1).flatten(1, 2).unsqueeze(0)], dim=2)  # [1, H, P + B*L, d]
    return out.transpose(1, 2).contiguous(), None


def _register_packed_attention() -> str:
    """Register `_shared_prefix_attention` with transformers under `_PACKED_ATTENTION` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(_PACKED_ATTENTION, _shared_prefix_attention)
    return _PACKED_ATTENTION


# ----------------------------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------------------------
def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0,
               alpha: torch.Tensor | Sequence[float] | None = None,
               row_weight: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean sigmoid focal loss (Lin et al., 2017) over every (example, label) pair.

    With p = sigmoid(z), y in {0, 1} (soft targets in [0, 1] also work):
        p_t     = p if y = 1 else 1 - p                  (computed as exp(-BCE(z, y)), numerically stable)
        alpha_t = alpha_l if y = 1 else 1 - alpha_l      (alpha per label l; 1 when alpha is None)
        loss    = mean( -alpha_t * (1 - p_t)^gamma * log(p_t) ) = mean( alpha_t * (1 - p_t)^gamma * BCE(z, y) )
    gamma = 0 and alpha = None give exactly `F.binary_cross_entropy_with_logits(z, y)`.

    logits, labels: [batch, num_labels]; alpha: [num_labels] or None; row_weight: [batch] or None, the mean then
    taken over the rows in proportion to it (0 for the filler rows that give every training batch of a bucket one
    shape: emo_hf.batching.FixedShapeCollator).
    """
    labels = labels.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # [batch, num_labels]
    loss = bce
    if gamma != 0:
        p_t = torch.exp(-bce)
        loss = (1.0 - p_t).pow(gamma) * loss
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)  # [num_labels]
        loss = (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss
    if row_weight is not None:
        row_weight = row_weight.to(device=loss.device, dtype=loss.dtype)  # [batch]
        return (loss.mean(dim=1) * row_weight).sum() / row_weight.sum()
    return loss.mean()


@dataclass
class EmoModelOutput(ModelOutput):
    """`loss` (scalar, when labels are given) and `logits` [batch, num_labels]."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Backbone helpers
# ----------------------------------------------------------------------------------------------------------------------
def text_backbone(model: nn.Module) -> nn.Module:
    """The text decoder/encoder stack of a loaded model (the language model of a multimodal Mistral 3)."""
    language_model = getattr(model, "language_model", None)
    return language_model if isinstance(language_model, nn.Module) else model


# Loading a saved model's base backbone. Inside emo_hf this is emo_hf.backbones (offline copies, GGUF files converted
# once to a bf16 folder, per-family pad tokens). This file is also the trust_remote_code copy saved next to models,
# where emo_hf may not be installed and which may import only `.configuration`: there a small plain-transformers
# loader does the same for a folder, a `.gguf` file or a Hub id.
_INSIDE_EMO_HF = __name__ == "emo_hf.modeling"


def _emo_hf(module: str):
    """`emo_hf.<module>`, imported by name: transformers scans a remote-code file's import statements and refuses to
    run it unless every imported package is installed, so this file has no `import emo_hf` statement at all."""
    import importlib

    return importlib.import_module(f"emo_hf.{module}")


def _plain_load_backbone(name_or_path: str, gguf_file: str | None = None, *, dtype: torch.dtype | None = None,
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


def _load_base_backbone(name_or_path: str, gguf_file: str | None = None, **kwargs: Any) -> PreTrainedModel:
    if _INSIDE_EMO_HF:
        return _emo_hf("backbones.loading").load_pretrained_backbone(name_or_path, gguf_file, **kwargs)
    return _plain_load_backbone(name_or_path, gguf_file, **kwargs)


def _match_saved_vocab(base: nn.Module, saved: PretrainedConfig | None) -> None:
    """Give the embedding the rows the model was trained with: a pad token that emo_hf added to a vocabulary with no
    reserved one has a row the base checkpoint lacks. Its values never reach the logits (pads come after the text
    under causal attention, or are masked), so the new rows need not be saved."""
    rows = base.get_input_embeddings().weight.shape[0]
    wanted = getattr(saved, "vocab_size", None) if saved is not None else None
    if isinstance(wanted, int) and wanted > rows:
        base.resize_token_embeddings(wanted, mean_resizing=False)


def _load_saved_tokenizer(folder: Path, config: PretrainedConfig, trust_remote_code: bool | None = None):
    """The tokenizer saved in a model folder, loaded without ever asking whether to trust remote code.

    `AutoTokenizer.from_pretrained(folder)` alone would read config.json through AutoConfig; where emo_hf is not
    imported (the trust_remote_code copy of this file), `emo_multilabel` is unknown there and config.json's auto_map
    makes transformers prompt "Do you wish to run the custom code? [y/N]" (and wait) before falling back. Passing the
    already loaded config skips that lookup, and trust_remote_code is always given explicitly: True where the user
    already trusted this folder's code (this file runs as remote code, or trust_remote_code=True was passed), False
    otherwise, so a tokenizer with code of its own is refused with an error rather than a prompt.
    """
    trusted = bool(trust_remote_code) or not _INSIDE_EMO_HF
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


def _is_4bit(module: nn.Module) -> bool:
    return any(type(p).__name__ == "Params4bit" for p in module.parameters())


def _check_backbone_matches(saved: PretrainedConfig | None, loaded: PretrainedConfig, source: str) -> None:
    if saved is None:
        return
    loaded = loaded.get_text_config()
    diffs = {key: (getattr(saved, key, None), getattr(loaded, key, None)) for key in _SHAPE_KEYS
             if getattr(saved, key, None) != getattr(loaded, key, None)}
    if diffs:
        raise ValueError(
            f"The backbone loaded from {source!r} does not match the one this model was trained on "
            f"(saved vs loaded: {diffs}). Pass the right base model: "
            "EmoModelForMultiLabel.from_pretrained(folder, backbone_name_or_path='<the original backbone>')."
        )


# LoRA weights of the backbone in PEFT's saved layout: "base_model.model.<module path>.lora_A.weight" on disk,
# "<module path>.lora_A.default.weight" in the live module (peft and Unsloth both name the adapter "default").
def _is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def lora_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's LoRA weights with PEFT's on-disk names."""
    state = {}
    for key, value in backbone.state_dict().items():
        if not _is_lora_key(key):
            continue
        parts = key.split(".")
        parts = [p for i, p in enumerate(parts) if not (p == ADAPTER_NAME and i and parts[i - 1].startswith("lora_"))]
        state["base_model.model." + ".".join(parts)] = value.detach().to("cpu").contiguous()
    return state


def _to_live_lora_key(key: str) -> str:
    parts = key.removeprefix("base_model.model.").split(".")
    out = []
    for i, part in enumerate(parts):
        out.append(part)
        if part.startswith("lora_") and (i + 1 >= len(parts) or parts[i + 1] != ADAPTER_NAME):
            out.append(ADAPTER_NAME)
    return ".".join(out)


def find_adapter_folder(folder: Path) -> Path | None:
    """The folder holding the LoRA adapter of the saved model `folder`: `folder/adapter`, or `folder` itself for a
    model saved with the adapter at the root (older layout); None when there is no complete adapter."""
    for candidate in (folder / ADAPTER_DIR, folder):
        if (candidate / ADAPTER_CONFIG_FILE).is_file() and (candidate / ADAPTER_WEIGHTS_FILE).is_file():
            return candidate
    return None


def load_lora_adapter(backbone: nn.Module, folder: Path) -> None:
    """Inject the LoRA adapter saved in `folder` (the adapter's own folder: adapter_config.json and
    adapter_model.safetensors) into `backbone` (in place) and load its weights, strictly."""
    from peft import LoraConfig, inject_adapter_in_model

    lora_config = LoraConfig.from_pretrained(str(folder))
    inject_adapter_in_model(lora_config, backbone, adapter_name=ADAPTER_NAME)
    saved = _read_weights(folder / ADAPTER_WEIGHTS_FILE)
    live_keys = {k for k in backbone.state_dict() if _is_lora_key(k)}
    state = {_to_live_lora_key(k): v for k, v in saved.items()}
    missing, unexpected = sorted(live_keys - set(state)), sorted(set(state) - live_keys)
    if missing or unexpected:
        raise ValueError(f"The LoRA adapter in {str(folder)!r} does not fit the backbone: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]} ({len(missing)} / {len(unexpected)} in all). "
                         "Was it saved from a different backbone? Check backbone_name_or_path in config.json.")
    # Linear4bit LoRA layers keep their adapter weights in the compute dtype; load_state_dict copies (and casts).
    backbone.load_state_dict(state, strict=False)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` whose error names the file (a truncated copy says only "incomplete metadata")."""
    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError (not importable by name across versions), OSError
        raise ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; copy it "
                         "again or save the model again") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix it or save the model again") from None


def _respect_umask(folder: Path) -> None:
    """Give `folder` and everything in it the modes the umask asks for (0755 / 0644 under umask 022): safetensors
    writes its files 0600 and mkdtemp makes 0700, whatever the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


# ----------------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------------
class EmoModelForMultiLabel(PreTrainedModel):
    """A backbone (decoder or encoder), pooled, then dropout and a linear `score` head: one logit per emotion.

    `input_mode="text"`: `forward(input_ids, attention_mask)`. `input_mode="embedding"`: `forward(sentence_embeddings)`
    where a [batch, encoder_dim] sentence vector goes through the `projection` MLP into `num_soft_tokens` soft tokens
    given to the backbone as `inputs_embeds`. `__init__` builds a random backbone from `config.backbone_config` (or
    takes one already loaded); use `from_backbone` for pretrained weights and `from_pretrained` for a saved model.
    """

    config_class = EmoConfig
    base_model_prefix = "emo"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: EmoConfig, backbone: nn.Module | None = None):
        super().__init__(config)
        if backbone is None:
            if config.backbone_config is None:
                raise ValueError("EmoConfig.backbone_config is None: give the backbone's config, e.g. "
                                 "EmoConfig(labels=[...], backbone_config=AutoConfig.from_pretrained(name)), or "
                                 "use EmoModelForMultiLabel.from_backbone(name, labels=[...]).")
            backbone = text_backbone(AutoModel.from_config(config.backbone_config))
        self.backbone = backbone
        hidden = self.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.score = nn.Linear(hidden, config.num_labels)
        if config.input_mode == "embedding":
            self.projection = nn.Sequential(
                nn.Linear(config.encoder_dim, config.projection_hidden_size),
                nn.GELU(),
                nn.Linear(config.projection_hidden_size, config.num_soft_tokens * hidden),
            )
        else:
            self.projection = None
        # The backbone is initialised already (from its config or its checkpoint, LoRA layers included): flag it
        # so post_init initialises only the head and projection.
        for module in self.backbone.modules():
            module._is_hf_initialized = True
        self.post_init()
        self.tokenizer = None
        self._warned_truncation = False
        self._encoder = None  # sentence-transformers model for embedding-mode predict, loaded on first use

    # -- structure -----------------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.get_text_config().hidden_size)

    def _init_weights(self, module: nn.Module) -> None:
        # Called only for the head and projection (the backbone's modules are flagged as initialised).
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def _mark_if_quantized(self) -> None:
        # Tells transformers' Trainer not to `.to()` the model (it is placed already; bitsandbytes weights stay put).
        if _is_4bit(self.backbone):
            from transformers.utils.quantization_config import QuantizationMethod

            self.quantization_method = QuantizationMethod.BITS_AND_BYTES

    @property
    def has_lora(self) -> bool:
        return any("lora_" in name for name, _ in self.backbone.named_parameters())

    # -- forward -------------------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                sentence_embeddings: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                shared_prefix_length: int | None = None, row_weight: torch.Tensor | None = None,
                **kwargs: Any) -> EmoModelOutput:
        """Logits [batch, num_labels] and, with `labels` [batch, num_labels] (0/1 floats), the focal loss.

        Text mode: `input_ids`, `attention_mask` [batch, seq] (left or right padded; longer than max_length is
        cut, with one warning). Embedding mode: `sentence_embeddings` [batch, encoder_dim].
        `shared_prefix_length` P (a decoder, right-padded rows that all begin with the same P attended tokens and hold
        at least one more; emo_hf.shared_prefix.mark_shared_prefix checks that on the CPU): the first P tokens are
        run once for the batch instead of once per row (`_backbone_with_shared_prefix`); the logits are the same.
        `row_weight` [batch] (training batches padded to one shape per bucket): each row's share of the loss, 0 for
        filler rows. Other keyword arguments (e.g. the Trainer's `num_items_in_batch`) are ignored.
        """
        config = self.config
        extra: dict[str, Any] = {} if config.is_encoder_backbone else {"use_cache": False}
        if config.input_mode == "embedding":
            if sentence_embeddings is None:
                raise ValueError("This model has input_mode='embedding': call it with sentence_embeddings="
                                 f"<float tensor [batch, {config.encoder_dim}]>, not input_ids.")
            if sentence_embeddings.dim() != 2 or sentence_embeddings.shape[-1] != config.encoder_dim:
                raise ValueError(f"sentence_embeddings has shape {tuple(sentence_embeddings.shape)}; expected "
                                 f"[batch, {config.encoder_dim}] (encoder {config.encoder_name!r}).")
            embed_weight = self.get_input_embeddings().weight
            first = self.projection[0].weight
            soft = self.projection(sentence_embeddings.to(device=first.device, dtype=first.dtype))
            inputs_embeds = soft.view(soft.shape[0], config.num_soft_tokens, self.hidden_size)  # [batch, T, hidden]
            inputs_embeds = inputs_embeds.to(device=embed_weight.device, dtype=embed_weight.dtype)
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
            out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **extra)
        else:
            if input_ids is None:
                raise ValueError("This model has input_mode='text': call it with input_ids (and attention_mask), "
                                 "e.g. model(**model.tokenize(['I love it'])).")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            input_ids, attention_mask, token_type_ids = self._cut_to_max_length(input_ids, attention_mask,
                                                                                token_type_ids)
            if token_type_ids is not None:
                extra["token_type_ids"] = token_type_ids
            if shared_prefix_length and input_ids.shape[1] > shared_prefix_length and not config.is_encoder_backbone:
                out = self._backbone_with_shared_prefix(input_ids, attention_mask, shared_prefix_length)
                attention_mask = attention_mask[:, shared_prefix_length:]  # the rows' own tokens, as out[0]
            else:
                out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        hidden_states = out[0]  # [batch, seq, hidden], after the final norm
        pooled = self._pool(hidden_states, attention_mask.to(hidden_states.device))  # [batch, hidden]
        logits = self.score(self.dropout(pooled.to(device=self.score.weight.device, dtype=self.score.weight.dtype)))
        loss = None
        if labels is not None:
            loss = focal_loss(logits.float(), labels.to(logits.device).float(), config.focal_gamma, config.focal_alpha,
                              row_weight)
        return EmoModelOutput(loss=loss, logits=logits)

    def _backbone_with_shared_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: int):
        """The decoder's output for the rows' own tokens, as a 1-tuple ([batch, seq - prefix, hidden],), the shared
        first `prefix` tokens (the instruction prompt's template and question: 30 of Qwen2.5's ~58 tokens per
        GoEmotions row) computed once for the batch. Exact under causal attention (no token before position `prefix`
        sees a later one, so the prefix is the same in every row): the batch goes through the backbone as one packed
        sequence, the prefix once and then every row's own tokens (`_packed_inputs`), with `_shared_prefix_attention`
        (the rows read the prefix's keys and values; gradients reach the prefix summed over the rows). Training only:
        emo_hf.shared_prefix's collator marks such batches."""
        rows, width = input_ids.shape
        ids, position_ids, mask = _packed_inputs(input_ids, attention_mask, prefix)  # [1,P+BL] [1,P+BL] [B,1,L,P+L]
        config = self.backbone.config
        own_attention = config._attn_implementation
        config._attn_implementation = _register_packed_attention()  # for this call only; not saved in config.json
        try:
            out = self.backbone(input_ids=ids, position_ids=position_ids, attention_mask=None, use_cache=False,
                                shared_prefix_mask=mask)
        finally:
            config._attn_implementation = own_attention
        return (out[0][0, prefix:].unflatten(0, (rows, width - prefix)),)  # [B, L, hidden]

    def _pool(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # [batch, seq, 1]
            return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1)
        # Last non-padding position = the largest index whose mask is 1: right (…, x, pad) or left (pad, …, x) padding.
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)  # [batch]
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]

    def _cut_to_max_length(self, input_ids, attention_mask, token_type_ids):
        # Over-long batches crash Unsloth with a device-side assert: never let one reach the backbone.
        max_length = self.config.max_length
        if input_ids.shape[1] <= max_length:
            return input_ids, attention_mask, token_type_ids
        self._warn_truncation(f"a batch of {input_ids.shape[1]} tokens")
        left_padded = bool((attention_mask[:, 0] == 0).any()) and bool((attention_mask[:, -1] == 1).all())
        part = slice(-max_length, None) if left_padded else slice(0, max_length)
        return (input_ids[:, part], attention_mask[:, part],
                None if token_type_ids is None else token_type_ids[:, part])

    def _warn_truncation(self, what: str) -> None:
        if not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(f"{what} is longer than max_length={self.config.max_length} tokens and was truncated "
                          "(warned once per model).", stacklevel=3)

    # -- inputs --------------------------------------------------------------------------------------------------------
    @staticmethod
    def check_texts(texts: Sequence[str] | str) -> list[str]:
        """`texts` as a list, or a ValueError naming the first empty / None / non-string entry and its index."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] is {text!r} ({type(text).__name__}), not a string: pass a list of "
                                 "non-empty strings, e.g. model.predict(['I love it', 'So sad']).")
            if not text.strip():
                raise ValueError(f"texts[{i}] is empty ({text!r}): remove it or pass some words, e.g. "
                                 "model.predict(['I love it']).")
        return texts

    def format_texts(self, texts: Sequence[str]) -> list[str]:
        """The texts as the backbone reads them (config.prompt): as they are, or as a chat-template user turn
        "Which emotions does this text express?" + the text (a plain "Text: ... Emotions:" frame without a template)."""
        texts = list(texts)
        if self.config.prompt != "instruction":
            return texts
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            bos = tokenizer.bos_token or ""
            out = []
            for text in texts:
                wrapped = tokenizer.apply_chat_template([{"role": "user", "content": f"{PROMPT_QUESTION}\n\n{text}"}],
                                                        tokenize=False, add_generation_prompt=True)
                # The tokenizer adds its BOS itself: a template that writes it too would give two.
                out.append(wrapped[len(bos):] if bos and wrapped.startswith(bos) else wrapped)
            return out
        return [f"{PROMPT_QUESTION}\nText: {text}\nEmotions:" for text in texts]

    def tokenize(self, texts: Sequence[str] | str, return_tensors: str | None = "pt", padding: bool | str = True):
        """Tokenize (config.prompt applied; truncating to max_length, with one warning if any text is longer)."""
        if self.tokenizer is None:
            raise ValueError("This model has no tokenizer attached: set model.tokenizer = AutoTokenizer."
                             "from_pretrained(<backbone>) or load it with from_backbone / from_pretrained.")
        texts = self.format_texts(self.check_texts(texts))
        max_length = self.config.max_length
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > max_length]
        if too_long:
            self._warn_truncation(f"texts[{too_long[0]}] ({lengths[too_long[0]]} tokens)")
        return self.tokenizer(texts, truncation=True, max_length=max_length, padding=padding,
                              return_tensors=return_tensors)

    def sentence_encoder(self):
        """The sentence-transformers encoder named in the config (embedding mode), loaded once, offline if possible."""
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:  # kept in try/except so trust_remote_code does not require it
                raise ImportError("Embedding-mode prediction needs sentence-transformers: "
                                  "pip install sentence-transformers") from error
            folder, _ = resolve_pretrained(self.config.encoder_name)
            self._encoder = SentenceTransformer(folder, device=str(self.score.weight.device))
        return self._encoder

    def embed(self, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """Sentence vectors [n, encoder_dim] from the config's encoder (sentence-transformers `encode` defaults)."""
        texts = self.check_texts(texts)
        vectors = self.sentence_encoder().encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                                 show_progress_bar=False)
        if vectors.shape[1] != self.config.encoder_dim:
            raise ValueError(f"The encoder {self.config.encoder_name!r} gives {vectors.shape[1]}-dim vectors but the "
                             f"model expects encoder_dim={self.config.encoder_dim}.")
        return vectors

    # -- prediction ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """Probabilities [len(texts), num_labels] in label order (`model.config.labels`), rows in the order given.

        Text mode batches the texts longest first (sorted by token count) and puts the rows back in order: batches of
        similar lengths carry little padding (1.50x the unsorted batches for the 24B shape on an H200,
        docs/benchmarks.md).
        """
        texts = self.check_texts(texts)
        was_training = self.training
        self.eval()
        device = self.get_input_embeddings().weight.device
        order = np.arange(len(texts))
        if self.config.input_mode == "text" and len(texts) > 1 and self.tokenizer is not None:
            lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True,
                                                          max_length=self.config.max_length)["input_ids"]]
            order = np.argsort(-np.asarray(lengths), kind="stable")
        chunks = []
        try:
            for start in range(0, len(texts), batch_size):
                batch = [texts[i] for i in order[start:start + batch_size]]
                if self.config.input_mode == "embedding":
                    vectors = torch.as_tensor(self.embed(batch, batch_size=batch_size), dtype=torch.float32)
                    logits = self(sentence_embeddings=vectors.to(device)).logits
                else:
                    encoded = self.tokenize(batch)
                    logits = self(**{k: v.to(device) for k, v in encoded.items()}).logits
                chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
        finally:
            self.train(was_training)
        if not chunks:
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        sorted_probs = np.concatenate(chunks)
        probabilities = np.empty_like(sorted_probs)
        probabilities[order] = sorted_probs  # row k of the sorted batches is text order[k]
        return probabilities

    def predict(self, texts: Sequence[str] | str, batch_size: int = 32, threshold_shift: float = 0.0) -> list[dict]:
        """Per text: `{"labels": [names with probability >= threshold + shift], "probabilities": {name: p}}`.

            >>> model.predict(["I can't believe you did that!"], threshold_shift=-0.1)
        """
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        labels = self.config.labels
        thresholds = np.clip(np.asarray(self.config.thresholds) + threshold_shift, 0.0, 1.0)
        return [{"labels": [labels[j] for j in np.flatnonzero(row >= thresholds)],
                 "probabilities": {name: float(p) for name, p in zip(labels, row)}} for row in probabilities]

    # -- construction from a pretrained backbone -----------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone: str, labels: Sequence[str] | None = None, input_mode: str = "text", *,
                      dtype: torch.dtype | None = None, quantization_config: Any = None, device_map: Any = None,
                      **config_kwargs: Any) -> "EmoModelForMultiLabel":
        """A new classifier (random head) on a PRETRAINED backbone: Hub id, folder, `.gguf` file, or an id with an
        offline copy (see resolve_pretrained). Multimodal Mistral 3 gives its text model. The tokenizer is attached.

            >>> model = EmoModelForMultiLabel.from_backbone("sentence-transformers/all-MiniLM-L6-v2",
            ...                                              labels=["joy", "anger"], focal_gamma=0.0)
        """
        gguf_file = config_kwargs.pop("backbone_gguf_file", None)
        kwargs = dict(dtype=dtype, quantization_config=quantization_config, device_map=device_map)
        if _INSIDE_EMO_HF:
            loading = _emo_hf("backbones.loading")
            source, gguf_file = loading.backbone_source(backbone, gguf_file)
            base = loading.load_pretrained_backbone(source, **kwargs)
            tokenizer = loading.load_tokenizer(source)
        else:
            folder, resolved = resolve_pretrained(backbone)
            gguf_file = resolved or gguf_file
            base = _plain_load_backbone(backbone, gguf_file, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf_file} if gguf_file else {}))
        return cls.from_loaded_backbone(base, tokenizer, backbone, labels=labels, input_mode=input_mode,
                                        backbone_gguf_file=gguf_file, **config_kwargs)

    @classmethod
    def from_loaded_backbone(cls, base: nn.Module, tokenizer, backbone_name_or_path: str,
                             labels: Sequence[str] | None = None, input_mode: str = "text",
                             **config_kwargs: Any) -> "EmoModelForMultiLabel":
        """Wrap an already loaded backbone module (e.g. Unsloth's decoder stack) and its tokenizer. Inside emo_hf
        the tokenizer gets its family's pad token (emo_hf.backbones.families; a new one gets an embedding row) and
        the family's pooling is recorded in the config."""
        base_config = base.config.get_text_config()
        if _INSIDE_EMO_HF:
            families = _emo_hf("backbones.families")
            families.prepare_tokenizer(tokenizer, base_config.model_type)
            _emo_hf("backbones.loading").ensure_embedding_rows(base, tokenizer)
            config_kwargs.setdefault("pooling", families.family_for(base_config.model_type).pooling)
        else:
            tokenizer = ensure_pad_token(tokenizer)
        if getattr(base_config, "pad_token_id", None) is None:
            base_config.pad_token_id = tokenizer.pad_token_id
        config = EmoConfig(labels=list(labels) if labels is not None else None, input_mode=input_mode,
                           backbone_name_or_path=backbone_name_or_path, backbone_config=base_config,
                           **config_kwargs)
        model = cls(config, backbone=base)
        model.tokenizer = tokenizer
        model._mark_if_quantized()
        device = next(base.parameters()).device
        if device.type != "cpu":  # the head follows the backbone, in float32
            model.score.to(device)
            if model.projection is not None:
                model.projection.to(device)
        return model

    # -- saving --------------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, save_base_weights: bool | None = None,
                        **kwargs: Any) -> None:
        """Write the model folder (layout in this module's docstring). `save_base_weights`: None = the whole
        backbone only when no LoRA is applied and it is not 4-bit; True/False to force. Other keyword arguments
        (the Trainer's `state_dict`, `safe_serialization`, ...) are accepted and ignored: the live modules are saved.
        Files are written to a temporary folder next to the target, then moved in one by one.
        """
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        has_lora = self.has_lora
        if has_lora and not self.config.lora:
            raise ValueError("The backbone has LoRA layers but config.lora is empty: set model.config.lora to the "
                             "LoRA settings used (r, lora_alpha, lora_dropout, bias, target_modules).")
        quantized = _is_4bit(self.backbone)
        if save_base_weights is None:
            save_base_weights = not has_lora and not quantized
        if save_base_weights and quantized:
            raise ValueError("save_base_weights=True cannot save a 4-bit backbone: its base weights are reloaded "
                             f"from {self.config.backbone_name_or_path!r}. Call save_pretrained(dir) without it.")
        if not save_base_weights and not has_lora and not self.config.backbone_name_or_path:
            raise ValueError("Neither LoRA nor backbone_name_or_path: the backbone could not be rebuilt. Use "
                             "save_pretrained(dir, save_base_weights=True).")
        # the pid in the name lets the next run remove it if this process is killed (emo_hf.atomic)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-emo-save-{os.getpid()}-", dir=target.parent))
        try:
            config = self.config
            config.architectures = [type(self).__name__]
            # AutoModelForSequenceClassification too: transformers' pipeline("text-classification") and the Hub's
            # widgets load that class (as SpanMarker / SetFit map their task classes).
            config.auto_map = {"AutoConfig": "configuration.EmoConfig", "AutoModel": "modeling.EmoModelForMultiLabel",
                               "AutoModelForSequenceClassification": "modeling.EmoModelForMultiLabel"}
            config.save_pretrained(tmp)
            (tmp / THRESHOLDS_FILE).write_text(json.dumps(config.threshold_map(), indent=2) + "\n")
            head = {f"score.{k}": v for k, v in self.score.state_dict().items()}
            if self.projection is not None:
                head.update({f"projection.{k}": v for k, v in self.projection.state_dict().items()})
            metadata = {"labels": json.dumps(config.labels), "hidden_size": str(self.hidden_size),
                        "input_mode": config.input_mode}
            save_file({k: v.detach().float().cpu().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE),
                      metadata=metadata)
            if has_lora:
                from peft import LoraConfig

                lora = dict(config.lora)
                adapter_dir = tmp / ADAPTER_DIR
                LoraConfig(base_model_name_or_path=config.backbone_name_or_path, **lora).save_pretrained(
                    str(adapter_dir))
                save_file(lora_state_dict(self.backbone), str(adapter_dir / ADAPTER_WEIGHTS_FILE))
            if save_base_weights:
                base = {}
                for key, value in self.backbone.state_dict().items():
                    if _is_lora_key(key):
                        continue
                    base[key.replace(".base_layer.", ".")] = value.detach().cpu().clone().contiguous()
                save_file(base, str(tmp / BACKBONE_FILE))
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
            here = Path(__file__).resolve().parent
            shutil.copyfile(here / "configuration.py", tmp / "configuration.py")
            shutil.copyfile(Path(__file__).resolve(), tmp / "modeling.py")
            # Files of an earlier save that this one does not write would be stale: remove them (the adapter
            # folder is replaced as a whole; a root-level adapter of the older layout always goes).
            for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, BACKBONE_FILE):
                if not (tmp / name).exists() and (target / name).is_file():
                    (target / name).unlink()
            if (target / ADAPTER_DIR).is_dir():
                shutil.rmtree(target / ADAPTER_DIR)
            _respect_umask(tmp)
            for path in sorted(tmp.iterdir()):
                os.replace(path, target / path.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- loading -------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: EmoConfig | None = None, backbone_name_or_path: str | None = None,
                        labels: Sequence[str] | None = None, load_in_4bit: bool | None = None,
                        dtype: torch.dtype | str | None = None, device_map: Any = None, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | None = None,
                        local_files_only: bool = False, **kwargs: Any) -> "EmoModelForMultiLabel":
        """Load a saved classifier: folder or Hub repo. The base backbone comes from the folder (backbone.safetensors)
        or from `config.backbone_name_or_path` (override with `backbone_name_or_path=`, e.g. if the original folder
        moved), then the LoRA adapter and the head are applied. `labels=` (optional) asserts the expected labels.
        A model trained in 4-bit reloads in 4-bit (NF4, bitsandbytes) when a GPU is present (`load_in_4bit=` to force).
        Missing or mismatched files raise; a head is never left random.
        """
        folder = Path(str(pretrained_model_name_or_path)).expanduser()
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(pretrained_model_name_or_path), revision=revision, token=token,
                                            cache_dir=cache_dir, local_files_only=local_files_only))
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_pretrained(str(folder))
        name = f"{str(pretrained_model_name_or_path)!r}"
        if not (folder / HEAD_FILE).is_file():
            raise FileNotFoundError(
                f"{name} has no {HEAD_FILE} (the score head): it is not a complete EmoModelForMultiLabel folder, or "
                f"the save was interrupted. Save the model again with model.save_pretrained({name}).")
        adapter_dir = find_adapter_folder(folder)
        has_adapter = adapter_dir is not None
        has_base = (folder / BACKBONE_FILE).is_file()
        if config.lora and not has_adapter:
            raise FileNotFoundError(
                f"{name} was trained with LoRA (config.json 'lora': {config.lora}) but {ADAPTER_DIR}/"
                f"{ADAPTER_CONFIG_FILE} and/or {ADAPTER_DIR}/{ADAPTER_WEIGHTS_FILE} are missing: copy them back or "
                "save the model again.")
        if labels is not None and list(labels) != config.labels:
            raise ValueError(f"{name} classifies {config.labels}, not the expected labels {list(labels)}. Load the "
                             "right model, or drop labels= to accept its own.")
        if (folder / THRESHOLDS_FILE).is_file():
            thresholds = _read_json(folder / THRESHOLDS_FILE)
            if not isinstance(thresholds, dict) or set(thresholds) != set(config.labels):
                raise ValueError(f"{folder / THRESHOLDS_FILE} has labels {sorted(thresholds)} but config.json has "
                                 f"{config.labels}: they must match (edit thresholds.json or save the model again).")
            config.set_thresholds(thresholds)  # thresholds.json is the readable, editable copy: it wins

        want_4bit = config.load_in_4bit if load_in_4bit is None else bool(load_in_4bit)
        if want_4bit and not torch.cuda.is_available():
            logger.warning("This model was trained in 4-bit; no GPU here, so its backbone loads in full precision.")
            want_4bit = False
        if dtype == "auto":  # what pipeline() passes: the saved precision, i.e. the default below
            dtype = None
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        dtype = dtype or (torch.bfloat16 if want_4bit else torch.float32)
        quantization_config = None
        if want_4bit:
            from transformers import BitsAndBytesConfig

            # NF4 with double quantisation and bf16 compute: what Unsloth's load_in_4bit uses.
            quantization_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                     bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
            device_map = device_map if device_map is not None else {"": torch.cuda.current_device()}

        if has_base:
            base = text_backbone(AutoModel.from_config(config.backbone_config, dtype=dtype))
            state = _read_weights(folder / BACKBONE_FILE)
            result = base.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise ValueError(f"{folder / BACKBONE_FILE} does not fit the backbone config: missing "
                                 f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
        else:
            source = backbone_name_or_path or config.backbone_name_or_path
            if not source:
                raise ValueError(f"{name} has neither {BACKBONE_FILE} nor backbone_name_or_path in config.json: "
                                 "pass from_pretrained(folder, backbone_name_or_path='<base model>').")
            base = _load_base_backbone(source, config.backbone_gguf_file, dtype=dtype,
                                       quantization_config=quantization_config, device_map=device_map)
            _match_saved_vocab(base, config.backbone_config)
            _check_backbone_matches(config.backbone_config, base.config, source)
        model = cls(config, backbone=base)
        if has_adapter:
            load_lora_adapter(model.backbone, adapter_dir)
        model._load_head(folder)
        if (folder / "tokenizer_config.json").is_file():
            model.tokenizer = _load_saved_tokenizer(folder, config, trust_remote_code=kwargs.get("trust_remote_code"))
        model._mark_if_quantized()
        if want_4bit:
            device = next(model.backbone.parameters()).device
            model.score.to(device)
            if model.projection is not None:
                model.projection.to(device)
        elif device_map is not None and isinstance(device_map, (str, torch.device)):
            model.to(device_map)
        model.eval()
        return model

    def set_thresholds(self, thresholds: Sequence[float] | dict[str, float] | float) -> None:
        """Replace the per-label decision thresholds (list in label order, {label: value} or one float); they are
        saved in config.json and thresholds.json by the next save_pretrained."""
        self.config.set_thresholds(thresholds)

    def load_trained_weights(self, folder: str | os.PathLike) -> None:
        """Load the trained parts of a saved folder (head, projection, LoRA weights, thresholds) into this live
        model, in place: for resuming from / restoring the best Trainer checkpoint. Strict: mismatches raise."""
        folder = Path(folder)
        if not (folder / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{str(folder)!r} has no {HEAD_FILE}: not a checkpoint of this model.")
        saved = self.config_class.from_pretrained(str(folder))
        if saved.labels != self.config.labels or saved.input_mode != self.config.input_mode:
            raise ValueError(f"{str(folder)!r} holds a model for labels {saved.labels} ({saved.input_mode!r} mode); "
                             f"this one is for {self.config.labels} ({self.config.input_mode!r}).")
        self._load_head(folder)
        adapter_dir = find_adapter_folder(folder)
        has_adapter = adapter_dir is not None
        if self.has_lora != has_adapter:
            raise ValueError(f"{str(folder)!r} {'has' if has_adapter else 'has no'} LoRA adapter but this model "
                             f"{'has' if self.has_lora else 'has no'} LoRA layers.")
        if has_adapter:
            live = {k for k in self.backbone.state_dict() if _is_lora_key(k)}
            state = {_to_live_lora_key(k): v for k, v in _read_weights(adapter_dir / ADAPTER_WEIGHTS_FILE).items()}
            if set(state) != live:
                raise ValueError(f"The LoRA weights in {str(folder)!r} do not fit this model's LoRA layers "
                                 f"(e.g. {sorted(set(state) ^ live)[:3]}).")
            self.backbone.load_state_dict(state, strict=False)
        elif (folder / BACKBONE_FILE).is_file():
            state = _read_weights(folder / BACKBONE_FILE)
            result = self.backbone.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise ValueError(f"{folder / BACKBONE_FILE} does not fit the backbone: missing "
                                 f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
        thresholds_file = folder / THRESHOLDS_FILE
        self.set_thresholds(_read_json(thresholds_file) if thresholds_file.is_file() else saved.thresholds)

    def _load_head(self, folder: Path) -> None:
        from safetensors import safe_open

        path = folder / HEAD_FILE
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception as error:  # SafetensorError: a truncated or garbage file
            raise ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; "
                             "copy it again or save the model again") from None
        saved_labels = json.loads(metadata.get("labels", "null"))
        if saved_labels is not None and saved_labels != self.config.labels:
            raise ValueError(f"{path} was trained for labels {saved_labels} but config.json lists "
                             f"{self.config.labels}: the head would be meaningless. Restore the matching config.json.")
        state = _read_weights(path)
        expected = {f"score.{k}": v for k, v in self.score.state_dict().items()}
        if self.projection is not None:
            expected.update({f"projection.{k}": v for k, v in self.projection.state_dict().items()})
        problems = [f"{k}: missing" for k in expected if k not in state]
        problems += [f"{k}: unexpected" for k in state if k not in expected]
        problems += [f"{k}: shape {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                     if k in state and state[k].shape != v.shape]
        if problems:
            raise ValueError(f"{path} does not fit this model (labels {self.config.labels}, hidden size "
                             f"{self.hidden_size}, input_mode {self.config.input_mode!r}): {problems[:6]}.")
        self.score.load_state_dict({k.removeprefix("score."): v for k, v in state.items() if k.startswith("score.")})
        if self.projection is not None:
            self.projection.load_state_dict({k.removeprefix("projection."): v for k, v in state.items()
                                             if k.startswith("projection.")})


if __name__ == "emo_hf.modeling":
    # Inside the emo_hf package (not in a trust_remote_code copy): `AutoModel.from_pretrained(folder)` finds this class.
    from transformers import AutoConfig as _AutoConfig
    from transformers import AutoModelForSequenceClassification as _AutoModelForSequenceClassification

    _AutoConfig.register(EmoConfig.model_type, EmoConfig, exist_ok=True)
    AutoModel.register(EmoConfig, EmoModelForMultiLabel, exist_ok=True)
    # pipeline("text-classification", model=folder) loads AutoModelForSequenceClassification.
    _AutoModelForSequenceClassification.register(EmoConfig, EmoModelForMultiLabel, exist_ok=True)
