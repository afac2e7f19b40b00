#!/usr/bin/env bash
# Real-decoder measurements of issues 11 and 12 in one lease of one GPU, run in the background (setsid) so the GPU
# works while the next model's weights are still arriving in parts (../shared/gpu/README.md, "Carrying more than
# 64 MiB": a call carries at most 64 MiB, so Qwen2.5-Coder-1.5B's 1.1 GB GGUF takes 18 calls).
#
#   bash scripts/gpu_decoders.sh start STAGE DATA DATA28   # returns at once; SCHEDULE (below) runs on
#   bash scripts/gpu_decoders.sh status                    # one line per job
#   bash scripts/gpu_decoders.sh wait SECONDS [FILE]       # until $RES/FILE (default ALL_DONE) exists or SECONDS pass
#   bash scripts/gpu_decoders.sh collect                   # $OUT/decoders.tgz (logs, training_info, reports,
#                                                          # probabilities, profiles) and the table
# STAGE holds q05.gguf, q15.gguf, gemma.gguf (each appears only once joined and its sha256 checked; a schedule
# waits for what it needs). Run it from a copy of the whole checkout outside the device's repository folder (files
# there that a call did not carry are removed between calls), model_card_template.md included: `emo-hf evaluate`
# regenerates the card (on 2026-12-01 a copy without it failed the first job's evaluation). DATA / DATA28:
# `emo-hf data build` folders (raw config is enough: `--raw-only`) with the 15 default labels and with all 28 (`--labels
# goemotions`), absolute paths. RES (default $HOME/decoders) holds one folder per job.
#
# SCHEDULE=decoders (default; 2026-12-01) — a job = `emo-hf train`, then `emo-hf evaluate` on test and on
# validation, probabilities kept:
#   1. alone, so its seconds are timings: q05-preset (`--preset qwen2.5-0.5b`, nothing else), then
#      bench/gpu_profile.py before/after on the real 0.5B and its inference texts/s;
#   2. side by side on the one GPU (their seconds are NOT timings: up to 10 processes share it): both stacks in
#      4-bit, the instruction prompt, 28-label training, two batch/lr variants, the 1.5B (when it has arrived),
#      Gemma 3 270M (when it has arrived);
#   3. alone: bench/gpu_profile.py on the 24B shape (2 layers, random weights).
# SCHEDULE=speed (issue 12, 2026-12-02; DATA28 unused), every job alone:
#   1. bench/gpu_train.py at 40 layers (24B shape, random 4-bit weights: needs no staged file, so it runs while the
#      Qwen parts arrive): both stacks, original / embedding at batch 4096 / text at 4,096 and 8,192 tokens and
#      64 grouped rows;
#   2. bench/gpu_profile.py on the real 0.5B, preset as it is: after, after+compile (the GGUF is converted to its
#      bf16 folder during 1.);
#   3. the preset trained for 2 epochs with --compile when the profile found it >10% faster per step, else as it is;
#   4. Gemma 3 270M (1 epoch of 8,000 rows): does the reload check report the GPU reload gap;
#   5. bench/gpu_profile.py after+unsloth (Unsloth's LoRA kernels in 16-bit);
#   6. the preset as it is (if 3. used --compile): its 2-epoch time alone, never measured so far.
# SCHEDULE=graphs (issue 12, 2026-12-02 second lease; DATA28 unused), every job alone, each compiling with its own
# empty inductor cache (TORCHINDUCTOR_CACHE_DIR; "warm" reuses another job's) unless said:
#   1. the 40-layer bench as in 'speed', --parallel 4 (six children ran Unsloth's embedding row out of memory), while
#      the 0.5B's and Gemma's parts arrive;
#   2. bench/gpu_profile.py on the real 0.5B: after,after+compile; then after+compile-ro (CUDA graphs) in a process
#      and cache of its own (it failed on the H200; per-layer CUDA graphs are now refused, so this profile and the
#      q05-ro job fail at once and the schedule goes on with --compile);
#   3. 2 epochs with the faster of --compile / --compile-mode reduce-overhead (cold), then Unsloth 16-bit
#      (--no-compile --unsloth), then the faster one again on the first's warm cache, then Gemma 3 270M's 2-epoch
#      preset (its reload check), then the slower compile mode, then eager (--no-compile); a job starts only before
#      $DEADLINE (epoch seconds; default start + 1150 s) so the lease can still collect.
# SCHEDULE=stack (issue 12, 2026-12-02 third lease; DATA28 unused), every job alone, caches as in 'graphs':
#   1. the 40-layer bench, text rows at 4,096 tokens with and without gradient checkpointing, both stacks, two
#      children at a time (two unchecked ones warming up together would not fit), while the
#      0.5B's and Gemma's parts arrive;
#   2. bench/gpu_profile.py on the real 0.5B: after,after+stack (per-layer regions, then the whole layer loop as one
#      compiled region), then after+stack-ro (the same with CUDA graphs) in a process and cache of its own;
#   3. 2 epochs with the fastest of the three, cold, then on its warm cache; Unsloth 16-bit (the speed of importing
#      it first); Gemma 3 270M's 2-epoch preset (its reload check); each only before $DEADLINE.
#   On 2026-12-02 the two cold stack compiles took ~10 min: only the first 2-epoch job ran.
# SCHEDULE=finish (DATA28 unused): the 2-epoch jobs no lease has reached yet, alone, each only before $DEADLINE:
#   the preset, Gemma 3 270M's preset (its reload check), Unsloth 16-bit imported first.
# SCHEDULE=warm (DATA28 unused), every job alone, each only before $DEADLINE: 2 epochs with the whole layer loop
#   compiled with CUDA graphs (--compile-scope stack --compile-mode reduce-overhead; evaluation now eager), cold, then
#   on that job's warm inductor cache; Gemma 3 270M's 2-epoch preset (its reload check); bench/gpu_profile.py of the
#   same with 2 batch workers and with none, on the warm cache; 8,192-token batches on the warm cache (half the steps,
#   lr x sqrt 2); Unsloth 16-bit imported first.
# SCHEDULE=budget (DATA28 unused): half the optimiser steps (8,192-token batches, stack + CUDA graphs), the one lever
#   left on the host-bound 0.5B step. Alone: cold at lr 2.8e-4 (sqrt-scaled), then on that job's warm inductor cache
#   (the time a second run pays); then side by side, timings void, quality only, on the same warm cache: lr 2e-4 and
#   4e-4 at 8,192 tokens, Gemma 3 270M's 2-epoch preset (its reload check). Between the two, alone, 4,096-token
#   batches on the same warm cache: the current settings' warm time.
# SCHEDULE=prefix (DATA28 unused), every job alone, each only before $DEADLINE: the preset as it now is (8,192-token
#   batches, stack + CUDA graphs) with --shared-prefix (the instruction prompt's template run once per batch:
#   emo_hf.shared_prefix; on by default when this ran on 2026-12-02, commit 0c9eaa5), cold, then on that job's warm
#   inductor cache; Gemma 3 270M's 2-epoch preset (does the reloaded model now score as in the run); the preset with
#   whole rows, cold: the same lease's before (skipped by the deadline on 2026-12-02).
# SCHEDULE=tokens (DATA28 unused), every job alone, each only before $DEADLINE: 16,384-token batches (a quarter of
#   the 4,096-token steps; lr 4e-4, 2.8e-4 x sqrt 2), stack + CUDA graphs, cold; then on that job's inductor cache
#   (the compiled graph's batch and sequence sizes are symbolic, so it serves 8,192 tokens too): 16,384 again (the
#   warm time), the preset as it is (8,192 tokens, lr 2.8e-4: the same lease's before), 16,384 at lr 2.8e-4.
# SCHEDULE=startup (DATA28 unused), alone, each only before $DEADLINE: the preset as it is, cold, then on that job's
#   inductor cache; their training_info.json "step_timing" (emo_hf.step_timing; a column of decoder_table.py) says
#   how much of each run is start-up (first step, seconds above the median step) and how much is steps; then
#   bench/gpu_profile.py of the preset with and without --shared-prefix on that cache (why it was 2x slower).
# SCHEDULE=packed (DATA28 unused), alone, each only before $DEADLINE: the shared prefix as one packed backbone call
#   (emo_hf.shared_prefix since 2026-12-03: one compiled graph per step, no key/value cache), cold without the
#   test/validation evaluations (EVAL=0: a warm run on the same cache trains the same graphs and batches), then warm
#   with them, then warm at 16,384-token batches (lr 4e-4); then the preset with whole rows, cold (EVAL=0) and warm:
#   the same lease's before. Every run records step_timing (training_info.json).
# SCHEDULE=shapes (DATA28 unused), alone, each only before $DEADLINE: the preset cold (EVAL=0), then on its inductor
#   cache with whole rows as they are and with --fixed-batch-shapes (6 training shapes instead of 13: the stack's
#   graph is the same, the loss with its row weights runs outside it; evaluated; whole rows are not, EVAL=0: earlier
#   leases evaluated the same batches), then --fixed-batch-shapes with CUDA graph trees' per-shape warm-up run skipped
#   (INDUCTOR_SET=triton.skip_cudagraph_warmup=True: bench/train_with_inductor_config.py; EVAL=0). Their step_timing
#   says how much start-up the fewer warm-ups and recordings save, and its compile_seconds how much of the first
#   step is Dynamo's trace.
# SCHEDULE=lean (DATA28 unused), alone, each only before $DEADLINE: the preset as it now is (LoRA projections with the
#   lean forward of emo_hf.backbones.lean_lora, evaluation batches of the memory plan's eval_tokens_per_batch, 8x the
#   training budget here), cold (EVAL=0); then on its inductor cache: the same, evaluated; the same with peft's own
#   LoRA forward (--no-lean-lora, EVAL=0: the trace it adds); with --fixed-batch-shapes (evaluated: the repeat the
#   shapes lease asked for); the preset again (EVAL=0: run-to-run spread). LEAN_SHORT=1 stops after the first warm
#   run, WARM_EVAL=0 leaves it unevaluated (a lease with ~12 minutes left).
# SCHEDULE=precompile (DATA28 unused), alone, each only before $DEADLINE: the saved compiled training graph
#   (emo_hf.backbones.precompile, on by default with --compile-scope stack) against Dynamo's trace. The ahead-of-time
#   compile keys inductor's cache entries differently from torch.compile (2026-12-04: a warm torch.compile cache did
#   not serve it), so: cold with --no-precompile (EVAL=0; skipped if INDUCTOR_CACHE is set), filling torch.compile's
#   cache; then on that cache: the preset, which compiles ahead of time and saves (EVAL=0); the preset, which loads it
#   (evaluated); --no-precompile, warm (EVAL=0: the same lease's before); the preset loading again, --no-precompile
#   again (EVAL=0: the spread); last, the preset loading with whole rows, --no-fixed-batch-shapes (EVAL=0). (On
#   2026-12-04 the preset had whole rows, and the last run was --fixed-batch-shapes: docs/benchmarks.md.)
# SCHEDULE=fresh (DATA28 unused), alone: a freshly started machine's first run of the preset. Without INDUCTOR_CACHE it
#   compiles cold (q05-cold, EVAL=0 unless COLD_EVAL=1) and `collect` returns its inductor cache (with the saved graph);
#   with INDUCTOR_CACHE (that cache, carried to another fresh machine of the same GPU kind and unpacked anywhere) the
#   run (q05-carried, evaluated) should load instead of compiling: what a user who copies $TORCHINDUCTOR_CACHE_DIR
#   gets. The GGUF's conversion to bf16 (which every fresh machine pays first) is timed apart, in convert-q05.log.
# `collect` also returns the cold job's inductor cache ($OUT/inductor-cache.tgz, if under 60 MB; CACHE_JOB names another
# job): carried into a later lease and unpacked (`tar xzf inductor-cache.tgz -C $HOME/cache`), `INDUCTOR_CACHE=$HOME/
# cache/inductor-cache` before `start` makes every job of the 'shapes' schedule warm, sparing its ~8-minute cold job (a
# cache hit needs the same torch, Triton and GPU: the lent image's; 2026-12-04: a carried cache served a fresh machine,
# and with --precompile it holds the saved graph too).
# SMOKE=1 runs a schedule on a CPU in minutes (tiny slices, 1 epoch, no 4-bit): the check of this script.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RES=${RES:-$HOME/decoders}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

job() {  # NAME DATA PRESET BACKBONE [TRAIN FLAGS...]
  local name=$1 data=$2 preset=$3 backbone=$4; shift 4
  local dir=$RES/$name flags=("$@")
  if [[ -n ${SMOKE:-} ]]; then  # CPU: no 4-bit, a slice, one epoch
    flags=("${flags[@]/--load-in-4bit/--no-load-in-4bit}")
    flags+=(--train-subset 48 --epochs 1 --no-bf16 --max-length 32 --max-tokens-per-batch 512)
  fi
  if [[ -n ${DEADLINE:-} && $(date +%s) -gt $DEADLINE ]]; then echo "$(date -u +%T) $name: skipped (deadline)"; return; fi
  rm -rf "$dir"; mkdir -p "$dir/cwd"; echo running > "$dir/status"; date -u +%FT%TZ > "$dir/started"
  # Each job in its own working folder (Unsloth writes its compiled modules to ./unsloth_compiled_cache) and its own
  # inductor/Triton cache, so a compile time is a first run's unless INDUCTOR_CACHE names another job's.
  local train=(-m emo_hf train)  # INDUCTOR_SET="KEY=VALUE ...": the same through bench/train_with_inductor_config.py
  # shellcheck disable=SC2206
  [[ -n ${INDUCTOR_SET:-} ]] && train=("$REPO/bench/train_with_inductor_config.py" $INDUCTOR_SET --)
  if (cd "$dir/cwd" && TORCHINDUCTOR_CACHE_DIR=${INDUCTOR_CACHE:-$dir/inductor-cache} python "${train[@]}" --data "$data" --preset "$preset" --backbone "$backbone" \
        --out "$dir/run" "${flags[@]}" > "$dir/train.log" 2>&1 \
      && { [[ ${EVAL:-1} == 0 ]] && echo "evaluation skipped (EVAL=0)" > "$dir/eval.log" || { python -m emo_hf evaluate "$dir/run/model" --data "$data" --no-baselines --out "$dir/test" \
        > "$dir/eval.log" 2>&1 \
      && python -m emo_hf evaluate "$dir/run/model" --data "$data" --split validation --no-baselines \
        --out "$dir/validation" >> "$dir/eval.log" 2>&1; }; }); then
    echo ok > "$dir/status"
  else
    echo failed > "$dir/status"
  fi
  date -u +%FT%TZ > "$dir/ended"
  echo "$(date -u +%T) $name: $(cat "$dir/status")"
}

profile() {  # NAME [gpu_profile.py FLAGS...]
  local name=$1; shift
  local dir=$RES/$name smoke=()
  [[ -n ${SMOKE:-} ]] && smoke=(--cpu --steps 2 --warmup 1 --rows 512)
  if [[ -n ${DEADLINE:-} && $(date +%s) -gt $DEADLINE ]]; then echo "$(date -u +%T) $name: skipped (deadline)"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"; echo running > "$dir/status"
  if TORCHINDUCTOR_CACHE_DIR=${INDUCTOR_CACHE:-$dir/inductor-cache} python "$REPO/bench/gpu_profile.py" "$@" "${smoke[@]}" --scratch "$dir/scratch" --json "$dir/profile.json" \
       > "$dir/profile.log" 2>&1; then echo ok > "$dir/status"; else echo failed > "$dir/status"; fi
  rm -rf "$dir/scratch" "$dir/inductor-cache"
  echo "$(date -u +%T) $name: $(cat "$dir/status")"
}

wait_for_file() {  # FILE SECONDS
  local waited=0
  while [[ ! -e $1 && $waited -lt $2 ]]; do sleep 5; waited=$((waited + 5)); done
  [[ -e $1 ]]
}

schedule() {  # STAGE DATA DATA28
  local stage=$1 data=$2 data28=$3
  local q05=$stage/q05.gguf q15=$stage/q15.gguf gemma=$stage/gemma.gguf
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  echo "$(date -u +%T) schedule started; git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  wait_for_file "$q05" 1800 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  # 1. alone
  job q05-preset "$data" qwen2.5-0.5b "$q05"
  profile profile-q05 --data "$data" --preset qwen2.5-0.5b --backbone "$q05"
  profile inference-q05 --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --inference --variants after \
    --inference-batches 64,256
  # 2. side by side
  job q05-unsloth-4bit "$data" qwen2.5-0.5b "$q05" --load-in-4bit &
  job q05-bnb-4bit "$data" qwen2.5-0.5b "$q05" --load-in-4bit --no-unsloth &
  job q05-instruction "$data" qwen2.5-0.5b "$q05" --prompt instruction &
  job q05-28-labels "$data28" qwen2.5-0.5b "$q05" &
  job q05-lr1e-4 "$data" qwen2.5-0.5b "$q05" --learning-rate 1e-4 &
  job q05-16k-lr4e-4 "$data" qwen2.5-0.5b "$q05" --max-tokens-per-batch 16384 --learning-rate 4e-4 &
  if wait_for_file "$q15" 1800; then
    # Convert the GGUF once before three processes want it (the cache keeps one copy; concurrent first loads would
    # each convert it).
    python -c "import sys; from emo_hf.backbones.loading import backbone_source; print(backbone_source(sys.argv[1]))" \
      "$q15" > "$RES/convert-q15.log" 2>&1 || echo "q15 conversion failed: $RES/convert-q15.log"
    job q15-preset "$data" qwen2.5-1.5b "$q15" &
    job q15-unsloth-4bit "$data" qwen2.5-1.5b "$q15" --load-in-4bit &
    job q15-bnb-4bit "$data" qwen2.5-1.5b "$q15" --load-in-4bit --no-unsloth &
  else
    echo "no $q15: 1.5B jobs skipped"
  fi
  if wait_for_file "$gemma" 600; then job gemma-preset "$data" gemma3-270m "$gemma" & else echo "no $gemma"; fi
  wait
  # 3. alone
  profile profile-24b --data "$data" --shape 24b --layers 2
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

bench24() {  # NAME: bench/gpu_train.py at 40 layers (SMOKE: the CPU logic check at 1 tiny layer)
  # BENCH24_CONFIGS / BENCH24_BUDGETS / BENCH24_ROWS (text rows of fixed size; "" = none) choose the rows.
  local dir=$RES/$1 args
  local configs=${BENCH24_CONFIGS:-original,embedding-big,text} rows=${BENCH24_ROWS-64}
  rm -rf "$dir"; mkdir -p "$dir"; echo running > "$dir/status"
  if [[ -n ${SMOKE:-} ]]; then
    args=(--cpu --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 1000 --layers 1 --big-batches 64
          --configs "$configs" --text-budgets 512 --text-batches "${rows:+16}" --text-variants grouped)
  else
    args=(--prequantized --layers 40 --engines unsloth,bnb --configs "$configs" --big-batches 4096
          --text-batches "$rows" --text-variants grouped --text-budgets "${BENCH24_BUDGETS:-4096,8192}" --steps 4
          --repeats 2 --parallel "${BENCH24_PARALLEL:-6}" --budget "${BENCH24_BUDGET:-420}")
  fi
  if python "$REPO/bench/gpu_train.py" "${args[@]}" --scratch "$dir/scratch" --json "$dir/gpu_train.json" \
       > "$dir/gpu_train.md" 2> "$dir/gpu_train.progress.txt"; then echo ok > "$dir/status"; else echo failed > "$dir/status"; fi
  rm -rf "$dir/scratch"
  echo "$(date -u +%T) $1: $(cat "$dir/status")"
}

step_ms() {  # PROFILE_JSON VARIANT: its wall ms per step, or nothing
  python - "$1" "$2" <<'PY'
import json, sys
try:
    rows = {r["variant"]: r for r in json.load(open(sys.argv[1]))["results"] if r.get("status") == "ok"}
except (OSError, ValueError, KeyError):
    rows = {}
if sys.argv[2] in rows:
    print(rows[sys.argv[2]]["wall_ms_per_step"])
PY
}

faster_with_compile() {  # PROFILE_JSON: true when after+compile's step is >10% faster than after's
  local a c
  a=$(step_ms "$1" after); c=$(step_ms "$1" after+compile)
  [[ -n $a && -n $c ]] && python -c "import sys; sys.exit(0 if $c < 0.9 * $a else 1)"
}

convert_when_staged() {  # GGUF: once it has arrived, convert it to its cached bf16 folder (~73 s), log in $RES
  # On 2 threads at the lowest priority: on 2026-12-02 this conversion, with torch's default 16 threads, slowed the
  # host-bound rows timed meanwhile (the Unsloth original configuration 1.6x).
  wait_for_file "$1" 1800 && OMP_NUM_THREADS=2 nice -n 19 python -c "import sys; from emo_hf.backbones.loading \
import backbone_source; print(backbone_source(sys.argv[1]))" "$1" > "$RES/convert-$(basename "$1" .gguf).log" 2>&1
}

speed_schedule() {  # STAGE DATA
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf
  mkdir -p "$RES"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  echo "$(date -u +%T) speed schedule started; git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  convert_when_staged "$q05" &
  bench24 train-24b-40
  wait
  [[ -e $q05 ]] || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  profile profile-q05 --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 8 --variants after,after+compile
  if faster_with_compile "$RES/profile-q05/profile.json"; then
    job q05-compile "$data" qwen2.5-0.5b "$q05" --compile
  else
    job q05-preset "$data" qwen2.5-0.5b "$q05"
  fi
  if wait_for_file "$gemma" 300; then job gemma-check "$data" gemma3-270m "$gemma" --train-subset 8000 --epochs 1; fi
  profile profile-q05-unsloth --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 8 \
    --variants after+unsloth
  [[ -d $RES/q05-preset ]] || job q05-preset "$data" qwen2.5-0.5b "$q05"
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}


schedule_started() {  # NAME: RES made, DEADLINE set (default: now + 1150 s) and exported, the card and start logged
  mkdir -p "$RES"
  export DEADLINE=${DEADLINE:-$(( $(date +%s) + 1150 ))}
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  echo "$(date -u +%T) $1 schedule started; git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'); deadline $(date -u -d @"$DEADLINE" +%T)"
}

graphs_schedule() {  # STAGE DATA
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf
  schedule_started graphs
  convert_when_staged "$q05" &
  BENCH24_PARALLEL=4 bench24 train-24b-40
  wait
  [[ -e $q05 ]] || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  profile profile-q05 --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 8 --variants after,after+compile
  profile profile-q05-ro --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 8 --variants after+compile-ro
  local compiled ro first=(--compile) second=(--compile --compile-mode reduce-overhead) f=q05-compile s=q05-ro
  compiled=$(step_ms "$RES/profile-q05/profile.json" after+compile)
  ro=$(step_ms "$RES/profile-q05-ro/profile.json" after+compile-ro)
  echo "$(date -u +%T) profiled ms/step: compile ${compiled:-failed}, reduce-overhead ${ro:-failed}"
  if [[ -n $ro ]] && { [[ -z $compiled ]] || python -c "import sys; sys.exit(0 if $ro < $compiled else 1)"; }; then
    first=(--compile --compile-mode reduce-overhead) second=(--compile) f=q05-ro s=q05-compile
  fi
  job "$f" "$data" qwen2.5-0.5b "$q05" "${first[@]}"
  job q05-unsloth16 "$data" qwen2.5-0.5b "$q05" --no-compile --unsloth
  INDUCTOR_CACHE=$RES/$f/inductor-cache job "$f-warm" "$data" qwen2.5-0.5b "$q05" "${first[@]}"
  if wait_for_file "$gemma" 60; then job gemma-2ep "$data" gemma3-270m "$gemma"; fi
  job "$s" "$data" qwen2.5-0.5b "$q05" "${second[@]}"
  job q05-eager "$data" qwen2.5-0.5b "$q05" --no-compile
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

stack_schedule() {  # STAGE DATA
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf
  schedule_started stack
  convert_when_staged "$q05" &
  BENCH24_CONFIGS=text,text-nockpt BENCH24_BUDGETS=4096 BENCH24_ROWS="" BENCH24_PARALLEL=2 \
    BENCH24_BUDGET=${BENCH24_BUDGET:-330} bench24 train-24b-nockpt
  wait
  [[ -e $q05 ]] || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  profile profile-q05 --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 8 --variants after,after+stack
  # 40 warm-up steps: CUDA graphs record one graph per batch shape (~16 here), so fewer would leave recordings in
  # the profiled steps.
  profile profile-q05-ro --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 40 --variants after+stack-ro
  local layers stack ro
  layers=$(step_ms "$RES/profile-q05/profile.json" after)
  stack=$(step_ms "$RES/profile-q05/profile.json" after+stack)
  ro=$(step_ms "$RES/profile-q05-ro/profile.json" after+stack-ro)
  echo "$(date -u +%T) profiled ms/step: layers ${layers:-failed}, stack ${stack:-failed}, stack + CUDA graphs ${ro:-failed}"
  # The fastest profiled scope trains 2 epochs cold, then again on its own warm cache.
  local best=(--compile) name=q05-layers
  python - "${layers:-inf}" "${stack:-inf}" "${ro:-inf}" > "$RES/best.txt" <<'PY'
import sys
times = dict(zip(("layers", "stack", "ro"), map(float, sys.argv[1:])))
print(min(times, key=times.get))
PY
  case $(cat "$RES/best.txt") in
    stack) best=(--compile --compile-scope stack) name=q05-stack ;;
    ro) best=(--compile --compile-scope stack --compile-mode reduce-overhead) name=q05-stack-ro ;;
  esac
  job "$name" "$data" qwen2.5-0.5b "$q05" "${best[@]}"
  INDUCTOR_CACHE=$RES/$name/inductor-cache job "$name-warm" "$data" qwen2.5-0.5b "$q05" "${best[@]}"
  job q05-unsloth16 "$data" qwen2.5-0.5b "$q05" --no-compile --unsloth
  if wait_for_file "$gemma" 60; then job gemma-2ep "$data" gemma3-270m "$gemma"; fi
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

warm_schedule() {  # STAGE DATA: the stack scope with CUDA graphs, evaluating eager, from a cold and a warm cache
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf ro=(--compile --compile-scope stack --compile-mode reduce-overhead)
  schedule_started warm
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  job q05-stack-ro "$data" qwen2.5-0.5b "$q05" "${ro[@]}"
  local cold=q05-stack-ro
  if [[ $(cat "$RES/q05-stack-ro/status") != ok ]]; then  # the new default of 2 batch workers is the one new thing
    job q05-stack-ro-w0 "$data" qwen2.5-0.5b "$q05" "${ro[@]}" --dataloader-workers 0; cold=q05-stack-ro-w0
  fi
  local cache=$RES/$cold/inductor-cache
  INDUCTOR_CACHE=$cache job q05-stack-ro-warm "$data" qwen2.5-0.5b "$q05" "${ro[@]}"
  if wait_for_file "$gemma" 60; then job gemma-2ep "$data" gemma3-270m "$gemma"; fi
  # Batch workers on and off, both on the warm cache (their warm-up is the warm compile's time).
  INDUCTOR_CACHE=$cache profile profile-q05-ro-warm --data "$data" --preset qwen2.5-0.5b --backbone "$q05" --warmup 40 \
    --variants after+stack-ro,after+stack-ro+workers0
  # Half the optimiser steps: 8,192-token batches, the learning rate scaled by sqrt(2) (TrainSettings' help).
  INDUCTOR_CACHE=$cache job q05-stack-ro-8k-warm "$data" qwen2.5-0.5b "$q05" "${ro[@]}" --max-tokens-per-batch 8192 \
    --learning-rate 2.8e-4
  job q05-unsloth16 "$data" qwen2.5-0.5b "$q05" --no-compile --unsloth
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

budget_schedule() {  # STAGE DATA: 8,192-token batches, cold and warm, quality side by side
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf ro=(--compile --compile-scope stack --compile-mode reduce-overhead)
  local big=(--max-tokens-per-batch 8192)
  schedule_started budget
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  job q05-8k "$data" qwen2.5-0.5b "$q05" "${ro[@]}" "${big[@]}" --learning-rate 2.8e-4
  local cache=$RES/q05-8k/inductor-cache
  INDUCTOR_CACHE=$cache job q05-8k-warm "$data" qwen2.5-0.5b "$q05" "${ro[@]}" "${big[@]}" --learning-rate 2.8e-4
  # The same compiled graph serves 4,096-token batches (batch and sequence sizes are symbolic); CUDA graphs are
  # recorded per shape in every run, cached or not.
  INDUCTOR_CACHE=$cache job q05-4k-warm "$data" qwen2.5-0.5b "$q05" "${ro[@]}"
  INDUCTOR_CACHE=$cache job q05-8k-lr2e-4 "$data" qwen2.5-0.5b "$q05" "${ro[@]}" "${big[@]}" --learning-rate 2e-4 &
  INDUCTOR_CACHE=$cache job q05-8k-lr4e-4 "$data" qwen2.5-0.5b "$q05" "${ro[@]}" "${big[@]}" --learning-rate 4e-4 &
  if wait_for_file "$gemma" 60; then job gemma-2ep "$data" gemma3-270m "$gemma" & fi
  wait
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

prefix_schedule() {  # STAGE DATA: shared prefix cold and warm, Gemma's reload, whole rows cold
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf
  schedule_started prefix
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  job q05-prefix "$data" qwen2.5-0.5b "$q05" --shared-prefix
  INDUCTOR_CACHE=$RES/q05-prefix/inductor-cache job q05-prefix-warm "$data" qwen2.5-0.5b "$q05" --shared-prefix
  if wait_for_file "$gemma" 120; then job gemma-2ep "$data" gemma3-270m "$gemma"; fi
  job q05-whole-rows "$data" qwen2.5-0.5b "$q05"
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

tokens_schedule() {  # STAGE DATA: 16,384-token batches cold and warm, the preset warm beside them
  local stage=$1 data=$2
  local q05=$stage/q05.gguf big=(--max-tokens-per-batch 16384)
  schedule_started tokens
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  job q05-16k "$data" qwen2.5-0.5b "$q05" "${big[@]}" --learning-rate 4e-4
  local cache=$RES/q05-16k/inductor-cache
  INDUCTOR_CACHE=$cache job q05-16k-warm "$data" qwen2.5-0.5b "$q05" "${big[@]}" --learning-rate 4e-4
  INDUCTOR_CACHE=$cache job q05-8k-warm "$data" qwen2.5-0.5b "$q05"
  INDUCTOR_CACHE=$cache job q05-16k-lr2.8e-4 "$data" qwen2.5-0.5b "$q05" "${big[@]}" --learning-rate 2.8e-4
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

startup_schedule() {  # STAGE DATA: the preset cold, then warm, for their step timing
  local data=$2 q05=$1/q05.gguf
  schedule_started startup
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  job q05-cold "$data" qwen2.5-0.5b "$q05"
  INDUCTOR_CACHE=$RES/q05-cold/inductor-cache job q05-warm "$data" qwen2.5-0.5b "$q05"
  # Why the shared prefix is slower under CUDA graphs: per-step profile of the preset with and without it (the
  # prefix's graphs compile inside the 40 warm-up steps).
  INDUCTOR_CACHE=$RES/q05-cold/inductor-cache profile profile-q05-prefix --data "$data" --preset qwen2.5-0.5b \
    --backbone "$q05" --warmup 40 --variants after,after+prefix
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

packed_schedule() {  # STAGE DATA: the packed shared prefix cold and warm, at 8,192 and 16,384 tokens; whole rows beside
  local data=$2 q05=$1/q05.gguf prefix=(--shared-prefix)
  schedule_started packed
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  EVAL=0 job q05-prefix-cold "$data" qwen2.5-0.5b "$q05" "${prefix[@]}"
  local cache=$RES/q05-prefix-cold/inductor-cache
  INDUCTOR_CACHE=$cache job q05-prefix-warm "$data" qwen2.5-0.5b "$q05" "${prefix[@]}"
  INDUCTOR_CACHE=$cache job q05-prefix16k-warm "$data" qwen2.5-0.5b "$q05" "${prefix[@]}" --max-tokens-per-batch 16384 \
    --learning-rate 4e-4
  EVAL=0 job q05-cold "$data" qwen2.5-0.5b "$q05"
  INDUCTOR_CACHE=$RES/q05-cold/inductor-cache job q05-warm "$data" qwen2.5-0.5b "$q05"
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

shapes_schedule() {  # STAGE DATA: the preset warm with and without --fixed-batch-shapes, on one cold run's cache
  local data=$2 q05=$1/q05.gguf
  schedule_started shapes
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  # Whole rows: --no-fixed-batch-shapes since the preset has fixed shapes (2026-12-04).
  EVAL=0 job q05-cold "$data" qwen2.5-0.5b "$q05" --no-fixed-batch-shapes
  local cache=${INDUCTOR_CACHE:-$RES/q05-cold/inductor-cache}  # a carried cache (below) serves every job
  INDUCTOR_CACHE=$cache job q05-fixed-warm "$data" qwen2.5-0.5b "$q05" --fixed-batch-shapes
  EVAL=0 INDUCTOR_CACHE=$cache job q05-warm "$data" qwen2.5-0.5b "$q05" --no-fixed-batch-shapes
  INDUCTOR_SET=triton.skip_cudagraph_warmup=True EVAL=0 INDUCTOR_CACHE=$cache job q05-fixed-nowarmup-warm "$data" \
    qwen2.5-0.5b "$q05" --fixed-batch-shapes
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

lean_schedule() {  # STAGE DATA: the lean LoRA forward and larger evaluation batches, warm, on one cold run's cache
  local data=$2 q05=$1/q05.gguf
  schedule_started lean
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  [[ -z ${INDUCTOR_CACHE:-} ]] && EVAL=0 job q05-cold "$data" qwen2.5-0.5b "$q05"
  local cache=${INDUCTOR_CACHE:-$RES/q05-cold/inductor-cache}
  EVAL=${WARM_EVAL:-1} INDUCTOR_CACHE=$cache job q05-warm "$data" qwen2.5-0.5b "$q05"
  [[ -n ${LEAN_SHORT:-} ]] && { echo "$(date -u +%T) schedule done (LEAN_SHORT)"; echo done > "$RES/ALL_DONE"; return; }
  EVAL=0 INDUCTOR_CACHE=$cache job q05-peft-warm "$data" qwen2.5-0.5b "$q05" --no-lean-lora
  INDUCTOR_CACHE=$cache job q05-fixed-warm "$data" qwen2.5-0.5b "$q05" --fixed-batch-shapes
  EVAL=0 INDUCTOR_CACHE=$cache job q05-warm2 "$data" qwen2.5-0.5b "$q05"
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

precompile_schedule() {  # STAGE DATA: the saved compiled graph against Dynamo's trace, warm, on one cold run's cache
  local data=$2 q05=$1/q05.gguf
  schedule_started precompile
  wait_for_file "$q05" 900 || { echo "no $q05"; echo done > "$RES/ALL_DONE"; return 1; }
  [[ -z ${INDUCTOR_CACHE:-} ]] && EVAL=0 job q05-cold "$data" qwen2.5-0.5b "$q05" --no-precompile
  local cache=${INDUCTOR_CACHE:-$RES/q05-cold/inductor-cache}
  EVAL=0 INDUCTOR_CACHE=$cache job q05-save "$data" qwen2.5-0.5b "$q05"
  INDUCTOR_CACHE=$cache job q05-load "$data" qwen2.5-0.5b "$q05"
  EVAL=0 INDUCTOR_CACHE=$cache job q05-trace "$data" qwen2.5-0.5b "$q05" --no-precompile
  EVAL=0 INDUCTOR_CACHE=$cache job q05-load2 "$data" qwen2.5-0.5b "$q05"
  EVAL=0 INDUCTOR_CACHE=$cache job q05-trace2 "$data" qwen2.5-0.5b "$q05" --no-precompile
  # The saved graph does not depend on the batches' row counts (one dynamic graph): whole rows load it too. The preset
  # has --fixed-batch-shapes since 2026-12-04 (47.0 s loaded against 63.4-67.4 s with whole rows).
  EVAL=0 INDUCTOR_CACHE=$cache job q05-load-whole "$data" qwen2.5-0.5b "$q05" --no-fixed-batch-shapes
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

fresh_schedule() {  # STAGE DATA: a fresh machine's first run, cold or on a carried cache
  local data=$2 q05=$1/q05.gguf
  schedule_started fresh
  local t0; t0=$(date +%s.%N)
  # Not convert_when_staged: nothing runs beside it here, so it gets every thread, as a user's first `emo-hf train`.
  wait_for_file "$q05" 900 && python -c "import sys; from emo_hf.backbones.loading import backbone_source; \
print(backbone_source(sys.argv[1]))" "$q05" > "$RES/convert-q05.log" 2>&1 \
    || { echo "no $q05, or its conversion failed: $RES/convert-q05.log"; echo done > "$RES/ALL_DONE"; return 1; }
  echo "$(date -u +%T) q05.gguf converted in $(python -c "import time; print(round(time.time() - $t0, 1))") s"
  if [[ -z ${INDUCTOR_CACHE:-} ]]; then
    EVAL=${COLD_EVAL:-0} job q05-cold "$data" qwen2.5-0.5b "$q05"
  else
    echo "carried cache: $INDUCTOR_CACHE ($(find "$INDUCTOR_CACHE" -type f | wc -l) files)"
    job q05-carried "$data" qwen2.5-0.5b "$q05"
  fi
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

finish_schedule() {  # STAGE DATA: what the stack schedule left, when its cold stack compile took the lease's time
  local stage=$1 data=$2
  local q05=$stage/q05.gguf gemma=$stage/gemma.gguf
  schedule_started finish
  job q05-layers "$data" qwen2.5-0.5b "$q05"
  job gemma-2ep "$data" gemma3-270m "$gemma"
  job q05-unsloth16 "$data" qwen2.5-0.5b "$q05" --no-compile --unsloth
  echo "$(date -u +%T) schedule done"
  echo done > "$RES/ALL_DONE"
}

status() {
  for d in "$RES"/*/; do
    [[ -f $d/status ]] || continue
    local name; name=$(basename "$d")
    local last=""; [[ -f $d/train.log ]] && last=$(tr '\r' '\n' < "$d/train.log" | grep -v '^\s*$' | tail -1 | cut -c1-110)
    printf '%-18s %-8s %s\n' "$name" "$(cat "$d/status")" "$last"
  done
}

collect() {
  local out=${OUT:?set OUT: the folder the device machine returns}
  local pack; pack=$(mktemp -d)
  for d in "$RES"/*/; do
    local name; name=$(basename "$d"); mkdir -p "$pack/$name"
    for f in status started ended eval.log profile.json profile.log run/model/training_info.json run/model/config.json \
             test/test_probabilities.npy validation/validation_probabilities.npy \
             gpu_train.json gpu_train.md gpu_train.progress.txt gpu_train.logs.txt; do
      [[ -f $d/$f ]] && cp "$d/$f" "$pack/$name/"
    done
    for split in test validation; do [[ -f $d/$split/report.json ]] && cp "$d/$split/report.json" "$pack/$name/${split}_report.json"; done
    # Progress bars are carriage-return lines: keep the final state of each.
    [[ -f $d/train.log ]] && tr '\r' '\n' < "$d/train.log" | grep -v -E '^\s*[0-9]+%\|' | tail -400 > "$pack/$name/train.log"
  done
  cp "$RES"/*.log "$pack/" 2>/dev/null
  tar czf "$out/decoders.tgz" -C "$pack" . && rm -rf "$pack"
  # The cold job's inductor cache (or the one INDUCTOR_CACHE named: with --precompile it holds the saved graphs too), for
  # a later lease to carry (when it fits one call): see the header. Over 15 MB it comes back in 15 MB parts (a returned
  # file may hold 16 MiB): `cat inductor-cache.tgz.part* > inductor-cache.tgz`.
  local cache=${INDUCTOR_CACHE:-$RES/${CACHE_JOB:-q05-cold}/inductor-cache}
  if [[ -d $cache ]]; then
    tar czf "$out/inductor-cache.tgz" -C "$(dirname "$cache")" "$(basename "$cache")"
    local bytes; bytes=$(stat -c %s "$out/inductor-cache.tgz")
    if (( bytes > 60000000 )); then echo "inductor cache: $bytes bytes, too big to carry; not kept"; rm -f "$out/inductor-cache.tgz"
    elif (( bytes > 15000000 )); then
      split -b 15000000 -d "$out/inductor-cache.tgz" "$out/inductor-cache.tgz.part" && rm -f "$out/inductor-cache.tgz"
      echo "inductor cache: $bytes bytes in $(ls "$out"/inductor-cache.tgz.part* | wc -l) parts ($out/inductor-cache.tgz.part*)"
    else echo "inductor cache: $out/inductor-cache.tgz ($bytes bytes)"; fi
  fi
  python "$REPO/scripts/decoder_table.py" "$RES"
}

case ${1:-} in
  start) shift; mkdir -p "$RES"; setsid nohup bash "$0" schedule "$@" > "$RES/master.log" 2>&1 < /dev/null &
         echo "started: log $RES/master.log" ;;
  schedule) shift
            case ${SCHEDULE:-decoders} in speed) speed_schedule "$@" ;; graphs) graphs_schedule "$@" ;; stack) stack_schedule "$@" ;; warm) warm_schedule "$@" ;; budget) budget_schedule "$@" ;; prefix) prefix_schedule "$@" ;; tokens) tokens_schedule "$@" ;; startup) startup_schedule "$@" ;; packed) packed_schedule "$@" ;; shapes) shapes_schedule "$@" ;; lean) lean_schedule "$@" ;; precompile) precompile_schedule "$@" ;; fresh) fresh_schedule "$@" ;; finish) finish_schedule "$@" ;; *) schedule "$@" ;; esac ;;
  status) status ;;
  wait) wait_for_file "$RES/${3:-ALL_DONE}" "${2:?seconds}"; status; tail -5 "$RES/master.log" ;;
  collect) collect ;;
  *) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2 ;;
esac
