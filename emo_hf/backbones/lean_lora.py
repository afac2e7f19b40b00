"""A shorter forward for peft's LoRA projections, the same arithmetic in fewer Python steps for Dynamo to trace.

    >>> from emo_hf.backbones.lean_lora import use_lean_lora_forward
    >>> use_lean_lora_forward(model.backbone)     # after LoRA is injected, before torch.compile; returns the count
    168                                           # Qwen2.5-0.5B: 24 layers x 7 projections

Why: under `--compile-scope stack` Dynamo traces all 24 layers on every process start, and no cache spares it: 16.7 s
of a warm run's 66.8 s on the H200 (docs/benchmarks.md, "Fixed batch shapes"). peft's `lora.Linear.forward` calls
four modules per projection (the base `nn.Linear`, the dropout, `lora_A`, `lora_B`), each of which Dynamo inlines
through `nn.Module.__call__`, plus argument checks and a loop over the active adapters: 168 projections' worth. The
lean forward reads the same weights and does the same operations in the same order with `F.linear`, so it gives the
same results, and Dynamo traces the layer loop in less time: 27.8 and 28.6 s against 33.2 and 31.0 s with peft's
forward, the bare layers without LoRA 15.9 s (`python bench/dynamo_trace_time.py --dtype float32 [--peft-lora]
[--no-lora]`, alternated, 2026-12-03, the 2-core VM, torch 2.13.0+cpu; docs/benchmarks.md). On the H200 it trained
the same model as peft's forward to the last digit of the validation score; a faster run there is not shown yet (no
same-machine comparison: docs/benchmarks.md, "The lean LoRA forward").

It only takes over the plain case, which is what emo_hf trains: one active adapter, not merged, adapters enabled, no
variant (DoRA and the like), no extra forward arguments, a plain `nn.Linear` base without hooks. Anything else (peft's
`disable_adapter()` context, a second adapter set active, a merge) is checked on every call and goes to peft's own
forward. Module names, `state_dict()` and saving are unchanged: only the instance's `forward` attribute is set.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def use_lean_lora_forward(backbone: nn.Module) -> int:
    """Give every plain peft LoRA `Linear` of `backbone` the lean forward; returns how many were given it (0 when
    peft is not installed or no projection qualifies). Idempotent."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return 0
    count = 0
    for module in backbone.modules():
        if type(module) is not LoraLinear:  # exact class: bitsandbytes' and others' subclasses keep their forward
            continue
        adapter = _single_plain_adapter(module)
        if adapter is None:
            continue
        # The adapter's name only: the modules are looked up on every call, so one replaced later is still the one
        # used (holding them here as well traced no faster: 29.3 s against 27.8-28.6 s, 2026-12-03, 2-core VM).
        module._emo_lean_adapter = adapter
        if getattr(module.forward, "__func__", None) is not _lean_forward:
            module.forward = types.MethodType(_lean_forward, module)
        count += 1
    return count


def lean_lora_count(backbone: nn.Module) -> int:
    """How many modules of `backbone` run the lean forward (training_info.json "compile" records it)."""
    return sum(getattr(m.forward, "__func__", None) is _lean_forward for m in backbone.modules())


def _single_plain_adapter(module: nn.Module) -> str | None:
    """The one adapter the lean forward can run for `module`, or None where peft's forward must stay."""
    base = module.base_layer
    active = list(module.active_adapters)
    if len(active) != 1 or active[0] not in module.lora_A or active[0] in module.lora_variant:
        return None
    if type(base) is not nn.Linear or base._forward_hooks or base._forward_pre_hooks or hasattr(base, "_hf_hook"):
        return None
    dropout = module.lora_dropout[active[0]]
    if not isinstance(dropout, (nn.Identity, nn.Dropout)):
        return None
    return active[0]


def _lean_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft's `lora.Linear.forward` for one plain adapter: base(x) + lora_B(lora_A(dropout(x))) * scaling, the sum
    cast back to the base result's dtype. x: [..., in_features] -> [..., out_features]."""
    name = self._emo_lean_adapter
    if args or kwargs or self.disable_adapters or self.merged or self.active_adapters != [name]:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer
    result = F.linear(x, base.weight, base.bias)
    lora_a = self.lora_A[name].weight  # [r, in]
    lora_b = self.lora_B[name]  # weight [out, r]; a bias only with peft's lora_bias=True
    if x.dtype != lora_a.dtype and getattr(self, "cast_input_dtype_enabled", True):
        x = x.to(lora_a.dtype)
    dropout = self.lora_dropout[name]
    if isinstance(dropout, nn.Dropout):
        x = F.dropout(x, dropout.p, dropout.training, dropout.inplace)
    return (result + F.linear(F.linear(x, lora_a), lora_b.weight, lora_b.bias) * self.scaling[name]).to(result.dtype)
