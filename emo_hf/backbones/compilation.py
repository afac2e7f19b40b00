"""Regional `torch.compile`: each repeated block of a backbone (a decoder or encoder layer) compiled once, the compiled
code shared by every layer, shapes left dynamic so the token-budget batches' bucketed lengths and row counts do not
recompile.

    >>> from emo_hf.backbones.compilation import compile_layers
    >>> compile_layers(model.backbone)            # after LoRA is injected; returns the number of layers compiled
    24
    >>> compile_layers(model.backbone, scope="stack", mode="reduce-overhead")   # the whole layer loop, CUDA graphs

`scope="stack"` compiles the module that runs the layer loop instead, as one region: the only way CUDA graphs can work
here, since a per-layer graph replayed for the next layer overwrites its own input. On the H200 (docs/benchmarks.md,
"The whole layer loop as one compiled region") it ran Qwen2.5-0.5B's steps in 52 ms with CUDA graphs against ~130 ms
per layer, but compiled for ~300 s from a cold cache (Dynamo traces every layer) against ~20 s, ~110 s of it for the
evaluation graph. The stack scope now compiles training only and evaluates eager: 2 epochs in 222.9 s from a cold
cache instead of 366.4 s, ~150 s of it compiling and recording (docs/benchmarks.md, "Evaluation eager under the stack
scope").

Why regional and not `torch.compile(model)`: a small decoder trained with LoRA is bound by the host launching ~250
small kernels per layer per step (docs/benchmarks.md, "The real Qwen2.5-Coder-0.5B"): fusing a layer's element-wise
work (casts, LoRA scaling and adds, norms, rotary, SiLU * up) removes most of those launches, and compiling one layer
costs a fraction of compiling the whole stack (PyTorch's regional-compilation recipe: identical layers reuse the code).
`nn.Module.compile()` compiles in place, so parameter names, `state_dict()` and saving are unchanged. Per layer, the mask
building, embedding, head and loss stay eager.

Why the stack scope does not mark its layers as `torch.compiler.nested_compile_region`s (compile one layer, reuse
its code): with inductor's buffer reuse their LoRA gradients came out wrong (torch 2.13; `python
bench/nested_region_check.py --backend inductor`; right with `--inductor allow_buffer_reuse=False`), and they do not
shorten Dynamo's trace, the part of a warm run's first step no cache spares (21.7 s against 21.0 s unrolled: `python
bench/dynamo_trace_time.py --backend aot_eager [--nested]`), only AOTAutograd's (docs/benchmarks.md, "The shared
prefix as one packed call").

Under the stack scope the compiled training graph can be saved and loaded by later runs, sparing Dynamo's trace
(`precompile_dir`, emo_hf.backbones.precompile; the trainer's `--precompile`, on by default there).

Not used with gradient checkpointing (the recomputed forward under Dynamo is not measured here) nor on the Unsloth
path (Unsloth compiles its own regions): `compile_skip_reason` names why, the trainer then trains eager and records
it (training_info.json "compile"), and `compile_layers` itself refuses a checkpointed backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .lean_lora import use_lean_lora_forward

logger = logging.getLogger(__name__)


def repeated_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of identical blocks: the longest `nn.ModuleList` whose children all have one class
    (`model.layers` of Llama / Mistral / Qwen / Gemma, `encoder.layer` of BERT-style encoders)."""
    best: nn.ModuleList | None = None
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ValueError(f"compile: {type(backbone).__name__} has no list of identical layers to compile; train "
                         "without --compile.")
    return best


def compile_skip_reason(model: nn.Module) -> str | None:
    """Why `--compile` does not apply to this loaded classifier, or None: the Unsloth path (it compiles its own
    regions) and gradient checkpointing (chosen by the memory plan when memory needs it) keep their eager layers."""
    if "_unsloth_model" in vars(model):
        return "the backbone was loaded through Unsloth, which compiles its own kernels"
    if getattr(model.backbone, "is_gradient_checkpointing", False):
        return "gradient checkpointing is on (the memory plan chose it for this backbone and batch)"
    return None


def stack_owner(backbone: nn.Module) -> nn.Module:
    """The module that holds `repeated_layers(backbone)` as a child (a decoder's `model`, an encoder's `encoder`): its
    forward runs the whole layer loop."""
    layers = repeated_layers(backbone)
    for module in backbone.modules():
        if any(child is layers for child in module.children()):
            return module
    raise ValueError(f"compile: no module of {type(backbone).__name__} holds its layer list; use scope='layers'.")


def compile_layers(backbone: nn.Module, *, scope: str = "layers", dynamic: bool = True,
                   backend: str | Callable = "inductor", mode: str | None = None, lean_lora: bool = True,
                   precompile_dir: str | Path | None = None) -> int:
    """Compile the backbone's layers in place (`nn.Module.compile`); returns how many layers the compiled code runs.

    `scope="layers"` compiles every block of `repeated_layers(backbone)`, sharing one compiled graph; `scope="stack"`
    compiles `stack_owner(backbone)`, whose forward holds the embeddings, the mask building and the whole layer loop,
    as one region: a longer compile and one compiled call per step instead of one per layer, and the scope where CUDA
    graphs (mode "reduce-overhead") can work, since no compiled graph is then applied to its own output; there only
    the training graph is compiled (with gradients off the loop runs eager: `_compile_stack_for_training`).
    `dynamic=True` lets batch and sequence sizes be symbolic, so the few bucket lengths and the varying rows per
    batch share one training graph (and, per layer, one evaluation graph). `backend` / `mode` go to `torch.compile` (the tests
    use "aot_eager": Dynamo and AOTAutograd without code generation). `lean_lora` first gives peft's LoRA projections
    the lean forward of emo_hf.backbones.lean_lora (same results, a shorter trace). `precompile_dir` (scope "stack"
    only) saves the compiled training graph there on the first run and loads it in the next ones, sparing Dynamo's
    trace (emo_hf.backbones.precompile; `stack_owner(backbone).forward.precompiled.info` says what happened)."""
    if scope not in ("layers", "stack"):
        raise ValueError(f"compile scope {scope!r} is not valid: use scope='layers' or scope='stack'.")
    if precompile_dir is not None and scope != "stack":
        raise ValueError(f"precompile_dir={str(precompile_dir)!r} needs scope='stack' (one compiled region to save); "
                         "pass scope='stack' or drop precompile_dir.")
    if getattr(backbone, "is_gradient_checkpointing", False):
        raise ValueError("compile=True with gradient checkpointing is not supported: the memory plan chose "
                         "checkpointing for this backbone and batch (it does so only when memory needs it); train "
                         "without --compile, or with --no-gradient-checkpointing and a smaller batch.")
    layers = repeated_layers(backbone)
    import torch._dynamo
    import torch.fx.experimental._config as fx_config

    # Train and eval mode, padded and unpadded batches and (Gemma) sliding vs full attention layers each guard their
    # own graph; the default limit of 8 could be reached by a run that evaluates as well as trains.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
    # Process-wide, as PyTorch offers them (there is no per-compile switch), so set here and said in the log:
    # - specialize_float: since torch 2.6 a module's float attributes (the norms' eps, attention scaling, each LoRA
    #   projection's scaling: 11 per Qwen2 layer) become graph inputs, 0-d CPU tensors that the generated code reads
    #   with `.item()` on every call (the GPU profile of 2026-12-02 counted 27 per layer per step; 2 per step for the
    #   whole model after this). They never change during training: constants.
    # - use_duck_shape=False: with duck shaping a sequence length equal to a static size (a 64-token bucket and
    #   Qwen's head_dim 64) is unified with it, so the first batch compiled a static graph and the next one
    #   recompiled symbolically: one compilation more per graph.
    torch._dynamo.config.specialize_float = True
    fx_config.use_duck_shape = False
    lean = use_lean_lora_forward(backbone) if lean_lora else 0  # same arithmetic, fewer steps for Dynamo to trace
    if scope == "stack":
        _compile_stack_for_training(stack_owner(backbone), precompile_dir, dynamic=dynamic, backend=backend, mode=mode)
    else:
        embeddings = backbone.get_input_embeddings() if hasattr(backbone, "get_input_embeddings") else None
        if embeddings is not None and not any(getattr(h, "__name__", "") == _embeddings_require_grad.__name__
                                              for h in embeddings._forward_hooks.values()):
            embeddings.register_forward_hook(_embeddings_require_grad)
        for layer in layers:
            layer.compile(dynamic=dynamic, backend=backend, mode=mode)
    logger.info("compiled %d %s layers, scope %s (backend %s, dynamic=%s; torch._dynamo.config.specialize_float="
                "True, torch.fx.experimental._config.use_duck_shape=False; %d LoRA projections with the lean forward "
                "of emo_hf.backbones.lean_lora)", len(layers), type(layers[0]).__name__, scope, backend, dynamic, lean)
    return len(layers)


def _compile_stack_for_training(owner: nn.Module, precompile_dir: str | Path | None, **compile_kwargs) -> None:
    """Compile `owner.forward` (the whole layer loop) for training only: with gradients off (evaluation, prediction,
    the reload check) it runs eager. Why: evaluation is a graph of its own (no backward, no saved activations), and
    compiling the unrolled 24-layer loop a second time took 108.7 s from a cold cache on the H200 for two evaluations
    that then ran in 1.5 s (docs/benchmarks.md, "The whole layer loop as one compiled region"); eager, an evaluation
    of GoEmotions' validation split costs a few seconds. Per layer (scope "layers") the no-grad graph is one layer's
    and compiles in seconds, so that scope compiles evaluation too.

    The dispatcher is an instance attribute `forward`, not a submodule or parameter: state_dict() and saving are
    unchanged, and the instance keeps its class. With `precompile_dir`, training calls go through
    emo_hf.backbones.precompile.PrecompiledForward, which falls back to `compiled_forward` for calls it does not cover."""
    eager_forward = owner.forward
    compiled_forward = torch.compile(eager_forward, **compile_kwargs)
    training_forward = compiled_forward
    if precompile_dir is not None:
        from .precompile import PrecompiledForward

        training_forward = PrecompiledForward(owner, compiled_forward, precompile_dir, **compile_kwargs)

    def forward(*args, **kwargs):
        if torch.is_grad_enabled():
            return training_forward(*args, **kwargs)
        return eager_forward(*args, **kwargs)

    forward.compiled_forward = compiled_forward  # for tests and debugging
    forward.precompiled = training_forward if precompile_dir is not None else None
    owner.forward = forward


def _embeddings_require_grad(module: nn.Module, inputs, output):
    """Forward hook on the (frozen) input embeddings: when training, their output requires grad, so the first layer's
    input looks like every other layer's and it shares their compiled graph (otherwise Dynamo guards on
    `requires_grad` and compiles a second training graph for layer 0 alone). Cost: the backward also computes the
    first layer's input gradient, ~1/n_layers of the input-gradient matmuls. Not in evaluation (no grad), where every
    layer's input already needs none."""
    if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and not output.requires_grad:
        output.requires_grad_(True)
    return output
