"""Which precision training runs in: bfloat16 autocast where the device computes it natively, else float32.

    from emo_hf.precision import resolve_bf16
    bf16, why_not = resolve_bf16(settings.bf16)     # (False, "this CPU has no native bfloat16 ...") on an old CPU

Why: on a CPU with native bfloat16 (x86 AVX512-BF16 / AMX, ARM BF16) autocast doubles the training work rate; the
`minilm` preset trained 2 epochs of GoEmotions in 532.8 s on the 2-core VM with it, against 565.5 s for 1 epoch in
float32, test macro-F1 0.551 vs 0.526 (docs/benchmarks.md, "CPU main job"). A CPU without it emulates bfloat16,
several times slower than float32, so there the request is dropped, with a printed line and the effective value
recorded in training_info.json. GPUs are left to the request (every CUDA card this project targets has bf16).
"""

from __future__ import annotations

from pathlib import Path

# /proc/cpuinfo flags that mean bfloat16 matrix arithmetic in hardware (x86: AVX512-BF16, AMX; ARM: BF16).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU lists a native bfloat16 flag; False when it does not or cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and set(value.split()) & set(NATIVE_BF16_FLAGS):
            return True
    return False


def resolve_bf16(requested: bool) -> tuple[bool, str | None]:
    """(bf16 to train with, why a request was dropped or None)."""
    import torch

    if not requested or torch.cuda.is_available() or cpu_supports_bf16():
        return bool(requested), None
    return False, ("this CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 / bf16 flag in /proc/cpuinfo), where "
                   "bf16 autocast is slower than float32: training in float32")
