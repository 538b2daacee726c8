#!/usr/bin/env bash
# The command that trains pretrained/dcgan-fmnist (resumable: rerun to continue after a stop).
# On a machine without the run's state, continue from the shipped weights instead (fresh optimizers, a new
# step count): INIT_FROM=pretrained/dcgan-fmnist STEPS=14000 OUT=runs/teacher-dcgan-fmnist-2 scripts/train_teacher_dcgan.sh
# The last 5000 train images are held out for checkpoint selection by FID (never the test split).
set -euo pipefail
# one thread by default: two OpenMP threads thrash when anything else runs on a 2-core machine (a 1-thread job
# beside them cut them from 4.6 to ~0.8 steps/s); OMP_NUM_THREADS=2 on an otherwise idle machine gives ~300 img/s
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/teacher-dcgan-fmnist}
RESUME=()
[ -f "$OUT/state.pt" ] && RESUME=(--resume)
[ -n "${INIT_FROM:-}" ] && [ ! -f "$OUT/state.pt" ] && RESUME=(--init-from "$INIT_FROM")
exec gandistill train --out "$OUT" --family dcgan --base-channels 64 --resolution 32 --channels 1 \
  --data fashion-mnist --split train --holdout 5000 --steps ${STEPS:-40000} --batch-size 64 --loss hinge \
  --g-lr 2e-4 --d-lr 2e-4 --ema-decay 0.999 --seed 0 \
  --checkpoint-every 250 --snapshot-every 1000 --sample-every 1000 --log-every 100 "${RESUME[@]}"
