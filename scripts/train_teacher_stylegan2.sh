#!/usr/bin/env bash
# Train the StyleGAN2 teacher on Fashion-MNIST 32x32 (resumable: rerun to continue where it stopped).
# FAMILY=stylegan2 (default: StyleGAN2 as published) or stylegan2-lite (the earlier StyleGAN2-like family).
# Made for one GPU (bf16 autocast, batch 256); on a CPU it runs, at ~9 img/s for base 64: days, not hours.
#   scripts/train_teacher_stylegan2.sh                                 # all steps
#   TIME_LIMIT=270 R1_GAMMA=0.1 OUT=runs/sg2-g0.1 scripts/train_teacher_stylegan2.sh   # stop after 270 s
# TIME_LIMIT stops the run with SIGTERM: the state is saved whole and snapshots/ keeps the EMA generator every
# SNAPSHOT_EVERY steps; scripts/select_teacher.py then picks one by FID on the held-out train images.
# Hyper-parameters follow StyleGAN2's small-image settings (non-saturating loss with lazy R1, Adam 0.002 with
# betas (0, 0.99), EMA half-life ~90k images at batch 256); only R1's gamma is left to choose by run.
set -euo pipefail
GD=${GD:-gandistill}  # or "python3 -m gandistill" where the package is not installed
OUT=${OUT:-runs/teacher-stylegan2-fmnist}
DEVICE=${DEVICE:-cuda}
AMP=()
[ "${DEVICE%%:*}" = cuda ] && AMP=(--amp)
RESUME=()
[ -f "$OUT/state.pt" ] && RESUME=(--resume)
# continue a shipped teacher on a machine without its run state (fresh optimizers and step count):
# INIT_FROM=pretrained/stylegan2-fmnist OUT=runs/sg2-2 TIME_LIMIT=400 scripts/train_teacher_stylegan2.sh
[ -n "${INIT_FROM:-}" ] && [ ! -f "$OUT/state.pt" ] && RESUME=(--init-from "$INIT_FROM")
run=($GD train --out "$OUT" --family "${FAMILY:-stylegan2}" --base-channels "${BASE:-64}" --resolution 32 --channels 1
  --data fashion-mnist --split train --holdout 5000 --steps "${STEPS:-1000000}" --batch-size "${BATCH:-256}"
  --loss nonsat --r1-gamma "${R1_GAMMA:-0.05}" --r1-every 16 --g-lr 0.002 --d-lr 0.002 --beta1 0 --beta2 0.99
  --ema-decay "${EMA_DECAY:-0.998}" --seed "${SEED:-0}" --device "$DEVICE" "${AMP[@]}"
  --checkpoint-every "${CHECKPOINT_EVERY:-500}" --snapshot-every "${SNAPSHOT_EVERY:-500}"
  --sample-every "${SAMPLE_EVERY:-1000}" --log-every "${LOG_EVERY:-100}" "${RESUME[@]}")
if [ "${TIME_LIMIT:-0}" != 0 ]; then
  # exit 124 from timeout means the limit was reached and the run saved its state: not a failure
  timeout -s TERM -k 60 "$TIME_LIMIT" "${run[@]}" || { rc=$?; [ $rc = 124 ] || exit $rc; }
else
  exec "${run[@]}"
fi
