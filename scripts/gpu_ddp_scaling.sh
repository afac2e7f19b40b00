#!/usr/bin/env bash
# Issue 14: the same `emo-hf train` command and global batch on 1 GPU and on 2 GPUs of one host (accelerate launch,
# DDP), samples/s side by side. `--batch-size` is the batch of one step over all processes (emo_hf.distributed), so
# both halves take the same optimiser steps on the same rows; on 2 GPUs each takes half of every batch.
#
#   scripts/gpu_ddp_scaling.sh build-24b FOLDER [LAYERS]        # random-weight Mistral of the 24B layer shape
#   scripts/gpu_ddp_scaling.sh run NAME BACKBONE DATA_DIR [TRAIN FLAGS]
#   scripts/gpu_ddp_scaling.sh table                              # the side-by-side table of every NAME run
#
# `run` trains with NPROCS in "1 2" (env NPROCS, e.g. NPROCS=2 for one half per device call: a call runs at most
# 10 minutes) into $RESULTS/NAME-<n>p (default RESULTS=$HOME/ddp_scaling), each followed by `emo-hf evaluate` on the
# test split (EVALUATE=0 skips it). n=1 runs `python -m emo_hf train` on GPU 0; n>1 runs `accelerate launch
# --multi_gpu --num_processes n -m emo_hf train`, with NCCL_NVLS_ENABLE=0 (NVLink multicast off, see the device
# tool's KINDS.md). On a machine without CUDA, n>1 uses `torchrun --standalone` (gloo), so the script's logic can be
# smoke-tested on a CPU:
#   NPROCS="1 2" RESULTS=/tmp/ddp_smoke scripts/gpu_ddp_scaling.sh run tiny tiny-random-mistral DATA --preset tiny-random
#   scripts/gpu_ddp_scaling.sh table
# With $OUT set (the device tool's folder), each run's training_info.json, report.json, log and wall time are copied
# there, and `RESULTS=<those files> scripts/gpu_ddp_scaling.sh table` makes the same table from the copies.
# The samples/s are Trainer's train_samples_per_second (rows x epochs / train_runtime, global over the processes;
# train_runtime includes the per-epoch evaluation and checkpoint saves); wall_s is the whole command (imports,
# model load, Unsloth's compilation).
set -euo pipefail
RESULTS=${RESULTS:-$HOME/ddp_scaling}
export NCCL_NVLS_ENABLE=0 TOKENIZERS_PARALLELISM=false
REPO=$(cd "$(dirname "$0")/.." && pwd)

case "${1:-}" in
build-24b)
  FOLDER=${2:?usage: build-24b FOLDER [LAYERS]}
  LAYERS=${3:-40}
  python - "$FOLDER" "$LAYERS" <<'EOF'
import sys, time
from pathlib import Path
sys.path.insert(0, "scripts")
import torch
from transformers import MistralConfig, MistralForCausalLM
from gpu_check import make_tokenizer  # a local WordLevel tokenizer (no download)

folder, layers = Path(sys.argv[1]), int(sys.argv[2])
config = MistralConfig(hidden_size=5120, intermediate_size=32768, num_hidden_layers=layers, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=128, vocab_size=131072, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1e9},
                       tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="bfloat16")
started = time.time()
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = MistralForCausalLM(config)
model.save_pretrained(folder)
make_tokenizer().save_pretrained(folder)
print(f"{folder}: {layers} layers of the 24B shape, {sum(p.numel() for p in model.parameters()):,} parameters, "
      f"{time.time() - started:.0f} s")
EOF
  ;;
run)
  NAME=${2:?usage: run NAME BACKBONE DATA_DIR [TRAIN FLAGS]}
  BACKBONE=${3:?backbone}
  DATA=${4:?data dir}
  shift 4
  mkdir -p "$RESULTS"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader \
    > "$RESULTS/gpus.txt" || echo "no CUDA GPU: CPU smoke run" > "$RESULTS/gpus.txt"
  for N in ${NPROCS:-1 2}; do
    OUT_DIR=$RESULTS/$NAME-${N}p
    rm -rf "$OUT_DIR"
    if [ "$N" = 1 ]; then
      LAUNCH=(env CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} python -m emo_hf)
    elif python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
      LAUNCH=(accelerate launch --multi_gpu --num_processes "$N" --num_machines 1 --mixed_precision no
              --dynamo_backend no -m emo_hf)
    else
      LAUNCH=(python -m torch.distributed.run --standalone --nproc_per_node "$N" -m emo_hf)
    fi
    echo "== $NAME on $N process(es): ${LAUNCH[*]} train --data $DATA --out $OUT_DIR --backbone $BACKBONE $*" \
      | tee "$RESULTS/$NAME-${N}p.command.txt"
    started=$SECONDS
    (cd "$REPO" && "${LAUNCH[@]}" train --data "$DATA" --out "$OUT_DIR" --backbone "$BACKBONE" "$@") 2>&1 \
      | tr '\r' '\n' | grep -v -E "^\s*[0-9]+%\||it/s\]$" > "$RESULTS/$NAME-${N}p.log" \
      || { tail -40 "$RESULTS/$NAME-${N}p.log"; exit 1; }
    echo $((SECONDS - started)) > "$OUT_DIR/wall_s.txt"
    tail -3 "$RESULTS/$NAME-${N}p.log"
    if [ "${EVALUATE:-1}" = 1 ]; then
      (cd "$REPO" && python -m emo_hf evaluate "$OUT_DIR/model" --data "$DATA" --no-baselines --out "$OUT_DIR/eval") \
        2>&1 | tail -2
    fi
    if [ -n "${OUT:-}" ] && [ "$OUT" != "$RESULTS" ]; then  # the device tool's $OUT: what comes back
      mkdir -p "$OUT/$NAME-${N}p" && cp "$RESULTS/gpus.txt" "$OUT/"
      cp "$OUT_DIR/model/training_info.json" "$OUT_DIR/wall_s.txt" "$RESULTS/$NAME-${N}p.log" "$OUT/$NAME-${N}p/"
      [ -f "$OUT_DIR/eval/report.json" ] && cp "$OUT_DIR/eval/report.json" "$OUT/$NAME-${N}p/"
    fi
  done
  ;;
table)
  python - "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path

results = Path(sys.argv[1])
print(f"GPUs: {(results / 'gpus.txt').read_text().strip() if (results / 'gpus.txt').is_file() else '?'}\n")
print("| run | processes | per-device batch | global batch | train rows | epochs | train_runtime s | samples/s | s/epoch "
      "| speed-up | wall s | val macro-F1 (tuned) | test macro-F1 (tuned) [95% CI] |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
base: dict[str, float] = {}
def first(folder, *names):
    return next((folder / n for n in names if (folder / n).is_file()), None)

runs = [p for p in results.iterdir() if p.is_dir() and first(p, "model/training_info.json", "training_info.json")]
for folder in sorted(runs):
    name, n = folder.name.rsplit("-", 1)
    info = json.loads(first(folder, "model/training_info.json", "training_info.json").read_text())
    hp = info["hyperparameters"]
    final = next(e for e in reversed(info["log_history"]) if "train_samples_per_second" in e)
    rate, runtime = final["train_samples_per_second"], final["train_runtime"]
    if hp["world_size"] == 1:
        base[name] = rate
    speedup = f"{rate / base[name]:.2f}x" if name in base else "-"
    wall = (folder / "wall_s.txt").read_text().strip() if (folder / "wall_s.txt").is_file() else "-"
    report = first(folder, "eval/report.json", "report.json")
    test = "-"
    if report is not None:
        r = json.loads(report.read_text())
        low, high = r["mean_f1_ci95"]["tuned"]
        test = f"{r['metrics_tuned']['macro_f1']:.4f} [{low:.4f}, {high:.4f}]"
    epochs = info["epochs_run"]
    print(f"| {name} | {hp['world_size']} | {hp['per_device_train_batch_size']} | {hp['global_batch_size']} | "
          f"{info['train_rows']} | {epochs:g} | {runtime:.1f} | {rate:.1f} | {runtime / epochs:.1f} | {speedup} | "
          f"{float(wall):.0f} | {info['validation_metrics_tuned']['macro_f1']:.4f} | {test} |")
EOF
  ;;
*)
  sed -n 2,22p "$0"
  exit 2
  ;;
esac
