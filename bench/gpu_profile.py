#!/usr/bin/env python
"""Where a training step's time goes: torch.profiler over a few steps of the real `emo_hf.trainer.train` loop
(Trainer, collator, optimizer, logging, the loader's 4-bit / checkpointing choices), one subprocess per variant.

Variants (--variants, comma list):
  before   the settings as they were: 4-bit, gradient checkpointing (Unsloth's "unsloth" kind was asked for; at
           max_length 128 Unsloth does not offload), batch 64 rows, length-grouped (the mistral-small-24b preset
           before the memory plan and token budgets)
  after    the library's defaults now: 4-bit / checkpointing / offloading decided by emo_hf.memory_plan, batches of
           --max-tokens-per-batch padded tokens (emo_hf.batching)
  +MOD     added to a variant, e.g. after+compile: 'compile' = --compile (regional torch.compile, inductor),
           'eager' = --no-compile (the qwen2.5-0.5b preset compiles), 'stack' = --compile --compile-scope stack (the
           whole layer loop as one region), 'stack-ro' = the same with --compile-mode reduce-overhead (CUDA graphs;
           per layer they failed on the H200 on 2026-12-02), 'unsloth' = --unsloth (Unsloth in 16-bit when the plan
           picks bf16), 'plain' = --prompt plain, 'prefix' = --shared-prefix (the instruction prompt's template once
           per batch; 2x slower with stack-ro on the H200 on 2026-12-02, not yet profiled), 'workers0' = no batch workers
Per variant it reports: wall ms per optimiser step (mean over the profiled steps, no extra syncs), GPU kernel ms per
step (sum of CUDA kernel time: the GPU is idle for the rest), host-side op time, kernel launches and host<->device
syncs per step (cudaStreamSynchronize / cudaDeviceSynchronize / aten::item / _local_scalar_dense / Memcpy DtoH),
launches per decoder layer, time in 4-bit dequantisation kernels and in Unsloth's offload copies, the top ops, and
(GPU) the call sites of the last warm-up step's host-device syncs (torch.cuda.set_sync_debug_mode).

On the GPU (after the setup line of /work/shared/gpu/README.md, `.gpu` carried; DATA = an `emo-hf data build` folder,
raw is enough, e.g. `.gpu-data/data`):
    python bench/gpu_profile.py --data DATA --backbone $HOME/qwen05b --json $OUT/profile_qwen05b.json   # ~3 min
    python bench/gpu_profile.py --data DATA --shape 24b --layers 2 --json $OUT/profile_24b.json           # ~3 min
    python bench/gpu_profile.py --data DATA --backbone $HOME/qwen05b --full-run --variants after   # 2 epochs
    python bench/gpu_profile.py --data DATA --backbone $HOME/qwen05b --inference --variants after  # texts/s
CPU smoke test (tiny random Mistral, fp32, no 4-bit; ~2 min on 2 cores):
    python bench/gpu_profile.py --cpu --data DATA --steps 2 --warmup 1 --rows 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::item",
            "aten::_local_scalar_dense", "Memcpy DtoH")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder from `emo-hf data build` (its raw config)")
    p.add_argument("--backbone", default=None, help="backbone folder (e.g. the converted Qwen2.5-0.5B)")
    p.add_argument("--shape", choices=["24b", "qwen0.5b"], default=None, help="instead of --backbone, random weights "
                   "and a word-level tokenizer: '24b' = the Mistral Small 3.1 24B layer shape with --layers layers "
                   "(scripts/gpu_check.py's build_base); 'qwen0.5b' = Qwen2.5-0.5B's shape (24 layers)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--variants", default="before,after")
    p.add_argument("--preset", default=None, help="settings the variants start from (default: mistral-small-24b; "
                   "tiny-random with --cpu); e.g. qwen2.5-0.5b with its converted folder as --backbone")
    p.add_argument("--max-tokens-per-batch", type=int, default=None, help="'after': the token budget (default: the "
                   "preset's, else 16384)")
    p.add_argument("--batch-size", type=int, default=64, help="'before': rows per batch")
    p.add_argument("--rows", type=int, default=32768, help="train rows used (a seeded subset; 8,192 gave the 24B "
                   "shape's 'after' variant fewer than warmup + steps batches at 16,384 tokens)")
    p.add_argument("--warmup", type=int, default=5, help="optimiser steps before profiling (compilation, caches)")
    p.add_argument("--steps", type=int, default=10, help="optimiser steps profiled")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--full-run", action="store_true", help="no profiler: train --epochs on all train rows (the "
                   "'before'/'after' settings) and report train_seconds and validation macro-F1")
    p.add_argument("--epochs", type=float, default=2.0, help="--full-run: epochs")
    p.add_argument("--inference", action="store_true", help="no training: predict_proba texts/s on the data's test "
                   "split (real texts), the backbone loaded as the memory plan chooses, batches --inference-batches")
    p.add_argument("--inference-batches", default="64,256,auto",
                   help="rows per batch, or auto: predict_proba's default token budget")
    p.add_argument("--cpu", action="store_true", help="smoke test on CPU with the tiny random Mistral")
    p.add_argument("--json", default=None)
    p.add_argument("--scratch", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ======================================================================================================================
# Child: one variant
# ======================================================================================================================
def child_main(args: argparse.Namespace) -> int:
    variant, *modifiers = args.child.split("+")
    on_gpu = not args.cpu
    if on_gpu and (variant == "before" or "unsloth" in modifiers):
        import unsloth  # noqa: F401  (the 'before' settings ran through Unsloth; import it first)
    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(REPO))
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    base = get_preset(args.preset or ("tiny-random" if args.cpu else "mistral-small-24b"))
    settings = base.replace(backbone=args.backbone or base.backbone, train_subset=None if args.full_run else args.rows,
                            epochs=args.epochs if args.full_run else 1)
    if args.cpu:
        settings = settings.replace(bf16=False, max_length=min(settings.max_length, 32))  # a GPU preset on the CPU
    if variant == "before":
        # Issue 11's run asked Unsloth for its offloaded checkpointing, which Unsloth 2026.10.9 applies as plain
        # checkpointing below 512 tokens (emo_hf.memory_plan.UNSLOTH_OFFLOAD_MIN_LENGTH): the plan now says so, and an
        # explicit offload_checkpointing=True there is refused, so it is left to the plan.
        settings = settings.replace(load_in_4bit=on_gpu, gradient_checkpointing=True, batch_size=args.batch_size)
        settings.max_tokens_per_batch = None  # rows, not a token budget (replace() skips None values)
    else:
        settings = settings.replace(max_tokens_per_batch=args.max_tokens_per_batch or settings.max_tokens_per_batch
                                    or 16384)
    settings = apply_modifiers(settings, modifiers)
    record: dict[str, Any] = {"variant": args.child, "settings": settings.to_dict()}

    class Profile(TrainerCallback):
        def __init__(self):
            self.prof, self.times, self.done = None, [], False

        def on_train_begin(self, a, state, control, **kw):
            self.began = time.perf_counter()

        def on_step_begin(self, a, state, control, **kw):
            if on_gpu and state.global_step == args.warmup - 1:
                self.sync_sites = SyncSites().start()  # the last warm-up step: where the host waits for the GPU
            if state.global_step == args.warmup and self.prof is None:
                if getattr(self, "sync_sites", None) is not None:
                    record["sync_sites_one_step"] = self.sync_sites.stop()
                record["warmup_s"] = round(time.perf_counter() - self.began, 1)  # compilation shows here
                if on_gpu:
                    torch.cuda.synchronize()
                activities = [torch.profiler.ProfilerActivity.CPU] + (
                    [torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
                self.prof = torch.profiler.profile(activities=activities)
                self.prof.__enter__()
                self.times.append(time.perf_counter())

        def on_step_end(self, a, state, control, model=None, **kw):
            self.layers = model.backbone.config.get_text_config().num_hidden_layers
            if self.prof is not None and not self.done:
                self.times.append(time.perf_counter())
                if len(self.times) > args.steps:
                    if on_gpu:
                        torch.cuda.synchronize()
                    self.times[-1] = time.perf_counter()
                    self.prof.__exit__(None, None, None)
                    self.done = True
                    control.should_training_stop = True

    if args.inference:
        return inference_main(args, settings, on_gpu)
    profile = Profile()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="emo_profile-"))
    started = time.perf_counter()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    train(args.data, scratch / f"run-{variant}", settings, show_progress=False,
          callbacks=[] if args.full_run else [profile])
    record["run_s"] = round(time.perf_counter() - started, 1)
    info = json.loads((scratch / f"run-{variant}" / "model" / "training_info.json").read_text())
    record["memory_plan"] = info.get("memory_plan")
    record["batching"] = info.get("batching")
    record["shared_prefix"] = info.get("shared_prefix")  # used, or why not
    if args.full_run:
        record.update(status="ok", full_run=True, train_seconds=info["train_seconds"], epochs=info["epochs_run"],
                      train_rows=info["train_rows"],
                      validation_macro_f1_tuned=info["validation_metrics_tuned"].get("macro_f1"),
                      validation_macro_f1_at_05=info["validation_metrics_at_0.5"].get("macro_f1"),
                      peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None)
        print("@RESULT " + json.dumps(record), flush=True)
        return 0
    if not profile.done:
        record["status"] = f"fewer than {args.warmup + args.steps} optimiser steps: raise --rows"
        print("@RESULT " + json.dumps(record), flush=True)
        return 0
    layers = profile.layers
    steps = args.steps
    wall_ms = 1e3 * (profile.times[-1] - profile.times[0]) / steps
    events = profile.prof.key_averages()

    def device_us(e) -> float:
        return float(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0) or 0)

    # Only device-side events (kernels, memcpy): an aten op's own device time repeats its kernels' time.
    kernels = [e for e in events if device_us(e) > 0 and str(getattr(e, "device_type", "")).endswith("CUDA")]
    kernel_ms = sum(device_us(e) for e in kernels) / 1e3 / steps
    host_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx",
                                                          "cudaLaunchKernelExC", "cudaGraphLaunch")) / steps
    syncs = {k: sum(e.count for e in events if e.key == k) / steps for k in SYNC_OPS}
    dequant_ms = sum(device_us(e) for e in kernels if "dequant" in e.key.lower()) / 1e3 / steps
    offload_ms = sum(device_us(e) for e in kernels if "Memcpy" in e.key) / 1e3 / steps
    top_cpu = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    top_dev = sorted(kernels, key=device_us, reverse=True)[:args.top]
    record.update({
        "status": "ok", "layers": layers, "steps_profiled": steps, "wall_ms_per_step": round(wall_ms, 2),
        "kernel_ms_per_step": round(kernel_ms, 2), "gpu_busy_fraction": round(kernel_ms / wall_ms, 3) if on_gpu else None,
        "host_op_ms_per_step": round(host_ms, 2), "launches_per_step": round(launches, 1),
        "launches_per_layer_step": round(launches / layers, 1), "syncs_per_step": syncs,
        "dequant_kernel_ms_per_step": round(dequant_ms, 2), "memcpy_ms_per_step": round(offload_ms, 2),
        "rows_per_step": (info.get("batching") or {}).get("mean_rows_per_optimizer_step", settings.batch_size),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "top_host_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                          "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 3)} for e in top_cpu],
        "top_kernels": [{"op": e.key[:120], "calls_per_step": e.count / steps,
                         "ms_per_step": round(device_us(e) / 1e3 / steps, 3)} for e in top_dev],
    })
    print("@RESULT " + json.dumps(record), flush=True)
    return 0


class SyncSites:
    """Where a step synchronises with the GPU: torch.cuda.set_sync_debug_mode("warn") makes every synchronising op
    (`.item()`, `bool(tensor)`, a blocking copy to the host) warn; each warning's call site outside torch is counted."""

    def start(self) -> "SyncSites":
        import collections
        import traceback
        import warnings

        import torch

        self.counts: collections.Counter = collections.Counter()
        self._old_show = warnings.showwarning

        # torch's own frames by its package folder: on the lent GPU every package lives under /opt/torch/.venv, so
        # matching "/torch/" in a path (as on 2026-12-02) hid transformers' and accelerate's frames as well.
        torch_dir = os.path.dirname(torch.__file__) + os.sep

        def show(message, category, filename, lineno, file=None, line=None):
            if "synchronizing" not in str(message):
                return self._old_show(message, category, filename, lineno, file, line)
            frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith(torch_dir)
                      and "warnings.py" not in f.filename and "gpu_profile.py" not in f.filename]
            self.counts[" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in frames[-3:][::-1])] += 1

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = show
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def stop(self) -> list[dict]:
        import warnings

        import torch

        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = self._old_show
        self._catch.__exit__(None, None, None)
        return [{"site": site, "syncs": n} for site, n in self.counts.most_common(10)]


MODIFIERS = {"compile": dict(compile=True), "unsloth": dict(unsloth=True), "plain": dict(prompt="plain"),
             "eager": dict(compile=False), "stack": dict(compile=True, compile_scope="stack"),
             "stack-ro": dict(compile=True, compile_scope="stack", compile_mode="reduce-overhead"),
             "workers0": dict(dataloader_workers=0),  # batches built in the loop (the default on a GPU: 2 workers)
             "prefix": dict(shared_prefix=True)}  # --shared-prefix (with the instruction prompt: emo_hf.shared_prefix)


def apply_modifiers(settings, modifiers: list[str]):
    """The settings with each '+MOD' of the variant applied (MODIFIERS); an unknown one is refused."""
    for modifier in modifiers:
        if modifier not in MODIFIERS:
            raise SystemExit(f"gpu_profile: unknown variant modifier +{modifier}; use one of {sorted(MODIFIERS)}")
        settings = settings.replace(**MODIFIERS[modifier])
    return settings


def inference_main(args: argparse.Namespace, settings, on_gpu: bool) -> int:
    """predict_proba texts/s on the test split's texts, the whole split per call (predict_proba sorts it by length)."""
    import torch

    from emo_hf.data.builder import load_built
    from emo_hf.trainer import build_model
    from emo_hf.training_data import label_names_of

    test = load_built(args.data, "raw")["test"]
    texts = list(test["text"])
    model = build_model(settings, label_names_of(test)).eval()
    rows, first = [], None
    # "auto": predict_proba's default, a token budget on a GPU (auto_tokens_per_batch); a number: rows per batch
    for batch in [b if b == "auto" else int(b) for b in args.inference_batches.split(",") if b]:
        kwargs = {"max_tokens_per_batch": "auto"} if batch == "auto" else {"batch_size": batch,
                                                                          "max_tokens_per_batch": None}
        model.predict_proba(texts[:1024], **kwargs)  # warm-up: kernels, shapes
        if on_gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        probabilities = model.predict_proba(texts, **kwargs)
        if on_gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        assert probabilities.shape[0] == len(texts) and bool(torch.isfinite(torch.as_tensor(probabilities)).all())
        # The same texts in other batches differ only by padding and bf16 rounding: the gap to the first setting
        first = probabilities if first is None else first
        rows.append({"batch_size": batch, "tokens_per_batch": model.auto_tokens_per_batch() if batch == "auto" else None,
                     "texts": len(texts), "seconds": round(seconds, 3), "texts_per_s": round(len(texts) / seconds, 1),
                     "max_abs_diff_to_first": round(float(abs(probabilities - first).max()), 5)})
        print(f"[inference] batch {batch}: {len(texts) / seconds:,.1f} texts/s", file=sys.stderr, flush=True)
    record = {"variant": args.child, "status": "ok", "inference": rows, "settings": settings.to_dict(),
              "memory_plan": None, "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None}
    print("@RESULT " + json.dumps(record), flush=True)
    return 0


# ======================================================================================================================
# Parent
# ======================================================================================================================
def parent_main(args: argparse.Namespace, argv: list[str]) -> int:
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="emo_profile-")).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    backbone = args.backbone
    if args.shape:
        import importlib.util

        import torch

        spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
        gpu_check = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gpu_check)
        shape = argparse.Namespace(cpu=args.cpu, hidden=5120, intermediate=32768, heads=32, kv_heads=8, head_dim=128,
                                   vocab=131072, rope_theta=1e9, layers=args.layers)
        if args.cpu:
            shape.__dict__.update(hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=1000)
        backbone = str(scratch / f"base-{args.shape}-{args.layers}")
        if args.shape == "24b":
            gpu_check.build_base(shape, Path(backbone), "cpu" if args.cpu else "cuda", gpu_check.Report())
        else:
            build_qwen_shape(Path(backbone), gpu_check.make_tokenizer(), tiny=args.cpu)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PYTHONUNBUFFERED="1")
    results = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        started = time.monotonic()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--data", args.data,
               "--rows", str(args.rows), "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size),
               "--top", str(args.top), "--scratch", str(scratch / variant), "--epochs", str(args.epochs)] + (
               ["--cpu"] if args.cpu else []) + (["--full-run"] if args.full_run else []) + (
               ["--max-tokens-per-batch", str(args.max_tokens_per_batch)] if args.max_tokens_per_batch else []) + (
               ["--inference", "--inference-batches", args.inference_batches] if args.inference else []) + (
               ["--backbone", backbone] if backbone else []) + (["--preset", args.preset] if args.preset else [])
        print(f"[profile] {variant}: started", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("@RESULT ")]
        if lines:
            results.append(json.loads(lines[-1][len("@RESULT "):]))
        else:
            results.append({"variant": variant, "status": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"})
        print(f"[profile] {variant}: {results[-1]['status'][:200]} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
    print(table(results, backbone))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                               "command": " ".join([sys.executable] + argv), "backbone": backbone,
                                               "results": results}, indent=2))
    return 0 if any(r.get("status") == "ok" for r in results) else 1


def build_qwen_shape(folder: Path, tokenizer, tiny: bool = False) -> None:
    """A Qwen2ForCausalLM with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14/2 heads, MLP 4864, vocab 151936, tied
    embeddings), random weights (bf16 on the GPU), saved with a word-level tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2) if tiny else dict(hidden_size=896, intermediate_size=4864,
                                                          num_hidden_layers=24, num_attention_heads=14,
                                                          num_key_value_heads=2)
    config = Qwen2Config(**sizes, vocab_size=151936 if not tiny else 1000, tie_word_embeddings=True,
                         max_position_embeddings=32768, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="float32" if tiny else "bfloat16")
    torch.manual_seed(0)
    with torch.device("cpu" if tiny else "cuda"):
        model = Qwen2ForCausalLM(config).to(torch.float32 if tiny else torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def table(results: list[dict], backbone: str | None) -> str:
    out = [f"backbone {backbone}; per optimiser step, mean over the profiled steps", "",
           "| variant | plan (4bit/ckpt/offload) | rows/step | wall ms | kernel ms | GPU busy | host-op ms | launches "
           "| launches/layer | syncs | dequant ms | memcpy ms | peak GiB | warm-up s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.get("status") != "ok":
            out.append(f"| {r['variant']} | {str(r.get('status'))[:150]} |")
            continue
        if r.get("inference"):
            out.append(f"| {r['variant']} (inference, test split) | " + "; ".join(
                f"batch {x['batch_size']}: {x['texts_per_s']:,} texts/s ({x['texts']} texts in {x['seconds']} s, "
                f"max diff {x.get('max_abs_diff_to_first')})"
                for x in r["inference"]) + f"; peak {r['peak_gib']} GiB |")
            continue
        if r.get("full_run"):
            plan = r.get("memory_plan") or {}
            out.append(f"| {r['variant']} (full run) | {plan.get('load_in_4bit')}/{plan.get('gradient_checkpointing')}/"
                       f"{plan.get('offload_checkpointing')} | train {r['train_seconds']} s for {r['epochs']} epochs "
                       f"of {r['train_rows']} rows; validation macro-F1 tuned {r['validation_macro_f1_tuned']:.4f}, "
                       f"at 0.5 {r['validation_macro_f1_at_05']:.4f}; peak {r['peak_gib']} GiB |")
            continue
        plan = r.get("memory_plan") or {}
        flags = "/".join("y" if plan.get(k) else "n" for k in ("load_in_4bit", "gradient_checkpointing",
                                                                "offload_checkpointing"))
        out.append(f"| {r['variant']} | {flags} | {r['rows_per_step']} | {r['wall_ms_per_step']} | "
                   f"{r['kernel_ms_per_step']} | {r['gpu_busy_fraction']} | {r['host_op_ms_per_step']} | "
                   f"{r['launches_per_step']} | {r['launches_per_layer_step']} | "
                   f"{round(sum(r['syncs_per_step'].values()), 1)} | {r['dequant_kernel_ms_per_step']} | "
                   f"{r['memcpy_ms_per_step']} | {r['peak_gib']} | {r.get('warmup_s')} |")
    for r in results:
        if r.get("status") == "ok" and not r.get("full_run") and not r.get("inference"):
            out += ["", f"{r['variant']}: top host ops (self CPU ms/step): " + "; ".join(
                f"{o['op']} {o['self_cpu_ms_per_step']}" for o in r["top_host_ops"][:8])]
            if r["top_kernels"]:
                out.append(f"{r['variant']}: top kernels (ms/step): " + "; ".join(
                    f"{o['op'][:60]} {o['ms_per_step']}" for o in r["top_kernels"][:8]))
            if r.get("sync_sites_one_step"):
                out.append(f"{r['variant']}: host-device syncs of one warm-up step, by call site: " + "; ".join(
                    f"{o['site']} x{o['syncs']}" for o in r["sync_sites_one_step"]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return parent_main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
