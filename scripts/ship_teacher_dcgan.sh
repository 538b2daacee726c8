#!/usr/bin/env bash
# Ship pretrained/dcgan-fmnist from the run of scripts/train_teacher_dcgan.sh: pick the snapshot by FID on the
# held-out TRAIN slice, evaluate it once on the test split, and write its card from those measurements.
#   [MIN_STEP=N] [EXTRA=note.md] scripts/ship_teacher_dcgan.sh "<wall time and machine, in words>"
#   CARD_ONLY=1 EXTRA=note.md scripts/ship_teacher_dcgan.sh "..."   # rewrite the card from the recorded eval
set -euo pipefail
WALL=${1:?usage: scripts/ship_teacher_dcgan.sh "<wall time and machine>"}
RUN=${RUN:-runs/teacher-dcgan-fmnist}
DEST=${DEST:-pretrained/dcgan-fmnist}
MIN_STEP=${MIN_STEP:-10000}
EVAL=${EVAL:-runs/ship/eval-dcgan-fmnist.json}
if [ -z "${CARD_ONLY:-}" ]; then
  mkdir -p "$(dirname "$EVAL")"
  rm -f "$EVAL"
  python scripts/select_teacher.py --run "$RUN" --out "$DEST" --min-step "$MIN_STEP"
  gandistill eval "$DEST" --num-samples 10000 --extractor fmnist-cnn --split test --out "$EVAL"
fi
STEP=$(python -c "import json,sys; print(int(json.load(open('$DEST/selection.json'))['selected'][4:]))")
python scripts/card.py "$DEST" --title "dcgan-fmnist: the DCGAN teacher (32x32 Fashion-MNIST)" \
  --about "The teacher that \`make demo\` distills: a DCGAN generator (EMA weights) and its spectral-norm \
discriminator, base 64 channels, z of 100, trained from scratch on Fashion-MNIST. Load it with \
\`gandistill.from_pretrained(\"$DEST\")\` (generator) or \`from_pretrained(\"$DEST\", \"discriminator\")\`." \
  --command "scripts/train_teacher_dcgan.sh   # then: scripts/ship_teacher_dcgan.sh \"...\"" \
  --steps "the EMA generator of step $STEP (batch 64, hinge loss, Adam 2e-4 for G and D, EMA 0.999), the last 5000 \
train images held out for checkpoint selection" \
  --wall-time "$WALL" --eval "$EVAL" ${EXTRA:+--extra "$EXTRA"}
