"""EmoModelForMultiLabel: a language-model backbone, pooled, with a multi-label `score` head and focal loss.

    >>> from emo_hf.modeling import EmoModelForMultiLabel
    >>> model = EmoModelForMultiLabel.from_backbone("HuggingFaceTB/SmolLM2-135M-Instruct", labels=["joy", "anger"])
    >>> model.predict(["What a lovely day!"])          # [{'labels': [...], 'probabilities': {'joy': 0.51, ...}}]
    >>> model.save_pretrained("my-model")              # then AutoModel.from_pretrained("my-model", trust_remote_code=True)

The classifier lives here; its neighbours hold the rest of a saved model's code:
    modeling_files.py           the saved folder's layout, and writing / reading it (save_pretrained, from_pretrained)
    modeling_backbone.py        loading the base backbone and the saved tokenizer (emo_hf.backbones inside emo_hf)
    modeling_predict.py         texts in, probabilities and labels out (predict_proba, predict, tokenize, embed)
    modeling_shared_prefix.py   the instruction prompt's shared prefix run once per training batch
These files and configuration.py are copied next to saved models for `trust_remote_code=True`
(modeling_files.REMOTE_CODE_FILES): they import each other relatively and nothing from `emo_hf`, so everything needed
to load a saved model and predict travels with it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import EmoConfig, resolve_pretrained
from .modeling_backbone import (INSIDE_EMO_HF, TRAINING_PADDING_SIDE, emo_hf_module, ensure_pad_token,
                                fill_empty_rows, fill_empty_tensor_rows, filler_token_id, is_4bit, pad_as_in_training,
                                plain_load_backbone, text_backbone, tokenize_for_prediction)
from .modeling_files import (ADAPTER_DIR, BACKBONE_FILE, HEAD_FILE, REMOTE_CODE_FILES, THRESHOLDS_FILE,
                             load_head, load_model_folder, load_trained_weights, save_model_folder)
from .modeling_predict import EmoPredictionMixin, token_budget_batches
from .modeling_shared_prefix import backbone_with_shared_prefix

# Names other modules import from here (the folder layout, the tokenizer helpers), kept importable from this module.
__all__ = ["ADAPTER_DIR", "BACKBONE_FILE", "HEAD_FILE", "REMOTE_CODE_FILES", "THRESHOLDS_FILE",
           "TRAINING_PADDING_SIDE", "EmoModelForMultiLabel", "EmoModelOutput", "ensure_pad_token", "fill_empty_rows",
           "fill_empty_tensor_rows", "filler_token_id", "focal_loss", "pad_as_in_training", "text_backbone",
           "token_budget_batches", "tokenize_for_prediction"]


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


class EmoModelForMultiLabel(EmoPredictionMixin, PreTrainedModel):
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
        if is_4bit(self.backbone):
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
            if not self.training and self.tokenizer is not None and not torch.jit.is_tracing():
                # A row of no tokens from a caller that tokenized itself (transformers' pipeline) gets training's
                # filler, as predict_proba's rows do. Training batches come filled by the collators; the ONNX
                # graph (traced) leaves it to OnnxEmoClassifier, which fills on the host.
                input_ids, attention_mask, token_type_ids = fill_empty_tensor_rows(
                    input_ids, attention_mask, filler_token_id(self.tokenizer), token_type_ids)
            if token_type_ids is not None:
                extra["token_type_ids"] = token_type_ids
            if shared_prefix_length and input_ids.shape[1] > shared_prefix_length and not config.is_encoder_backbone:
                out = backbone_with_shared_prefix(self.backbone, input_ids, attention_mask,
                                                  shared_prefix_length)
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
        if INSIDE_EMO_HF:
            loading = emo_hf_module("backbones.loading")
            source, gguf_file = loading.backbone_source(backbone, gguf_file)
            base = loading.load_pretrained_backbone(source, **kwargs)
            tokenizer = loading.load_tokenizer(source)
        else:
            folder, resolved = resolve_pretrained(backbone)
            gguf_file = resolved or gguf_file
            base = plain_load_backbone(backbone, gguf_file, **kwargs)
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
        if INSIDE_EMO_HF:
            families = emo_hf_module("backbones.families")
            families.prepare_tokenizer(tokenizer, base_config.model_type)
            emo_hf_module("backbones.loading").ensure_embedding_rows(base, tokenizer)
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


    # -- saving and loading (emo_hf.modeling_files) ---------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, save_base_weights: bool | None = None,
                        **kwargs: Any) -> None:
        """Write the model folder (layout: emo_hf/modeling_files.py). `save_base_weights`: None = the whole backbone
        only when no LoRA is applied and it is not 4-bit; True/False to force. Other keyword arguments (the Trainer's
        `state_dict`, `safe_serialization`, ...) are accepted and ignored: the live modules are saved. Files are
        written to a temporary folder next to the target, then moved in one by one."""
        save_model_folder(self, save_directory, save_base_weights=save_base_weights)

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
        return load_model_folder(cls, pretrained_model_name_or_path, config=config,
                                 backbone_name_or_path=backbone_name_or_path, labels=labels, load_in_4bit=load_in_4bit,
                                 dtype=dtype, device_map=device_map, revision=revision, token=token,
                                 cache_dir=cache_dir, local_files_only=local_files_only,
                                 trust_remote_code=kwargs.get("trust_remote_code"))

    def set_thresholds(self, thresholds: Sequence[float] | dict[str, float] | float) -> None:
        """Replace the per-label decision thresholds (list in label order, {label: value} or one float); they are
        saved in config.json and thresholds.json by the next save_pretrained."""
        self.config.set_thresholds(thresholds)

    def load_trained_weights(self, folder: str | os.PathLike) -> None:
        """Load the trained parts of a saved folder (head, projection, LoRA weights, thresholds) into this live
        model, in place: for resuming from / restoring the best Trainer checkpoint. Strict: mismatches raise."""
        load_trained_weights(self, folder)

    def _load_head(self, folder: Path) -> None:
        load_head(self, folder)



if __name__ == "emo_hf.modeling":
    # Inside the emo_hf package (not in a trust_remote_code copy): `AutoModel.from_pretrained(folder)` finds this class.
    from transformers import AutoConfig as _AutoConfig
    from transformers import AutoModelForSequenceClassification as _AutoModelForSequenceClassification

    _AutoConfig.register(EmoConfig.model_type, EmoConfig, exist_ok=True)
    AutoModel.register(EmoConfig, EmoModelForMultiLabel, exist_ok=True)
    # pipeline("text-classification", model=folder) loads AutoModelForSequenceClassification.
    _AutoModelForSequenceClassification.register(EmoConfig, EmoModelForMultiLabel, exist_ok=True)
