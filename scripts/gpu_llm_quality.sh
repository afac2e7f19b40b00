#!/usr/bin/env bash
# Decoder quality on the GPU (issue 11): for each PRESET=BACKBONE pair, `emo-hf train --preset PRESET --backbone
# BACKBONE` then `emo-hf evaluate` on the official test split, once through Unsloth (4-bit) and once through
# transformers + bitsandbytes + peft (`--no-unsloth`), each in its own process (importing unsloth patches
# transformers). Prints one table (scripts/decoder_table.py): validation macro-F1 (tuned) and test macro-F1
# (thresholds tuned on validation, and at 0.5), training seconds, samples/s and peak GPU memory. BACKBONE is usually a joined GGUF file (converted once to a bf16 folder in the
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
      echo ok > "$run/status"
    else
      echo "   FAILED: last lines of the log:"; tr '\r' '\n' < "$run/train.log" | tail -25
      [[ -f $run/eval.log ]] && tail -25 "$run/eval.log"
      echo failed > "$run/status"
    fi
    RUNS+=("$run")
    if [[ -n ${OUT:-} ]]; then
      mkdir -p "$OUT/$preset-$stack"
      tr '\r' '\n' < "$run/train.log" | grep -v -E "^\s*[0-9]+%\|" | tail -200 > "$OUT/$preset-$stack/train.log" || true
      cp "$run/model/training_info.json" "$run/model/config.json" "$run/eval/report.json" "$OUT/$preset-$stack/" \
        2>/dev/null || true
    fi
  done
done
echo
python "$(dirname "$0")/decoder_table.py" "${RUNS[@]}"   # one row per run: quality, speed, memory
