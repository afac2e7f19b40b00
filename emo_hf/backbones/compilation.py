"""Regional `torch.compile`: each repeated block of a backbone (a decoder or encoder layer) compiled once, the compiled
code shared by every layer, shapes left dynamic so the token-budget batches' bucketed lengths and row counts do not
recompile.

    >>> from emo_hf.backbones.compilation import compile_layers
    >>> compile_layers(model.backbone)            # after LoRA is injected; returns the number of layers compiled
    24

Why regional and not `torch.compile(model)`: a small decoder trained with LoRA is bound by the host launching ~250
small kernels per layer per step (docs/benchmarks.md, "The real Qwen2.5-Coder-0.5B"): fusing a layer's element-wise
work (casts, LoRA scaling and adds, norms, rotary, SiLU * up) removes most of those launches, and compiling one layer
costs a fraction of compiling the whole stack (PyTorch's regional-compilation recipe: identical layers reuse the code).
`nn.Module.compile()` compiles in place, so parameter names, `state_dict()` and saving are unchanged. The mask
building, embedding, head and loss stay eager.

Not used with gradient checkpointing (the recomputed forward under Dynamo is not measured here) nor on the Unsloth
path (Unsloth compiles its own regions): `compile_skip_reason` names why, the trainer then trains eager and records
it (training_info.json "compile"), and `compile_layers` itself refuses a checkpointed backbone.
"""

from __future__ import annotations

import logging

from torch import nn

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


def compile_layers(backbone: nn.Module, *, dynamic: bool = True, backend: str = "inductor",
                   mode: str | None = None) -> int:
    """Compile every block of `repeated_layers(backbone)` in place (`nn.Module.compile`); returns how many.

    `dynamic=True` lets batch and sequence sizes be symbolic, so the few bucket lengths and the varying rows per
    batch share one graph per train / eval mode (in torch 2.11-2.13 the first call of each still compiles for its
    exact shape and the second call's new shape recompiles symbolically, once). `backend` / `mode` go to
    `torch.compile` (the tests use "aot_eager": Dynamo and AOTAutograd without code generation)."""
    if getattr(backbone, "is_gradient_checkpointing", False):
        raise ValueError("compile=True with gradient checkpointing is not supported: the memory plan chose "
                         "checkpointing for this backbone and batch (it does so only when memory needs it); train "
                         "without --compile, or with --no-gradient-checkpointing and a smaller batch.")
    layers = repeated_layers(backbone)
    import torch._dynamo

    # Train and eval mode, padded and unpadded batches and (Gemma) sliding vs full attention layers each guard their
    # own graph; the default limit of 8 could be reached by a run that evaluates as well as trains.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
    for layer in layers:
        layer.compile(dynamic=dynamic, backend=backend, mode=mode)
    logger.info("compiled %d %s layers (backend %s, dynamic=%s)", len(layers), type(layers[0]).__name__, backend,
                dynamic)
    return len(layers)
