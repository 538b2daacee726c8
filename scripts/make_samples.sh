#!/usr/bin/env bash
# The committed sample grids in samples/: every shipped generator, teacher|student for the same latents,
# and a latent interpolation. Names carry model and seed. Rerun after shipping new weights.
#   scripts/make_samples.sh            # from pretrained/ into samples/
set -euo pipefail
SEED=${SEED:-0}
OUT=${OUT:-samples}
G=${G:-gandistill}
mkdir -p "$OUT"
for TEACHER in pretrained/dcgan-fmnist pretrained/stylegan2-fmnist pretrained/stylegan2-fmnist-faithful; do
  [ -d "$TEACHER" ] || continue
  t=$(basename "$TEACHER")
  "$G" sample "$TEACHER" --num 64 --seed "$SEED" --scale 2 --overwrite --out "$OUT/${t}_seed$SEED.png"
  "$G" sample "$TEACHER" --num 64 --seed "$SEED" --interpolate --scale 2 --overwrite \
    --out "$OUT/${t}_interpolation_seed$SEED.png"
  for student in "$TEACHER"-student-w*/; do
    [ -d "$student" ] || continue
    name=$(basename "$student")
    "$G" sample "$student" --num 64 --seed "$SEED" --scale 2 --overwrite --out "$OUT/${name}_seed$SEED.png"
    "$G" sample "$TEACHER" --compare "$student" --num 32 --seed "$SEED" --scale 2 --overwrite \
      --out "$OUT/${t}_vs_${name#"$t"-}_seed$SEED.png"
  done
done
ls -1 "$OUT"
