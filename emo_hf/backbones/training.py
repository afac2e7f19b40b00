"""Loading a classifier for training: Unsloth 4-bit on a GPU when installed, else bitsandbytes NF4 + peft, else CPU.

    >>> from emo_hf.backbones import load_for_training
    >>> model = load_for_training("HuggingFaceTB/SmolLM2-135M-Instruct", labels=["joy", "anger"], max_length=128)
    >>> model.tokenizer            # attached; model.config.lora holds the LoRA settings used

Every path gets the same backbone source (a GGUF's converted bf16 folder, emo_hf.backbones.gguf) and the same
tokenizer, with its family's pad token (emo_hf.backbones.families); that tokenizer is the one saved with the model.
Unsloth and bitsandbytes are imported only on the GPU paths: the CPU path needs neither.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .families import family_for, lora_targets, set_padding_side
from .loading import (backbone_model_type, backbone_source, drop_output_head, ensure_embedding_rows, load_tokenizer,
                      tokenizer_folder)

logger = logging.getLogger(__name__)

# Unsloth's recommended settings (used by the issue for the Mistral preset).
UNSLOTH_RANDOM_STATE = 3407


@dataclass
class LoraSettings:
    """LoRA settings; `target_modules=None` picks the family's (emo_hf.backbones.families: the 7 attention/MLP
    projections of Mistral / Llama / Qwen / Gemma, Phi-3's fused ones, query/key/value/dense for BERT-style encoders).

        >>> LoraSettings(r=8, lora_alpha=16)
    """

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    bias: str = "none"
    target_modules: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoraSettings: r={self.r!r} must be an integer >= 1, e.g. LoraSettings(r=16).")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"LoraSettings: lora_alpha={self.lora_alpha!r} must be > 0, e.g. lora_alpha=32.")
        if not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoraSettings: lora_dropout={self.lora_dropout!r} must be in [0, 1), e.g. 0.0.")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"LoraSettings: bias={self.bias!r} must be 'none', 'all' or 'lora_only'.")
        if self.target_modules is not None:
            if isinstance(self.target_modules, str) or not all(isinstance(m, str) for m in self.target_modules):
                raise ValueError(f"LoraSettings: target_modules={self.target_modules!r} must be a list of module "
                                 "names, e.g. ['q_proj', 'v_proj'].")
            self.target_modules = list(self.target_modules)

    @classmethod
    def coerce(cls, lora: "LoraSettings | dict | None") -> "LoraSettings | None":
        if lora is None or isinstance(lora, LoraSettings):
            return lora
        if isinstance(lora, dict):
            unknown = sorted(set(lora) - {f for f in cls.__dataclass_fields__})
            if unknown:
                raise ValueError(f"Unknown LoRA setting(s) {unknown} in {lora!r}; valid: "
                                 f"{sorted(cls.__dataclass_fields__)}.")
            return cls(**lora)
        raise ValueError(f"lora={lora!r}: give a LoraSettings, a dict like {{'r': 16, 'lora_alpha': 32}}, or None.")

    def resolved(self, model_type: str, model: Any = None) -> dict[str, Any]:
        """The settings with target modules filled in for this backbone type (stored in EmoConfig.lora); checked
        against `model`'s Linear layers when given (a clear error lists them when none matches)."""
        settings = asdict(self)
        settings["target_modules"] = lora_targets(model_type, model, settings["target_modules"])
        return settings


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; a 4-bit weight counts its unpacked size (two values per stored byte)."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel() * (2 if type(param).__name__ == "Params4bit" else 1)
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total


def unsloth_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("unsloth") is not None


def import_unsloth_first(*, unsloth: bool | None, load_in_4bit: bool | None, lora: bool) -> bool:
    """Import Unsloth now, before transformers and peft, when the run's settings already say it will train through
    it; returns whether it did. Unsloth patches both libraries when it is imported and warns when it comes second
    ("Unsloth should be imported before [transformers, peft] ... Your code may run slower"), as it did in every
    `emo-hf train` through Unsloth up to 2026-12-02 (bench/gpu_train.py's children imported it first).

    Called by the `train`, `run` and `ablate` commands before they import the trainer. Settings that say so:
    `unsloth=True`, or `unsloth` unset with `load_in_4bit=True` and LoRA (load_for_training's rule) on a CUDA GPU
    with Unsloth installed. Where the memory plan is left to pick 4-bit (`load_in_4bit` unset), it is not known yet
    and Unsloth is imported later, with its warning. Nothing happens once transformers is imported (too late)."""
    import sys

    if "unsloth" in sys.modules or "transformers" in sys.modules or "peft" in sys.modules:
        return False
    if unsloth is False or not lora or (unsloth is None and load_in_4bit is not True) or not unsloth_available():
        return False
    import torch

    if not torch.cuda.is_available():
        return False  # unsloth=True then fails with its own clear error (emo_hf.trainer._use_unsloth)
    import unsloth as _unsloth  # noqa: F401  (its import patches transformers and peft)

    return True


def load_for_training(
    backbone: str,
    labels: Sequence[str] | None = None,
    input_mode: str = "text",
    lora: LoraSettings | dict | None = LoraSettings(),
    device: str | None = None,
    max_length: int = 256,
    *,
    load_in_4bit: bool | None = None,
    use_unsloth: bool | None = None,
    gradient_checkpointing: bool | None = None,
    offload_checkpointing: bool | None = None,
    **config_kwargs: Any,
):
    """An `EmoModelForMultiLabel` ready to train (tokenizer attached, head/projection float32 and trainable).

    - GPU + Unsloth installed (and `use_unsloth` not False): `FastLanguageModel.from_pretrained(..., load_in_4bit,
      dtype=bfloat16)` + `FastLanguageModel.get_peft_model(...)` with `use_gradient_checkpointing="unsloth"`; the
      classifier wraps the decoder stack (`model.base_model.model.model`).
    - GPU without Unsloth: transformers + bitsandbytes NF4 (when `load_in_4bit`) + peft LoRA, gradient checkpointing.
    - CPU: full precision + peft LoRA.
    `gradient_checkpointing` / `offload_checkpointing` (Unsloth's offloaded kind): None = on, as before (the trainer
    passes emo_hf.memory_plan's decision). `lora=None` trains no adapter: the whole backbone is trained (frozen if
    4-bit). `load_in_4bit=None` means 4-bit on a GPU, never on CPU. `config_kwargs` go to EmoConfig (focal_gamma, focal_alpha, classifier_dropout,
    num_soft_tokens, encoder_name, encoder_dim, projection_hidden_size, thresholds, pooling, ...).
    """
    import torch

    from ..modeling import EmoModelForMultiLabel

    settings = LoraSettings.coerce(lora)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is visible: use device='cpu'.")
    if load_in_4bit is None:
        load_in_4bit = on_gpu
    if load_in_4bit and not on_gpu:
        raise ValueError("load_in_4bit=True needs a CUDA GPU (bitsandbytes); on CPU use load_in_4bit=False.")
    source, gguf_file = backbone_source(backbone, config_kwargs.pop("backbone_gguf_file", None))
    family = family_for(backbone_model_type(source))
    config_kwargs.setdefault("pooling", family.pooling)
    if use_unsloth is None:
        use_unsloth = on_gpu and load_in_4bit and settings is not None and unsloth_available()
    common = dict(labels=labels, input_mode=input_mode, max_length=max_length, load_in_4bit=bool(load_in_4bit),
                  backbone_gguf_file=gguf_file, **config_kwargs)
    # One tokenizer for every path, with the family's pad token; it is the one saved with the model.
    tokenizer = load_tokenizer(source)

    if use_unsloth:
        checkpointing = ("unsloth" if offload_checkpointing or (offload_checkpointing is None and gradient_checkpointing
                                                                 in (None, True)) else bool(gradient_checkpointing))
        model = _load_with_unsloth(backbone, source, tokenizer, settings, max_length, bool(load_in_4bit), common,
                                   checkpointing)
        path = "unsloth"
    else:
        quantization_config = None
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            quantization_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                     bnb_4bit_use_double_quant=True,
                                                     bnb_4bit_compute_dtype=torch.bfloat16)
        from .loading import load_pretrained_backbone

        base = load_pretrained_backbone(
            # Full fine-tuning keeps float32 master weights (bf16 autocast does the speed-up); pure-bf16 weights lose
            # small AdamW updates. LoRA and 4-bit backbones are frozen, so bfloat16 is fine there.
            source, dtype=torch.bfloat16 if on_gpu and (settings is not None or load_in_4bit) else torch.float32,
            quantization_config=quantization_config,
            device_map={"": torch.cuda.current_device()} if on_gpu else None)
        ensure_embedding_rows(base, tokenizer)  # a pad token added to the vocabulary gets its (unquantised) row
        model = EmoModelForMultiLabel.from_loaded_backbone(base, tokenizer, backbone, **common)
        base_type = model.config.backbone_config.model_type
        if settings is not None:
            from peft import LoraConfig, get_peft_model

            lora_dict = settings.resolved(base_type, model.backbone)
            if gradient_checkpointing or (gradient_checkpointing is None and on_gpu):  # None: on a GPU only
                # Non-reentrant checkpointing needs no input gradients (unlike peft's prepare_model_for_kbit_training,
                # which would also upcast the 131k-token embeddings to float32).
                model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            get_peft_model(model.backbone, LoraConfig(**lora_dict))  # injects LoRA in place, freezes the base
            model.config.lora = lora_dict
        else:
            model.config.lora = None
            if load_in_4bit:
                logger.warning("lora=None with a 4-bit backbone: the backbone stays frozen; only the head trains.")
                model.backbone.requires_grad_(False)
            if gradient_checkpointing:
                model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        path = "bitsandbytes 4-bit + peft" if load_in_4bit else ("GPU full precision" if on_gpu else "CPU") + (
            " + peft LoRA" if settings is not None else " (no LoRA)")

    # The family's padding side (right for all: emo_hf.backbones.families says why); last-token pooling handles
    # either side at prediction time.
    if model.tokenizer is not None:
        set_padding_side(model.tokenizer, family.padding_side)
    # The head and projection are plain float32 layers outside the backbone: never quantised, always trained.
    model.score.requires_grad_(True)
    if model.projection is not None:
        model.projection.requires_grad_(True)
    if on_gpu:
        model.score.to(device)
        if model.projection is not None:
            model.projection.to(device)
    model.train()
    trainable, total = count_parameters(model)
    print(f"emo_hf: {backbone} via {path}: trainable parameters {trainable:,} of {total:,} "
          f"({100 * trainable / max(total, 1):.3f}%)")
    return model


def _load_with_unsloth(backbone: str, source: str, tokenizer, settings: LoraSettings, max_length: int,
                       load_in_4bit: bool, common: dict[str, Any], checkpointing: bool | str = "unsloth"):
    """The Unsloth path (see /work/shared/gpu/README.md): 4-bit load, LoRA, the decoder stack as backbone.

    Unsloth reads the tokenizer itself and refuses one whose pad token is its eos ("Could not find a valid pad
    token", unsloth_zoo.pad_token.fix_pad_token in 2026.10.9), so it is pointed, through `tokenizer_name=` (popped
    by FastLanguageModel.from_pretrained and used for its own tokenizer load), at a folder holding our tokenizer with
    the family's pad token; a converted GGUF folder already holds it. Its returned tokenizer is not used: ours is the
    one attached and saved.
    """
    import unsloth  # noqa: F401  (patches transformers; import it before transformers when you can)
    import torch
    from unsloth import FastLanguageModel

    from ..modeling import EmoModelForMultiLabel, text_backbone

    causal_lm, _ = FastLanguageModel.from_pretrained(model_name=source, max_seq_length=max_length,
                                                     load_in_4bit=load_in_4bit, dtype=torch.bfloat16,
                                                     tokenizer_name=tokenizer_folder(source, tokenizer))
    ensure_embedding_rows(causal_lm, tokenizer)
    model_type = causal_lm.config.get_text_config().model_type
    lora_dict = settings.resolved(model_type, causal_lm)
    peft_model = FastLanguageModel.get_peft_model(
        causal_lm, r=lora_dict["r"], lora_alpha=lora_dict["lora_alpha"], lora_dropout=lora_dict["lora_dropout"],
        bias=lora_dict["bias"], target_modules=lora_dict["target_modules"], use_gradient_checkpointing=checkpointing,
        random_state=UNSLOTH_RANDOM_STATE)
    # What Unsloth applied: it turns "unsloth" (offloaded) into plain checkpointing below 512 tokens
    # (emo_hf.memory_plan.UNSLOTH_OFFLOAD_MIN_LENGTH); the memory plan no longer asks for it there, direct callers may.
    applied = getattr(peft_model, "_unsloth_gradient_checkpointing", checkpointing)
    if checkpointing == "unsloth" and applied != "unsloth":
        from ..memory_plan import UNSLOTH_OFFLOAD_MIN_LENGTH

        logger.warning("Unsloth checkpoints without offloading at max_length=%d (it offloads from %d tokens); "
                       "its use_gradient_checkpointing is %r", max_length, UNSLOTH_OFFLOAD_MIN_LENGTH, applied)
    # The CausalLM's untied LM head is never used by the classifier: free it (1.25 GiB for the 24B).
    freed = drop_output_head(peft_model.base_model.model)
    if freed:
        logger.info("emo_hf: dropped the unused LM head of %s (%.2f GiB)", backbone, freed / 2**30)
    decoder = text_backbone(peft_model.base_model.model.model)  # the decoder stack: last_hidden_state after the norm
    model = EmoModelForMultiLabel.from_loaded_backbone(decoder, tokenizer, backbone, lora=lora_dict, **common)
    # Keep Unsloth's wrapper alive without registering it as a submodule (its parameters are the decoder's).
    model.__dict__["_unsloth_model"] = peft_model
    return model
