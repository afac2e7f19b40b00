"""`emo-hf train` with inductor settings the library does not set, to measure one before it becomes a library choice.

    python bench/train_with_inductor_config.py triton.skip_cudagraph_warmup=True -- --data DATA --preset qwen2.5-0.5b

Why `triton.skip_cudagraph_warmup`: under CUDA graph trees each new batch shape is run once without a graph ("warm-up"),
then recorded on its next call, two slow steps per shape. Skipping the warm-up records on the first call, if that
call records cleanly. On the H200 (2026-12-03, with --fixed-batch-shapes) it did not: the first step failed with
cudaErrorStreamCaptureInvalidated (docs/benchmarks.md, "Fixed batch shapes"). A changed inductor setting likely misses a
warm inductor cache too (the settings are part of its key), so such a run may compile cold.
Everything after `--` goes to `emo-hf train` unchanged; an unknown key fails before anything loads.
"""

from __future__ import annotations

import sys


def _value(text: str):
    return {"True": True, "False": False}.get(text, int(text) if text.lstrip("-").isdigit() else text)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python bench/train_with_inductor_config.py KEY=VALUE [KEY=VALUE ...] -- TRAIN ARGS "
              "(e.g. triton.skip_cudagraph_warmup=True -- --data DATA --preset qwen2.5-0.5b)", file=sys.stderr)
        return 2
    split = argv.index("--")
    settings, train_args = argv[:split], argv[split + 1:]
    import torch._inductor.config as inductor_config

    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"{item!r} is not KEY=VALUE: e.g. triton.skip_cudagraph_warmup=True", file=sys.stderr)
            return 2
        setattr(inductor_config, key, _value(value))  # AttributeError names a key this torch does not have
        print(f"torch._inductor.config.{key} = {getattr(inductor_config, key)!r}", flush=True)
    from emo_hf.cli import main as emo_hf_main

    return emo_hf_main(["train", *train_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
