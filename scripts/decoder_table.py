#!/usr/bin/env python
"""The table of a `scripts/gpu_decoders.sh` run: one row per job (quality, speed, memory), then the profiles.

    python scripts/decoder_table.py RES          # RES: $HOME/decoders on the GPU machine, or the unpacked decoders.tgz
    python scripts/decoder_table.py RUN [RUN ...]   # job folders themselves (scripts/gpu_llm_quality.sh does this)

Reads each job folder as gpu_decoders.sh leaves it on the GPU machine (run/model/training_info.json,
test/report.json, ...), as `gpu_decoders.sh collect` packs it (training_info.json, test_report.json, ...) or as
gpu_llm_quality.sh leaves it (model/training_info.json, eval/report.json).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def _read(folder: Path, *names: str) -> dict | None:
    for name in names:
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def job_row(folder: Path) -> str | None:
    info = _read(folder, "run/model/training_info.json", "training_info.json", "model/training_info.json")
    status = (folder / "status").read_text().strip() if (folder / "status").is_file() else "?"
    if info is None:
        return f"| {folder.name} | {status} |" + " |" * 12 if (folder / "train.log").is_file() else None
    test = _read(folder, "test/report.json", "test_report.json", "eval/report.json") or {}
    log = (folder / "train.log").read_text(errors="replace") if (folder / "train.log").is_file() else ""
    via = re.search(r"^emo_hf: .* via (.+?): trainable", log, re.M)
    plan = info.get("memory_plan") or {}
    batching = info.get("batching") or {}
    rows = batching.get("mean_rows_per_optimizer_step", batching.get("batch_size", ""))
    speed = [h["train_samples_per_second"] for h in info.get("log_history", []) if "train_samples_per_second" in h]
    hp = info.get("hyperparameters", {})

    def f1(d: dict | None) -> str:
        return f"{d['macro_f1']:.3f}" if d and d.get("macro_f1") is not None else ""

    memory = ("4-bit" if plan.get("load_in_4bit") else "bf16") + (" + ckpt" if plan.get("gradient_checkpointing") else "")
    return (f"| {folder.name} | {status} | {via.group(1) if via else '?'} | {memory} | "
            f"{hp.get('learning_rate', '')} | {rows if rows == '' else round(float(rows))} | "
            f"{f1(info.get('validation_metrics_tuned'))} | {f1(test.get('metrics_tuned'))} | "
            f"{f1(test.get('metrics_at_0.5'))} | {info.get('train_seconds', '')} | "
            f"{speed[-1] if speed else ''} | {timing_cell(info)} | {info.get('peak_gpu_memory_gib', '')} | "
            f"{reload_cell(info)} |")


def timing_cell(info: dict) -> str:
    """emo_hf.step_timing in a few words: the median step, the first step (Dynamo's trace of it, where recorded),
    the seconds above the median and the slow steps."""
    t = info.get("step_timing")
    if not t:
        return ""
    trace = (t.get("compile_seconds") or {}).get("_compile.compile_inner")
    first = f"first {t['first_step_s']} s" + (f" (trace {trace} s)" if trace is not None else "")
    saved = ((info.get("compile") or {}).get("precompile") or {})  # emo_hf.backbones.precompile: loaded / compiled
    if saved.get("state"):
        first += f" (precompile {saved['state']}" + (f" {saved['seconds']} s" if saved.get("seconds") else "") + ")"
    return f"{t['median_step_ms']} ms; {first}; +{t['above_median_seconds']} s, {t['slow_steps']} slow"


def reload_cell(info: dict) -> str:
    """The reload check in a few words: ok / FAILED with its largest gap, or why it was skipped."""
    check = info.get("reload_check")
    if not check:
        return ""
    if check.get("ok") is None:
        return f"skipped: {check.get('skipped', '')}"[:60]
    return f"{'ok' if check['ok'] else 'FAILED'} (max {check.get('max_abs_difference')})"


def profile_rows(folder: Path) -> list[str]:
    data = _read(folder, "profile.json")
    if not data:
        return []
    out = []
    for r in data.get("results", data if isinstance(data, list) else []):
        if r.get("inference"):
            out += [f"| {folder.name} | {r['variant']} | inference batch {i['batch_size']}: {i['texts_per_s']} texts/s"
                    f" | | | | | {r.get('peak_gib', '')} |" for i in r["inference"]]
        else:
            status = (str(r.get("status")).strip().splitlines() or ["?"])[-1][:160]
            out.append(f"| {folder.name} | {r.get('variant')} | {status} | {r.get('wall_ms_per_step', '')} | "
                       f"{r.get('gpu_busy_fraction', '')} | {r.get('launches_per_step', '')} | "
                       f"{r.get('rows_per_step', '')} | {r.get('peak_gib', '')} | {r.get('warmup_s', '')} |")
    return out


def main(argv: list[str]) -> int:
    given = [Path(a) for a in argv[1:]] or [Path(".")]
    # One argument that is not itself a job folder: the folder holding the jobs.
    is_job = (given[0] / "status").is_file() or (given[0] / "train.log").is_file()
    folders = given if len(given) > 1 or is_job else sorted(p for p in given[0].iterdir() if p.is_dir())
    print("| job | status | loaded via | weights | lr | rows/step | val F1 tuned | test F1 tuned | test F1 @0.5 "
          "| train s | samples/s | steps: median; first; above median | peak GiB | reload check |")
    print("|" + "---|" * 14)
    for folder in folders:
        row = job_row(folder)
        if row:
            print(row)
    rows = [r for folder in folders for r in profile_rows(folder)]
    if rows:
        print("\n| profile | variant | status | wall ms/step | GPU busy | launches/step | rows/step | peak GiB "
              "| warm-up s |")
        print("|" + "---|" * 9)
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
