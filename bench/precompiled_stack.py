#!/usr/bin/env python
"""What `--precompile` saves a warm run (emo_hf.backbones.precompile): the first training step of the stack scope
with the saved compiled graph loaded, against Dynamo tracing it, each in a fresh process, on a Qwen2.5-0.5B-shaped
decoder with random weights and LoRA r=16 on the 7 projections; and whether the loaded graph gives eager's outputs and
LoRA gradients over three batch shapes.

    python bench/precompiled_stack.py --layers 4                                  # CPU, inductor
    python bench/precompiled_stack.py --layers 4 --device cuda --mode reduce-overhead --json out.json   # the preset's
    python bench/precompiled_stack.py --layers 24 --backend aot_eager             # no code generation (minutes less)
    # a cache carried to another machine: save on one, copy DIR over, load on the other (same --layers/--device/--mode)
    python bench/precompiled_stack.py --phases save --cache-dir DIR
    python bench/precompiled_stack.py --phases load,load-empty-cache --cache-dir DIR

Phases, one subprocess each, in this order, sharing one inductor cache folder: `save` (no saved graph yet: compiled
ahead of time and saved; also fills inductor's cache), `load` (loads it), `load-empty-cache` (loads it with an empty
inductor cache folder: is the saved file all a later run needs, or does it lean on inductor's cache too?), `trace`
twice (plain torch.compile: the first may miss inductor's cache, since the ahead-of-time compile keys its entries
differently; the second is a warm run without --precompile). Each prints one JSON line: first and second step seconds, torch's compile timers, the
precompile record, the largest output and gradient differences from an eager copy.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

SHAPES = [(8, 40), (5, 64), (11, 24)]
PHASES = ("save", "load", "load-empty-cache", "trace", "trace")


def phase(args: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2Model

    from emo_hf.backbones.compilation import compile_layers, stack_owner

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=args.layers,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512)
    model = Qwen2Model(config).to(device=args.device, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    eager = copy.deepcopy(model)
    precompile_dir = os.path.join(args.cache, "emo_hf_precompiled") if args.phase in ("save", "load") else None
    compile_layers(model, scope="stack", backend=args.backend, mode=args.mode, precompile_dir=precompile_dir)

    def step(net, rows, length):
        generator = torch.Generator().manual_seed(rows * 1000 + length)
        ids = torch.randint(0, 1000, (rows, length), generator=generator).to(args.device)
        mask = torch.ones(rows, length, dtype=torch.long, device=args.device)
        mask[0, -3:] = 0  # one padded row, as in training
        net.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        out = net(input_ids=ids, attention_mask=mask).last_hidden_state
        out.float().pow(2).mean().backward()
        grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
        return out.detach().clone(), grads

    def timed(rows, length):
        start = time.perf_counter()
        result = step(model, rows, length)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, result

    first, _ = timed(*SHAPES[0])
    second, _ = timed(*SHAPES[0])
    worst_out = worst_grad = 0.0
    for rows, length in SHAPES:
        _, (out, grads) = timed(rows, length)
        want_out, want_grads = step(eager, rows, length)
        worst_out = max(worst_out, (out.float() - want_out.float()).abs().max().item())
        worst_grad = max(worst_grad, max((grads[n].float() - g.float()).abs().max().item() for n, g in want_grads.items()))
    precompiled = getattr(stack_owner(model).forward, "precompiled", None)
    # torch's own timers of torch.compile's phases in this process (as emo_hf.step_timing records them):
    # _compile.compile_inner = Dynamo's whole trace, fullgraph_capture = the ahead-of-time compile's trace.
    timers = {name: round(sum(seconds), 2) for name, seconds in torch._dynamo.utils.compilation_time_metrics.items()}
    return {"phase": args.phase, "layers": args.layers, "device": args.device, "mode": args.mode,
            "backend": args.backend, "torch": torch.__version__, "first_step_s": round(first, 2),
            "second_step_s": round(second, 3), "max_abs_output_diff": worst_out, "max_abs_grad_diff": worst_grad,
            "precompile": precompiled.info if precompiled is not None else None,
            "compile_timers": timers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    parser.add_argument("--backend", default="inductor", choices=["inductor", "aot_eager"])
    parser.add_argument("--json", default=None, help="also write the phases' results here")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma list, run in this order (default "
                        f"{','.join(PHASES)})")
    parser.add_argument("--cache-dir", default=None, help="the shared cache folder (saved graph + inductor's cache), "
                        "kept afterwards; default a new temporary folder")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.phase:
        print("RESULT " + json.dumps(phase(args), default=str), flush=True)
        return
    phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown {unknown}; choose from {','.join(dict.fromkeys(PHASES))}, "
                     "e.g. --phases save,load")
    cache = args.cache_dir or tempfile.mkdtemp(prefix="precompiled-stack-")
    os.makedirs(cache, exist_ok=True)
    results = []
    for name in phases:
        phase_name = "load" if name == "load-empty-cache" else name
        command = [sys.executable, __file__, "--phase", phase_name, "--cache", cache, "--layers", str(args.layers),
                   "--device", args.device, "--dtype", args.dtype, "--backend", args.backend]
        if args.mode:
            command += ["--mode", args.mode]
        inductor_cache = tempfile.mkdtemp(prefix="empty-inductor-cache-") if name == "load-empty-cache" else cache
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": inductor_cache})
        lines = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(lines[-1]) if lines else {"phase": name, "error": done.stderr[-2000:]}
        result["phase"] = name
        if inductor_cache != cache:  # what inductor wrote beside the saved file: nothing, if the file is all it needs
            result["inductor_cache_files_written"] = sum(len(files) for _, _, files in os.walk(inductor_cache))
        result["process_s"] = round(time.perf_counter() - start, 1)
        results.append(result)
        print(json.dumps(result, default=str), flush=True)
        if args.json:
            with open(args.json + ".tmp", "w") as handle:
                json.dump(results, handle, indent=1, default=str)
            os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
