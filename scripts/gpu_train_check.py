#!/usr/bin/env python
"""GPU check of emo_hf's own training path: `emo_hf.trainer.train`, then `emo-hf evaluate`, on a tiny random decoder.

scripts/gpu_check.py drives the 24B layer shape through the plain transformers Trainer; it never reaches what
`emo-hf train` does after the epochs (the memory plan, thresholds tuned on validation, `model/`, training_info.json
with the card's name, the reload check). That code has branches only a GPU takes: on 2026-12-06 one of them
(`torch.cuda.getdevice_name`) failed every GPU `emo-hf train` after its epochs, while gpu_check.py passed 22/22.
This script runs that path end to end in about a minute: a tiny random model of `--family` (hidden 32, 2 layers,
emo_hf.backbones.tiny; no download, no extra package), `--train-rows` rows of a dataset folder built by
`emo-hf data build`, bf16 and the token-budget batcher on a GPU, then the test split's report. It checks what a user
relies on, prints PASS/FAIL lines and exits 0 only if all passed. The model is random: its scores mean nothing.

On the GPU (see ../shared/gpu/README.md for the environment):
    python scripts/gpu_train_check.py --data $HOME/data --json $OUT/gpu_train_check.json
On a CPU (the smoke test of this script; tests/test_gpu_train_check.py runs it):
    python scripts/gpu_train_check.py --data runs/default/data --cpu --train-rows 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder written by `emo-hf data build`")
    parser.add_argument("--family", default="qwen2", help="tiny random family (emo_hf.backbones.tiny; default qwen2)")
    parser.add_argument("--train-rows", type=int, default=2000, help="train rows used (seeded sample; default 2000)")
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs (2: the best-epoch choice has two to pick)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=2048, help="token budget of a training batch")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU in float32 (smoke test of this script)")
    parser.add_argument("--scratch", default=None, help="folder for the model and run (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


def _checkout_first() -> None:
    # This checkout's emo_hf, also where an older copy is installed (`pip install .` is not editable): the point is
    # to check the code beside this script. (tests and `python -m` get it from the working directory already.)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_checks(args: argparse.Namespace, scratch: Path) -> list[tuple[str, bool, str]]:
    import torch

    from emo_hf.backbones.tiny import build_tiny_model
    from emo_hf.cli import main as cli
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append((name, bool(ok), detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)

    on_gpu = not args.cpu
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU visible: run with --cpu for the smoke test.")
    backbone = build_tiny_model(args.family, scratch / f"tiny-{args.family}")
    settings = get_preset("tiny-random").replace(
        preset=f"tiny-random ({args.family}, gpu_train_check)", backbone=str(backbone), epochs=args.epochs,
        train_subset=args.train_rows, max_tokens_per_batch=args.max_tokens_per_batch, bf16=on_gpu)
    out = scratch / "run"
    started = time.perf_counter()
    result = train(args.data, out, settings, show_progress=False)
    check("emo_hf.trainer.train returns", True, f"{time.perf_counter() - started:.1f} s, best "
          f"{result.best_checkpoint}, validation macro-F1@0.5 {result.best_metric}")

    model_dir = Path(result.model_dir)
    info_file = model_dir / "training_info.json"
    check("model/ holds config, weights and training_info.json", info_file.is_file() and (model_dir / "config.json")
          .is_file() and any(model_dir.glob("*.safetensors")), ", ".join(sorted(p.name for p in model_dir.iterdir())))
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    expected = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    check("training_info.json names the device", str(info.get("device", "")).startswith(expected),
          f"{info.get('device')!r}, expected {expected!r}")
    plan = info.get("memory_plan") or {}
    check("the memory plan is recorded" + (" with the card's free memory" if on_gpu else ""),
          bool(plan.get("reason")) and (plan.get("free_gib") is not None) == on_gpu,
          f"free_gib {plan.get('free_gib')}, {plan.get('reason')!r}")
    if on_gpu:
        check("peak GPU memory is recorded", (info.get("peak_gpu_memory_gib") or 0) > 0,
              f"{info.get('peak_gpu_memory_gib')} GiB")
    config = json.loads((model_dir / "config.json").read_text())
    thresholds = config.get("thresholds") or []
    check("one validation-tuned threshold per label", len(thresholds) == len(config.get("label2id") or {}) > 0
          and all(0 < t < 1 for t in thresholds), f"{len(thresholds)} thresholds")
    reload = info.get("reload_check") or {}
    check("the saved model reloads to the trained model's probabilities", reload.get("ok") is True,
          f"max |difference| {reload.get('max_abs_difference')}")

    report_out = scratch / "test_report"
    code = cli(["evaluate", str(model_dir), "--data", args.data, "--out", str(report_out), "--no-baselines"])
    report_file = report_out / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    tuned = report.get("metrics_tuned") or {}
    check("emo-hf evaluate scores the test split", code == 0 and "macro_f1" in tuned,
          f"exit {code}, test macro-F1 {tuned.get('macro_f1')}")
    return checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _checkout_first()
    with tempfile.TemporaryDirectory(prefix="emo_gpu_train_check-") as tmp:
        scratch = Path(args.scratch) if args.scratch else Path(tmp)
        started = time.perf_counter()
        try:
            checks = run_checks(args, scratch)
        except Exception as error:  # a failure anywhere is the finding: report it as one
            import traceback

            traceback.print_exc()
            checks = [("the training path completes", False, f"{type(error).__name__}: {str(error)[:800]}")]
        seconds = round(time.perf_counter() - started, 1)
    passed = all(ok for _, ok, _ in checks)
    print(f"\nOVERALL: {'PASS' if passed else 'FAIL'} ({sum(ok for _, ok, _ in checks)}/{len(checks)} checks, "
          f"{seconds} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"passed": passed, "checks": checks, "seconds": seconds,
                                               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
