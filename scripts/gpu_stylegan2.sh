#!/usr/bin/env bash
# The one prepared GPU session behind pretrained/stylegan2-fmnist (issue #19): one command, under 10 minutes.
#   1. CUDA smoke test: a few steps of train and distill on tiny models, bf16 autocast (stops here on failure);
#      then scripts/profile_train_step.py: img/s of one training step and its heaviest kernels (PROFILE=0: skip)
#   2. teacher: scripts/train_teacher.sh stylegan2 for each R1 gamma in GAMMAS, side by side, TEACHER_SECONDS each
#      (INIT_FROM=pretrained/stylegan2-fmnist continues the shipped one); beside them the DCGAN budget curve of
#      issue #17 (DCGAN_WIDTHS="" skips it)
#   3. selection by fid[fmnist-cnn] on the 5000 held-out TRAIN images (gandistill select-teacher), across runs
#   4. fid[fmnist-cnn] of the selected teacher on the test split (EVAL_N images; 0 skips every evaluation)
#   5. students (STUDENTS, name:width:lr[:seconds]) side by side, or one by one with SEQUENTIAL=1
#   6. fid + paired PSNR/SSIM of teacher and students; 7. the CUDA-marked tests, a torchrun (NCCL) distill
#      (SKIP_DDP=1 skips it), profile() on CUDA. Results go to $OUT as at most 8 tar files, each phase's as soon
#      as it is done. TEACHER_DIR=DIR skips phases 1-4 and distills students from DIR.
# Learned in the first session (2026-12-04, one H200): processes on one GPU are time-sliced, not overlapped
# (two teachers beside two DCGAN chains: ~1,400 img/s per teacher; three students side by side ~650 img/s each,
# one alone ~2,500): run one job at a time. The device tree limit is 64 MiB: with the shipped teacher tracked,
# carry only the train split in .gpu/data (evaluate on the test split here, on the CPU).
# Rehearsal on a CPU, same code paths at toy sizes:
#   DEVICE=cpu BASE=4 BATCH=16 TEACHER_SECONDS=25 DISTILL_SECONDS=20 SELECT_N=300 EVAL_N=300 bash scripts/gpu_stylegan2.sh
# On the device machine (torch there, torch-fidelity carried as a wheel, Fashion-MNIST carried in .gpu/data):
#   PY=python3 GANDISTILL_DATA=$PWD/.gpu/data bash scripts/gpu_stylegan2.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
GD="$PY -m gandistill"
DEVICE=${DEVICE:-cuda}
BASE=${BASE:-64}
BATCH=${BATCH:-256}
GAMMAS=${GAMMAS:-"0.01 0.1"}
TEACHER_SECONDS=${TEACHER_SECONDS:-230}
DISTILL_SECONDS=${DISTILL_SECONDS:-120}
SELECT_N=${SELECT_N:-5000}
EVAL_N=${EVAL_N:-10000}
RUNS=${RUNS:-runs/gpu-stylegan2}
RESULTS=${OUT:-$RUNS/out}
AMP=()
[ "${DEVICE%%:*}" = cuda ] && AMP=(--amp)
mkdir -p "$RUNS" "$RESULTS"
LOG="$RESULTS/session.log"
T0=$(date +%s)
DCGAN_PIDS=""
say() { echo "== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
pack() { local name=$1; shift; tar -cf "$RESULTS/$name.tar" "$@" 2>>"$LOG"; say "packed $name.tar ($(du -h "$RESULTS/$name.tar" | cut -f1))"; }

say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"; } 2>&1 | tee -a "$LOG"

if [ -n "${TEACHER_DIR:-}" ]; then  # students only, from a teacher made earlier
  TEACHER=$TEACHER_DIR
  say "teacher: $TEACHER"
else
say "1. smoke test on $DEVICE"
  SMOKE=$RUNS/smoke
  rm -rf "$SMOKE"
  if ! { $GD train --out "$SMOKE/t" --family stylegan2 --base-channels 4 --steps 4 --batch-size 8 --data fashion-mnist \
           --holdout 100 --r1-gamma 0.1 --r1-every 2 --loss nonsat --device "$DEVICE" "${AMP[@]}" --snapshot-every 2 \
           --sample-every 0 --log-every 2 &&
         $GD distill --teacher "$SMOKE/t" --out "$SMOKE/d" --width 0.5 --steps 4 --batch-size 8 --device "$DEVICE" \
           "${AMP[@]}" --sample-every 0 --log-every 2; } >>"$LOG" 2>&1; then
    say "smoke test FAILED: see session.log"; tail -30 "$LOG"; exit 1
  fi
  
  if [ "${PROFILE:-1}" = 1 ]; then  # where one training step spends its time (the first session's was slow)
    say "profile of one training step (scripts/profile_train_step.py)"
    $PY scripts/profile_train_step.py --base-channels "$BASE" --batch-size "$BATCH" --device "$DEVICE" "${AMP[@]}" \
      --runs 5 2>&1 | grep -v "^USDT\|^ERROR:" | cut -c1-170 | tee -a "$LOG"
  fi

  # Beside the teachers (they leave most of the GPU idle between small kernels): the DCGAN budget curve of issue
  # #17, one chain per width: a separate run for each budget in DCGAN_STAGES (the default cosine schedule spans
  # --steps, so a longer budget is its own run, not a resumed shorter one); the students come back to be
  # evaluated on the CPU. Each run ends by DCGAN_SECONDS after the start, finished or not.
  dcgan_chain() {  # name width
    for steps in $DCGAN_STAGES; do
      local run=$RUNS/dcgan/$1-run$steps
      local left=$(( T0 + DCGAN_SECONDS - $(date +%s) ))
      [ "$left" -gt 5 ] || return
      timeout -s TERM -k 20 "$left" $GD distill --teacher pretrained/dcgan-fmnist --out "$run" --width "$2" \
        --steps "$steps" --device "$DEVICE" --sample-every 0 --log-every 100 --checkpoint-every 1000 || return
      cp -r "$run/student" "$RUNS/dcgan/$1-s$steps"
    done
  }
  DCGAN_STAGES=${DCGAN_STAGES:-"1500 5000 15000 40000"}
  DCGAN_SECONDS=${DCGAN_SECONDS:-440}  # from the script's start
  rm -rf "$RUNS/dcgan" && mkdir -p "$RUNS/dcgan"
  if [ -n "${DCGAN_WIDTHS:-0.25 0.5}" ]; then
    for w in ${DCGAN_WIDTHS:-0.25 0.5}; do dcgan_chain "w$w" "$w" >"$RUNS/dcgan/w$w.out" 2>&1 & done
  fi
  DCGAN_PIDS=$(jobs -p)
  
  say "2. teachers, ${TEACHER_SECONDS}s each, R1 gamma in: $GAMMAS"
  TEACHER_PIDS=()
  for g in $GAMMAS; do
    GD="$GD" OUT="$RUNS/teacher-g$g" DEVICE="$DEVICE" BASE="$BASE" BATCH="$BATCH" R1_GAMMA="$g" \
      TIME_LIMIT="$TEACHER_SECONDS" bash scripts/train_teacher.sh stylegan2 >"$RUNS/teacher-g$g.out" 2>&1 &
    TEACHER_PIDS+=($!)
  done
  wait "${TEACHER_PIDS[@]}"
  for g in $GAMMAS; do
    say "teacher-g$g: $(tail -c 300 "$RUNS/teacher-g$g.out" | tr '\r' '\n' | grep -v '^\s*$' | tail -1)"
    tail -2 "$RUNS/teacher-g$g/log.jsonl" >>"$LOG" 2>/dev/null
  done
  
  say "3. selection on the held-out train images"
  best="" best_score=""
  for g in $GAMMAS; do
    $PY -m gandistill select-teacher --run "$RUNS/teacher-g$g" --out "$RUNS/sel-g$g" --num "$SELECT_N" --last "${SELECT_LAST:-5}" \
      --device "$DEVICE" >>"$LOG" 2>&1 || { say "selection of g$g failed"; continue; }
    score=$($PY -c "import json; s=json.load(open('$RUNS/sel-g$g/selection.json')); print(s['scores'][s['selected']])")
    say "g$g: selected $($PY -c "import json; print(json.load(open('$RUNS/sel-g$g/selection.json'))['selected'])") at $score"
    if [ -z "$best" ] || $PY -c "import sys; sys.exit(0 if $score < $best_score else 1)"; then best=$g best_score=$score; fi
  done
  [ -n "$best" ] || { say "no teacher selected"; exit 1; }
  TEACHER=$RUNS/teacher
  rm -rf "$TEACHER" && cp -r "$RUNS/sel-g$best" "$TEACHER"
  say "teacher: gamma $best (holdout fid $best_score)"
  
  say "4. teacher fid${EVAL_N} on the test split"
  $GD eval "$TEACHER" --num-samples "$EVAL_N" --extractor fmnist-cnn --split test --device "$DEVICE" \
    --out "$RUNS/eval-teacher.json" 2>&1 | tail -4 | tee -a "$LOG"
  pack teacher-g "$TEACHER/generator" "$TEACHER/selection.json" "$RUNS/eval-teacher.json" $(for g in $GAMMAS; do
    echo "$RUNS/teacher-g$g/log.jsonl" "$RUNS/teacher-g$g.out" "$RUNS/sel-g$g/selection.json"
    ls -d "$RUNS/teacher-g$g/samples"/step* 2>/dev/null | tail -1; done)
  pack teacher-d "$TEACHER/discriminator"
  
fi

say "5. students, ${DISTILL_SECONDS}s each"
distill_args() {  # name width lr
  echo --teacher "$TEACHER" --out "$RUNS/$1" --width "$2" --g-lr "$3" --d-lr "$3" --beta1 0 --beta2 0.99 \
    --batch-size "$BATCH" --device "$DEVICE" "${AMP[@]}" --checkpoint-every 500 --sample-every 1000 \
    --log-every 100 --steps 1000000
}
# name:width:lr[:seconds]; side by side, or one after the other with SEQUENTIAL=1 (processes on one GPU are
# time-sliced: the first session's three students side by side ran ~2.5 steps/s each)
STUDENTS=${STUDENTS:-"w0.5:0.5:1e-3 w0.25:0.25:1e-3 w0.25-lr2e-4:0.25:2e-4"}
STUDENT_PIDS=()
for s in $STUDENTS; do
  IFS=: read -r name width lr seconds <<<"$s"
  rm -rf "${RUNS:?}/$name"
  timeout -s TERM -k 60 "${seconds:-$DISTILL_SECONDS}" $GD distill $(distill_args "$name" "$width" "$lr") \
    >"$RUNS/$name.out" 2>&1 &
  STUDENT_PIDS+=($!)
  [ "${SEQUENTIAL:-0}" = 1 ] && wait $!
done
wait "${STUDENT_PIDS[@]}"
wait $DCGAN_PIDS
[ -n "$DCGAN_PIDS" ] && say "dcgan chains: $(ls "$RUNS/dcgan" | grep -- '-s' | tr '\n' ' ')"
[ -n "$DCGAN_PIDS" ] && pack dcgan "$RUNS"/dcgan/*-s* "$RUNS"/dcgan/*.out "$RUNS"/dcgan/w*-run*/log.jsonl
for s in $STUDENTS; do  # stopped by the time limit: finish at the step reached (writes student/)
  IFS=: read -r name width lr _ <<<"$s"
  step=$($PY -c "from gandistill.checkpoint import load_state; print(load_state('$RUNS/$name/state.pt')['step'])")
  args=$(distill_args "$name" "$width" "$lr")
  $GD distill ${args% --steps 1000000} --steps "$step" --resume >>"$RUNS/$name.out" 2>&1
  say "$name: step $step, student/ $( [ -f "$RUNS/$name/student/model.safetensors" ] && echo written || echo MISSING)"
done

[ "$EVAL_N" = 0 ] || {
say "6. fid${EVAL_N} and paired fidelity, teacher and students"
$GD eval "$TEACHER" $(for s in $STUDENTS; do echo "$RUNS/${s%%:*}/student"; done) --num-samples "$EVAL_N" \
  --extractor fmnist-cnn --split test --device "$DEVICE" --out "$RUNS/eval-students.json" 2>&1 | tail -8 | tee -a "$LOG"
}
pack students $(for s in $STUDENTS; do n=${s%%:*}; echo "$RUNS/$n/student" "$RUNS/$n/log.jsonl" "$RUNS/$n/samples"; done) \
  "$RUNS/eval-students.json"

say "7. CUDA-marked tests, torchrun (NCCL) distill, profile on $DEVICE"
$PY -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tail -4 | tee -a "$LOG"
rm -rf "$RUNS/ddp"
[ "${SKIP_DDP:-0}" = 1 ] || $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m gandistill distill --teacher "$TEACHER" \
  --out "$RUNS/ddp" --width 0.25 --steps 30 --batch-size 64 --device "$DEVICE" "${AMP[@]}" --sample-every 0 \
  --log-every 10 2>&1 | tail -2 | tee -a "$LOG"
$GD profile "$TEACHER" $(for s in $STUDENTS; do echo "$RUNS/${s%%:*}/student"; done) --device "$DEVICE" \
  --throughput-batch 256 --out "$RUNS/profile.json" 2>&1 | tail -8 | tee -a "$LOG"

say "done"
pack runs "$RUNS"/*.out "$RUNS"/*.json
