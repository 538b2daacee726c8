#!/usr/bin/env bash
# The committed sample grids in samples/: every shipped generator, teacher|student for the same latents,
# and a latent interpolation. Names carry model and seed. Rerun after shipping new weights.
#   scripts/make_samples.sh            # from pretrained/ into samples/
set -euo pipefail
SEED=${SEED:-0}
OUT=${OUT:-samples}
G=${G:-gandistill}
TEACHER=pretrained/dcgan-fmnist
mkdir -p "$OUT"
"$G" sample "$TEACHER" --num 64 --seed "$SEED" --scale 2 --overwrite --out "$OUT/dcgan-fmnist_seed$SEED.png"
"$G" sample "$TEACHER" --num 64 --seed "$SEED" --interpolate --scale 2 --overwrite --out "$OUT/dcgan-fmnist_interpolation_seed$SEED.png"
for student in pretrained/dcgan-fmnist-student-w*/; do
  [ -d "$student" ] || continue
  name=$(basename "$student")
  "$G" sample "$student" --num 64 --seed "$SEED" --scale 2 --overwrite --out "$OUT/${name}_seed$SEED.png"
  "$G" sample "$TEACHER" --compare "$student" --num 32 --seed "$SEED" --scale 2 --overwrite \
    --out "$OUT/dcgan-fmnist_vs_${name#dcgan-fmnist-}_seed$SEED.png"
done
ls -1 "$OUT"
