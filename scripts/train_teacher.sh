#!/usr/bin/env bash
# The commands that train the shipped teachers on Fashion-MNIST 32x32 (resumable: rerun to continue after a stop).
#   scripts/train_teacher.sh dcgan        # pretrained/dcgan-fmnist (1 CPU thread by default)
#   scripts/train_teacher.sh stylegan2    # StyleGAN2 (FAMILY=stylegan2-lite: the earlier StyleGAN2-like family)
#   TIME_LIMIT=270 R1_GAMMA=0.1 OUT=runs/sg2-g0.1 scripts/train_teacher.sh stylegan2   # stop after 270 s
# On a machine without the run's state, continue from shipped weights instead (fresh optimizers, a new step count):
#   INIT_FROM=pretrained/dcgan-fmnist STEPS=14000 OUT=runs/teacher-dcgan-fmnist-2 scripts/train_teacher.sh dcgan
# The last 5000 train images are held out for checkpoint selection by FID (never the test split): snapshots/
# keeps the EMA generator every SNAPSHOT_EVERY steps and `gandistill select-teacher` picks one (scripts/ship.sh).
# TIME_LIMIT stops the run with SIGTERM: the state is saved whole.
set -euo pipefail
KIND=${1:?usage: scripts/train_teacher.sh dcgan|stylegan2}
GD=${GD:-gandistill}  # or "python3 -m gandistill" where the package is not installed
RESUME=()
case $KIND in
  dcgan)
    # one thread by default: two OpenMP threads thrash when anything else runs on a 2-core machine (a 1-thread job
    # beside them cut them from 4.6 to ~0.8 steps/s); OMP_NUM_THREADS=2 on an otherwise idle machine gives ~300 img/s
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    OUT=${OUT:-runs/teacher-dcgan-fmnist}
    run=($GD train --out "$OUT" --family dcgan --base-channels 64 --resolution 32 --channels 1
      --data fashion-mnist --split train --holdout 5000 --steps "${STEPS:-40000}" --batch-size 64 --loss hinge
      --g-lr 2e-4 --d-lr 2e-4 --ema-decay 0.999 --seed 0
      --checkpoint-every 250 --snapshot-every 1000 --sample-every 1000 --log-every 100);;
  stylegan2)
    # Made for one GPU (bf16 autocast, batch 256); on a CPU it runs, at ~9 img/s for base 64: days, not hours.
    # Hyper-parameters follow StyleGAN2's small-image settings (non-saturating loss with lazy R1, Adam 0.002 with
    # betas (0, 0.99), EMA half-life ~90k images at batch 256); only R1's gamma is left to choose by run.
    OUT=${OUT:-runs/teacher-stylegan2-fmnist}
    DEVICE=${DEVICE:-cuda}
    AMP=()
    [ "${DEVICE%%:*}" = cuda ] && AMP=(--amp)
    run=($GD train --out "$OUT" --family "${FAMILY:-stylegan2}" --base-channels "${BASE:-64}" --resolution 32
      --channels 1 --data fashion-mnist --split train --holdout 5000 --steps "${STEPS:-1000000}"
      --batch-size "${BATCH:-256}" --loss nonsat --r1-gamma "${R1_GAMMA:-0.05}" --r1-every 16 --g-lr 0.002
      --d-lr 0.002 --beta1 0 --beta2 0.99 --ema-decay "${EMA_DECAY:-0.998}" --seed "${SEED:-0}" --device "$DEVICE"
      "${AMP[@]}" --checkpoint-every "${CHECKPOINT_EVERY:-500}" --snapshot-every "${SNAPSHOT_EVERY:-500}"
      --sample-every "${SAMPLE_EVERY:-1000}" --log-every "${LOG_EVERY:-100}");;
  *) echo "usage: scripts/train_teacher.sh dcgan|stylegan2 (got $KIND)" >&2; exit 2;;
esac
[ -f "$OUT/state.pt" ] && RESUME=(--resume)
[ -n "${INIT_FROM:-}" ] && [ ! -f "$OUT/state.pt" ] && RESUME=(--init-from "$INIT_FROM")
if [ "${TIME_LIMIT:-0}" != 0 ]; then
  # exit 124 from timeout means the limit was reached and the run saved its state: not a failure
  timeout -s TERM -k 60 "$TIME_LIMIT" "${run[@]}" "${RESUME[@]}" || { rc=$?; [ $rc = 124 ] || exit $rc; }
else
  exec "${run[@]}" "${RESUME[@]}"
fi
