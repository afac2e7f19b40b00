"""Memory plan: 4-bit loading, gradient checkpointing and Unsloth's offloaded checkpointing only where memory needs them.

    from emo_hf.memory_plan import plan_memory, shape_of
    plan = plan_memory(shape_of(config), free_bytes=140e9, tokens_per_batch=8192, lora_r=16)
    plan.load_in_4bit, plan.gradient_checkpointing, plan.offload_checkpointing   # False, False, False for a 0.5B

The trainer calls `plan_for_settings(settings, backbone_folder)` before loading: TrainSettings fields left None
(`load_in_4bit`, `gradient_checkpointing`, `offload_checkpointing`) are decided here, explicit True/False win. The
plan is logged and recorded in training_info.json (`memory_plan`).

Each of the three costs speed: 4-bit dequantises every weight at every use (extra kernels per layer), checkpointing
recomputes the forward in the backward (~1/3 more compute, more launches), offloading moves the saved layer inputs to
host memory and back. So the plan takes the cheapest option that fits, in this order:
    bf16, no checkpointing  ->  bf16 + checkpointing  ->  4-bit  ->  4-bit + checkpointing  ->  4-bit + offloaded
The estimate (GiB) is deliberately simple and errs high:
    weights      bf16: 2 bytes/param; 4-bit: linear layers at 4.13 bits (NF4 + double-quantised scales), the input
                 embedding kept bf16; no LM head (never loaded, or dropped from Unsloth's CausalLM:
                 emo_hf.backbones.loading.drop_output_head); CPU / full precision: 4 bytes
    training     trainable params x 16 bytes (fp32 weight, grad, two AdamW moments): LoRA, or everything when fully
                 fine-tuned
    activations  tokens x layers x bytes_per_token_layer, with bytes_per_token_layer = 2 x (10 x hidden + 4 x MLP):
                 what a SwiGLU decoder layer keeps for backward in bf16 (inputs of the norms, q/k/v/o, gate/up/act
                 products; fused attention, so no seq^2 term). Checkpointing keeps only each layer's input
                 (2 x hidden per token and layer) plus, while one layer is recomputed and differentiated, its full
                 set and the gradients of the same size (RECOMPUTED_LAYER_SETS); offloading moves the layer inputs
                 to host memory.
    workspace    4-bit: two dequantised copies of the largest linear weight; plus 1.5 GiB for the CUDA context,
                 cuBLAS workspaces and allocator slack.
A plan "fits" when the total is at most `headroom` (0.85) of the free memory. Offloading is an option only where it
can happen (`offload_unavailable`: Unsloth, from 512 tokens per row).

Evaluation batches (`eval_tokens_per_batch`): a forward without gradients keeps one layer's activations at a time, not
every layer's, so it can take more tokens per batch in the memory the training step's activations took (fewer
batches; on the H200 not measurably faster for Qwen2.5-0.5B, see EVAL_BUDGET_CAP).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

GIB = 2**30
FIXED_OVERHEAD_GIB = 1.5
NF4_BYTES_PER_PARAM = 4.127 / 8  # 4-bit values + per-64 absmax double-quantised to 8 bits (+ per-256 fp32 scales)
ADAM_BYTES_PER_TRAINABLE = 16
HEADROOM = 0.85
# Evaluation batches at most this many times the training budget: GoEmotions' validation split (~315k tokens with
# the instruction prompt) then takes 5 batches of 65,536 tokens; the activation estimate is rough, so no more is asked
# of it. On the H200 (2026-12-03, docs/benchmarks.md "The lean LoRA forward") 8x did not shorten the evaluations
# against 2x (2.01 + 1.74 s against 1.96 + 1.94 s, two machines): not bound by per-batch host work there.
EVAL_BUDGET_CAP = 8
OPTIONS = (  # (load_in_4bit, gradient_checkpointing, offload_checkpointing), cheapest first
    (False, False, False), (False, True, False), (True, False, False), (True, True, False), (True, True, True))
# Unsloth 2026.10.9 offloads the saved layer inputs only from this sequence length (max_seq_length) up: below it,
# `use_gradient_checkpointing="unsloth"` becomes plain checkpointing ("Offloading is not worth it below ~512",
# apply_unsloth_gradient_checkpointing in unsloth/models/_utils.py). bitsandbytes + peft has no offloading at all.
UNSLOTH_OFFLOAD_MIN_LENGTH = 512
# Checkpointed: the layer being recomputed holds its activations and, during its backward, gradients of about the same
# size. Measured on the 24B shape (40 layers, 4-bit, Unsloth, H100, 2026-12-06, docs/benchmarks.md "The LM head
# dropped"): 18.45 GiB at 4,096 tokens and 23.61 at 8,192, 1.29 MiB per token, against 0.74 MiB (layer inputs plus
# one set) the estimate counted before, which put 8,192 tokens at 21.44 GiB, under the measured peak. With 2 sets:
# 19.86 and 24.21 GiB.
RECOMPUTED_LAYER_SETS = 2


@dataclass
class BackboneShape:
    """The few numbers the estimate needs (from a transformers config: `shape_of(config)`)."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    linear_params_per_layer: int
    lora_targets: int = 7

    @property
    def linear_params(self) -> int:
        return self.layers * self.linear_params_per_layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden  # the input embedding; the classifier holds no LM head

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params


def shape_of(config: Any) -> BackboneShape:
    """A BackboneShape from a transformers config (decoders and BERT-style encoders; multimodal: its text config)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(config.hidden_size)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    gated = getattr(config, "hidden_act", "silu") in ("silu", "swiglu") or hasattr(config, "num_key_value_heads")
    attention = hidden * heads * head_dim * 2 + 2 * hidden * kv_heads * head_dim
    mlp = (3 if gated else 2) * hidden * intermediate
    return BackboneShape(layers=int(config.num_hidden_layers), hidden=hidden, intermediate=intermediate,
                         vocab=int(getattr(config, "vocab_size", 0) or 0), linear_params_per_layer=attention + mlp,
                         lora_targets=7 if gated else 4)


def estimate_gib(shape: BackboneShape, *, tokens_per_batch: int, load_in_4bit: bool, gradient_checkpointing: bool,
                 offload_checkpointing: bool = False, lora_r: int | None = 16, on_gpu: bool = True) -> dict[str, float]:
    """Estimated peak GPU memory (GiB) by part, and its total, for one training configuration."""
    param_bytes = 2 if on_gpu else 4
    if load_in_4bit:
        weights = shape.linear_params * NF4_BYTES_PER_PARAM + shape.embedding_params * 2
    elif lora_r is None:
        weights = shape.params * 4  # full fine-tuning keeps float32 master weights (emo_hf.backbones)
    else:
        weights = shape.params * param_bytes
    if lora_r is None:
        # Full fine-tuning: float32 weights are counted above; add their gradients and two AdamW moments. A 4-bit
        # backbone without LoRA stays frozen (only the head trains).
        training = 0 if load_in_4bit else shape.params * (ADAM_BYTES_PER_TRAINABLE - 4)
    else:
        # LoRA: r x (in + out) per target; in + out = 2 x hidden for attention, hidden + MLP for the MLP projections
        trainable = shape.layers * lora_r * (4 * 2 * shape.hidden + 3 * (shape.hidden + shape.intermediate))
        training = trainable * ADAM_BYTES_PER_TRAINABLE
    per_token_layer = 2 * (10 * shape.hidden + 4 * shape.intermediate)
    if gradient_checkpointing:
        kept = 0 if offload_checkpointing else tokens_per_batch * shape.layers * 2 * shape.hidden
        activations = kept + tokens_per_batch * RECOMPUTED_LAYER_SETS * per_token_layer
    else:
        activations = tokens_per_batch * shape.layers * per_token_layer
    largest_linear = shape.hidden * max(shape.intermediate, shape.hidden)
    workspace = (2 * largest_linear * 2 if load_in_4bit else 0) + FIXED_OVERHEAD_GIB * GIB
    parts = {"weights": weights, "training_state": training, "activations": activations,
             "workspace": workspace}
    out = {k: round(v / GIB, 2) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / GIB, 2)
    return out


@dataclass
class MemoryPlan:
    load_in_4bit: bool
    gradient_checkpointing: bool
    offload_checkpointing: bool
    free_gib: float | None
    tokens_per_batch: int
    estimate_gib: dict[str, float]
    reason: str
    decided: list[str] = field(default_factory=list)  # which fields the plan chose (the others were given)
    eval_tokens_per_batch: int | None = None  # tokens per evaluation batch (eval_tokens_per_batch); None = unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"memory plan: load_in_4bit={self.load_in_4bit}, gradient_checkpointing={self.gradient_checkpointing}, "
                f"offload_checkpointing={self.offload_checkpointing} (estimated {self.estimate_gib['total']} GiB"
                + (f" of {self.free_gib} GiB free" if self.free_gib is not None else "") + f"; {self.reason})")


def eval_tokens_per_batch(shape: BackboneShape, *, tokens_per_batch: int, gradient_checkpointing: bool,
                          offload_checkpointing: bool = False) -> int:
    """Tokens per evaluation batch: as many as a forward without gradients (one layer's activations at a time) holds
    in the memory the training step's layer inputs and one layer's set took (estimate_gib's model without the
    backward's gradients, which an evaluation never has: an under-count on purpose), at least the training budget and at
    most EVAL_BUDGET_CAP times it. Qwen2.5-0.5B without checkpointing at 8,192 tokens: 65,536 (8x, the cap; the
    memory would allow 24x); the 24B shape with checkpointing: ~2.1x; with offloaded checkpointing: 1x."""
    per_token_layer = 2 * (10 * shape.hidden + 4 * shape.intermediate)
    if not gradient_checkpointing:
        kept_per_token = shape.layers * per_token_layer
    elif offload_checkpointing:
        kept_per_token = per_token_layer
    else:
        kept_per_token = shape.layers * 2 * shape.hidden + per_token_layer
    fits = tokens_per_batch * kept_per_token // per_token_layer
    return int(max(tokens_per_batch, min(EVAL_BUDGET_CAP * tokens_per_batch, fits)))


def offload_unavailable(*, unsloth: bool | None, lora_r: int | None, max_length: int, on_gpu: bool,
                        load_in_4bit: bool | None = None) -> str | None:
    """None if a run with these settings could train with Unsloth's offloaded checkpointing, else why not (the plan
    then never picks it, and an explicit offload_checkpointing=True is refused: before, it was silently not applied).
    Unsloth trains a run when asked (`unsloth=True`), or when unset and the backbone is 4-bit (emo_hf.backbones)."""
    if not on_gpu:
        return "offloading is GPU-only"
    if unsloth is False or not lora_r:
        return "only Unsloth offloads (--no-unsloth or no LoRA: transformers + peft, which has no offloading)"
    if unsloth is None and load_in_4bit is False:
        return ("only Unsloth offloads, and a 16-bit backbone trains through transformers + peft unless --unsloth "
                "is given")
    from .backbones.training import unsloth_available

    if not unsloth_available():
        return "only Unsloth offloads, and it is not installed (pip install 'emo-hf[gpu]')"
    if max_length < UNSLOTH_OFFLOAD_MIN_LENGTH:
        return (f"Unsloth offloads only from max_length {UNSLOTH_OFFLOAD_MIN_LENGTH} (here {max_length}); "
                "below it, it checkpoints without offloading")
    return None


def _refuse_unavailable_offload(offload_checkpointing: bool | None, no_offload_reason: str | None) -> None:
    if no_offload_reason and offload_checkpointing:
        raise ValueError(f"offload_checkpointing=True cannot apply: {no_offload_reason}. Drop --offload-checkpointing "
                         "(checkpointing alone: --gradient-checkpointing), or lower --max-tokens-per-batch / "
                         "--batch-size to save memory.")


def plan_memory(shape: BackboneShape, *, free_bytes: float | None, tokens_per_batch: int, lora_r: int | None = 16,
                on_gpu: bool = True, load_in_4bit: bool | None = None, gradient_checkpointing: bool | None = None,
                offload_checkpointing: bool | None = None, headroom: float = HEADROOM,
                no_offload_reason: str | None = None) -> MemoryPlan:
    """The cheapest (4-bit, checkpointing, offload) option whose estimate fits `headroom` x `free_bytes`.

    Arguments given as True/False are kept; None ones are chosen. On CPU (`on_gpu=False`) nothing is quantised or
    offloaded and checkpointing stays off unless asked for (host memory is not what limits a CPU run here).
    `no_offload_reason` (`offload_unavailable(...)`): offloading cannot happen in this run, so no option offloads.
    """
    _refuse_unavailable_offload(offload_checkpointing, no_offload_reason)
    given = {"load_in_4bit": load_in_4bit, "gradient_checkpointing": gradient_checkpointing,
             "offload_checkpointing": offload_checkpointing}
    decided = [k for k, v in given.items() if v is None]
    if no_offload_reason:
        given["offload_checkpointing"] = offload_checkpointing = False
    free_gib = None if free_bytes is None else round(free_bytes / GIB, 2)

    def estimate(option: tuple[bool, bool, bool]) -> dict[str, float]:
        return estimate_gib(shape, tokens_per_batch=tokens_per_batch, load_in_4bit=option[0],
                            gradient_checkpointing=option[1], offload_checkpointing=option[2], lora_r=lora_r,
                            on_gpu=on_gpu)

    def plan(option: tuple[bool, bool, bool], reason: str) -> MemoryPlan:
        eval_tokens = eval_tokens_per_batch(shape, tokens_per_batch=tokens_per_batch, gradient_checkpointing=option[1],
                                            offload_checkpointing=option[2])
        if no_offload_reason and on_gpu and option[1]:
            reason += f"; no offloading: {no_offload_reason}"
        return MemoryPlan(*option, free_gib, tokens_per_batch, estimate(option), reason, decided, eval_tokens)

    if not on_gpu:
        option = (bool(load_in_4bit), bool(gradient_checkpointing), bool(offload_checkpointing))
        return plan(option, "CPU: no quantisation or offloading")
    candidates = [o for o in OPTIONS if all(given[k] is None or given[k] == v for k, v in zip(given, o))]
    if not candidates:  # e.g. offload=True with checkpointing=False: keep what was given, offload implies checkpoints
        candidates = [(bool(load_in_4bit), bool(gradient_checkpointing) or bool(offload_checkpointing),
                       bool(offload_checkpointing))]
    budget = None if free_bytes is None else headroom * free_bytes / GIB
    for option in candidates:
        total = estimate(option)["total"]
        if budget is None or total <= budget:
            reason = ("no free-memory reading: the cheapest allowed option" if budget is None else
                      f"the cheapest allowed option under {headroom:.0%} of the free memory ({budget:.1f} GiB)")
            return plan(option, reason)
    option = candidates[-1]
    reason = (f"nothing allowed fits {headroom:.0%} of the free memory ({budget:.1f} GiB): the smallest allowed option; "
              "lower --max-tokens-per-batch / --batch-size if it runs out of memory")
    return plan(option, reason)


def plan_for_settings(settings: Any, backbone_folder: str, *, device: str | None = None) -> MemoryPlan:
    """The plan for a TrainSettings on this machine (free memory of the current CUDA device, or CPU).

    Reads only the backbone's config (no weights). If the config cannot be read, the given values are kept and
    None ones fall back to the loader's defaults (4-bit + checkpointing on a GPU).
    """
    import torch

    on_gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    tokens = int(settings.max_tokens_per_batch or settings.batch_size * settings.max_length)
    if settings.input_mode == "embedding":
        tokens = settings.batch_size * settings.num_soft_tokens
    free = torch.cuda.mem_get_info()[0] if on_gpu else None
    no_offload_reason = offload_unavailable(unsloth=settings.unsloth, lora_r=settings.lora_r,
                                            max_length=settings.max_length, on_gpu=on_gpu,
                                            load_in_4bit=settings.load_in_4bit)
    _refuse_unavailable_offload(settings.offload_checkpointing, no_offload_reason)
    try:
        shape = shape_of(_read_config(backbone_folder))
    except Exception as error:  # a config we cannot read: say so, keep the old behaviour
        logger.warning("memory plan: could not read the config of %s (%s); using the loader's defaults.",
                       backbone_folder, error)
        fallback = (True if settings.load_in_4bit is None else settings.load_in_4bit) if on_gpu else False
        ckpt = on_gpu if settings.gradient_checkpointing is None else settings.gradient_checkpointing
        offload = bool(settings.offload_checkpointing)
        return MemoryPlan(bool(fallback), bool(ckpt), offload, None if free is None else round(free / GIB, 2),
                          tokens, {"total": float("nan")}, f"config unreadable: {error}", [])
    plan = plan_memory(shape, free_bytes=free, tokens_per_batch=tokens, lora_r=settings.lora_r, on_gpu=on_gpu,
                       load_in_4bit=settings.load_in_4bit, gradient_checkpointing=settings.gradient_checkpointing,
                       offload_checkpointing=settings.offload_checkpointing, no_offload_reason=no_offload_reason)
    logger.info(plan.describe())
    print(f"emo_hf: {plan.describe()}")
    return plan


def _read_config(backbone_folder: str):
    from transformers import AutoConfig

    from .configuration import resolve_pretrained

    folder, gguf_file = resolve_pretrained(backbone_folder)
    return AutoConfig.from_pretrained(folder, gguf_file=gguf_file) if gguf_file else AutoConfig.from_pretrained(folder)
