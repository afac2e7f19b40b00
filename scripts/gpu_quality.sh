#!/usr/bin/env bash
# The GPU quality run (docs/results.md): all-mpnet-base-v2 fully fine-tuned in text mode (`--preset mpnet-base`) on the
# GoEmotions train split, best epoch and per-label thresholds chosen on validation, probabilities on the official test
# split written to $OUT for the report (baselines and plots are made on the CPU machine with `emo-hf evaluate
# --probabilities`). The model cannot be downloaded there and a device call carries at most 64 MiB, so an fp16 copy of
# all-mpnet-base-v2 (a 219,729,920-byte tar, sha256 below) was split into mp.00 .. mp.03 and carried in consecutive
# warm calls, each copying its part to $HOME/stage (/work/shared/gpu/README.md, "Carrying more than 64 MiB"); this
# script joins them and builds a Hugging Face cache folder, so the Hub id resolves offline.
#
#   bash scripts/gpu_quality.sh DATA_DIR [TRAIN FLAGS]   # DATA_DIR: an `emo-hf data build` folder (raw is enough)
#   bash scripts/gpu_quality.sh .gpu-data/data --epochs 5 --learning-rate 5e-5
set -euo pipefail
DATA=${1:?usage: scripts/gpu_quality.sh DATA_DIR [TRAIN FLAGS]}
shift
SHA=f5ca18fa93d62a0d48b34607d75590b8698d896a606acbcefdff687fc23b38cd
cat "$HOME"/stage/mp.0[0-3] > "$HOME/stage/mpnet.tar"
echo "$SHA  $HOME/stage/mpnet.tar" | sha256sum -c -
export HF_HOME=${HF_HOME:-$HOME/hf}
REPO_CACHE=$HF_HOME/hub/models--sentence-transformers--all-mpnet-base-v2
mkdir -p "$REPO_CACHE/snapshots/local" "$REPO_CACHE/refs"
tar xf "$HOME/stage/mpnet.tar" -C "$REPO_CACHE/snapshots/local" --strip-components=1
printf local > "$REPO_CACHE/refs/main"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
WORK=$HOME/quality
rm -rf "$WORK"
/usr/bin/time -v python -m emo_hf train --data "$DATA" --preset mpnet-base --out "$WORK" "$@" 2>&1 \
  | tr '\r' '\n' | grep -v -E "^\s*[0-9]+%\|" | tail -80 > "$OUT/train.log" || { tail -40 "$OUT/train.log"; exit 1; }
tail -15 "$OUT/train.log"
python -m emo_hf evaluate "$WORK/model" --data "$DATA" --no-baselines --out "$OUT/eval" 2>&1 | tail -5
rm -f "$OUT"/eval/*.png "$OUT/eval/report.md"  # remade on the CPU side; the device returns a few files only
# What the CPU-side report needs (the weights stay: 440 MB): config, thresholds, provenance.
mkdir -p "$OUT/model"
cp "$WORK/model/config.json" "$WORK/model/thresholds.json" "$WORK/model/training_info.json" "$OUT/model/"
