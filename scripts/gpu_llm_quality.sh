#!/usr/bin/env bash
# Decoder quality on the GPU (issue 11): for each PRESET=BACKBONE pair, `emo-hf train --preset PRESET --backbone
# BACKBONE` then `emo-hf evaluate` on the official test split, once through Unsloth (4-bit) and once through
# transformers + bitsandbytes + peft (`--no-unsloth`), each in its own process (importing unsloth patches
# transformers). Prints one table: validation and test macro-F1 (thresholds tuned on validation, and at 0.5),
# training seconds and samples/s. BACKBONE is usually a joined GGUF file (converted once to a bf16 folder in the
# emo_hf cache, $EMO_HF_CACHE, by the first run that loads it).
#
#   bash scripts/gpu_llm_quality.sh DATA_DIR PRESET=BACKBONE [PRESET=BACKBONE ...] [-- TRAIN FLAGS]
#   bash scripts/gpu_llm_quality.sh .gpu-data/data qwen2.5-0.5b=$HOME/stage/qwen05.gguf \
#        qwen2.5-1.5b=$HOME/stage/qwen15.gguf
#   STACKS=transformers bash scripts/gpu_llm_quality.sh DATA smollm2-135m=HuggingFaceTB/SmolLM2-135M-Instruct \
#        -- --train-subset 64 --epochs 1 --batch-size 16 --no-load-in-4bit --no-bf16    # the CPU smoke run
#
# Environment: STACKS (default "unsloth transformers"), WORK (run folders, default $HOME/llm_quality), OUT (where a
# copy of each run's logs, training_info.json and report.json goes, if set: the device machine returns $OUT).
# On the lent GPU the Python packages it lacks (unsloth, bitsandbytes, gguf==0.19.0, ...) come from
# ../shared/gpu/pack-site.sh; the weights arrive in parts (../shared/gpu/README.md, "Carrying more than 64 MiB").
set -euo pipefail
DATA=${1:?usage: scripts/gpu_llm_quality.sh DATA_DIR PRESET=BACKBONE [...] [-- TRAIN FLAGS]}
shift
PAIRS=()
while [[ $# -gt 0 && $1 != "--" ]]; do PAIRS+=("$1"); shift; done
[[ ${1:-} == "--" ]] && shift
EXTRA=("$@")
[[ ${#PAIRS[@]} -gt 0 ]] || { echo "give at least one PRESET=BACKBONE pair, e.g. qwen2.5-0.5b=/path/qwen.gguf" >&2; exit 2; }
STACKS=${STACKS:-"unsloth transformers"}
WORK=${WORK:-$HOME/llm_quality}
mkdir -p "$WORK"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"
RUNS=()
for pair in "${PAIRS[@]}"; do
  preset=${pair%%=*}; backbone=${pair#*=}
  for stack in $STACKS; do
    run="$WORK/$preset-$stack"
    rm -rf "$run"; mkdir -p "$run"
    flags=(); [[ $stack == transformers ]] && flags=(--no-unsloth)
    echo "== $preset via $stack: training (log: $run/train.log)"
    if python -m emo_hf train --data "$DATA" --preset "$preset" --backbone "$backbone" --out "$run" \
         "${flags[@]}" "${EXTRA[@]}" > "$run/train.log" 2>&1 \
       && python -m emo_hf evaluate "$run/model" --data "$DATA" --no-baselines --out "$run/eval" \
         > "$run/eval.log" 2>&1; then
      RUNS+=("$preset|$stack|$run")
    else
      echo "   FAILED: last lines of the log:"; tr '\r' '\n' < "$run/train.log" | tail -25
      [[ -f $run/eval.log ]] && tail -25 "$run/eval.log"
      RUNS+=("$preset|$stack|FAILED")
    fi
    if [[ -n ${OUT:-} ]]; then
      mkdir -p "$OUT/$preset-$stack"
      tr '\r' '\n' < "$run/train.log" | grep -v -E "^\s*[0-9]+%\|" | tail -200 > "$OUT/$preset-$stack/train.log" || true
      cp "$run/model/training_info.json" "$run/model/config.json" "$run/eval/report.json" "$OUT/$preset-$stack/" \
        2>/dev/null || true
    fi
  done
done
python - "${RUNS[@]}" <<'EOF'
import json, re, sys
from pathlib import Path
print()
header = ("preset", "stack", "loaded via", "val F1 tuned", "val F1 @0.5", "test F1 tuned", "test F1 @0.5", "train s", "samples/s")
print("| " + " | ".join(header) + " |")
print("|" + "|".join("---" for _ in header) + "|")
for entry in sys.argv[1:]:
    preset, stack, run = entry.split("|")
    if run == "FAILED":
        print(f"| {preset} | {stack} | failed | | | | | | |")
        continue
    info = json.loads((Path(run) / "model" / "training_info.json").read_text())
    report = json.loads((Path(run) / "eval" / "report.json").read_text())
    speed = [h["train_samples_per_second"] for h in info.get("log_history", []) if "train_samples_per_second" in h]
    cells = (info["validation_metrics_tuned"]["macro_f1"], info["validation_metrics_at_0.5"]["macro_f1"],
             report["metrics_tuned"]["macro_f1"], report["metrics_at_0.5"]["macro_f1"])
    log = (Path(run) / "train.log").read_text(errors="replace")
    via = re.search(r"^emo_hf: .* via (.+?): trainable", log, re.M)
    print(f"| {preset} | {stack} | {via.group(1) if via else '?'} | " + " | ".join(f"{c:.3f}" for c in cells)
          + f" | {info['train_seconds']:.0f} | {speed[-1] if speed else float('nan'):.1f} |")
    device = info.get("device")
print(f"\ndevice: {device if 'device' in dir() else '?'}; test = the data's test split, thresholds tuned on validation")
EOF
