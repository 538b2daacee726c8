#!/usr/bin/env bash
# Ship pretrained/stylegan2-fmnist and its students from what scripts/gpu_stylegan2.sh brought back: copy the
# selected teacher (GAN directory) and each student, evaluate all of them once here under one protocol, and
# write their cards from those measurements and the runs' own records (selection.json, the students' configs).
#   scripts/ship_stylegan2.sh TEACHER_DIR "<teacher wall time and machine>" STUDENT_DIR:"<wall time>" ...
#   CARD_ONLY=1 scripts/ship_stylegan2.sh ...   # rewrite the cards from the recorded evaluations
# Two evaluations: fid10k[fmnist-cnn] with PSNR/SSIM vs the teacher, and fid1k[inception] as the independent check.
# e.g. scripts/ship_stylegan2.sh runs/gpu1/sg2-teacher "230 s on one H200" runs/gpu1/w0.25/student:"95 s on one H200"
set -euo pipefail
TEACHER_SRC=${1:?usage: scripts/ship_stylegan2.sh TEACHER_DIR "<wall time>" STUDENT_DIR:"<wall time>" ...}
TEACHER_WALL=${2:?teacher wall time}
shift 2
DEST=pretrained/stylegan2-fmnist
EVAL=runs/ship/eval-stylegan2-fmnist.json
EVAL_INCEPTION=runs/ship/eval-stylegan2-fmnist-inception1k.json
G=${G:-gandistill}
NOTES=${NOTES:-}  # a markdown file appended to every card (what the run showed)
mkdir -p runs/ship "$DEST"
students=()
for spec in "$@"; do
  w=$(python -c "import json; print(json.load(open('${spec%%:*}/config.json'))['config']['width'])")
  students+=("$DEST-student-w$w")
done
if [ -z "${CARD_ONLY:-}" ]; then
  rm -rf "$DEST/generator" "$DEST/discriminator"
  cp -r "$TEACHER_SRC/generator" "$TEACHER_SRC/discriminator" "$TEACHER_SRC/selection.json" "$DEST/"
  for spec in "$@"; do
    src=${spec%%:*}
    w=$(python -c "import json; print(json.load(open('$src/config.json'))['config']['width'])")
    rm -rf "$DEST-student-w$w" && mkdir -p "$DEST-student-w$w" && cp "$src/config.json" "$src/model.safetensors" "$DEST-student-w$w/"
  done
  rm -f "$EVAL" "$EVAL_INCEPTION"
  $G eval "$DEST" "${students[@]}" --num-samples 10000 --extractor fmnist-cnn --split test --out "$EVAL"
  $G eval "$DEST" "${students[@]}" --num-samples 1000 --extractor inception --metrics fid,kid --paired 0 \
    --out "$EVAL_INCEPTION"
fi

TRAIN=$(python -c "
import json; s = json.load(open('$DEST/selection.json')); c = s['train_config']; step = int(s['selected'][4:])
print(f\"the EMA generator of step {step} (batch {c['batch_size']}: {step * c['batch_size']:,} images seen; the \"
      f\"run stopped at step {s['discriminator_from_state_step']}), {c['loss']} loss with lazy R1 (gamma \"
      f\"{c['r1_gamma']:g} every {c['r1_every']} steps), Adam {c['g_lr']:g} betas ({c['beta1']:g}, {c['beta2']:g}) for \"
      f\"G and D, EMA {c['ema_decay']:g}, bf16 autocast={c['amp']}; the last {c['holdout']} train images held out \"
      f\"for checkpoint selection\")")
python scripts/card.py "$DEST" --title "stylegan2-fmnist: an early StyleGAN2 teacher (32x32 Fashion-MNIST)" \
  --about "A StyleGAN2-like generator (gandistill's stylegan2 family: 4-layer mapping network, w of 128, \
modulated convolutions with 256/256/128/64 channels at 4/8/16/32 px, bilinear up-sampling, skip toRGB) and its \
residual discriminator, trained from scratch on a GPU within one short session. **It is far from converged** \
(fid10k[fmnist-cnn] 44 against the DCGAN teacher's 6.3): it is shipped so that StyleGAN2 distillation runs on \
real weights, and a longer GPU run is to replace it (issue #19). Load it with \
\`gandistill.from_pretrained(\"$DEST\")\`; continue it with \`INIT_FROM=$DEST scripts/train_teacher_stylegan2.sh\`." \
  --command "PY=python3 GANDISTILL_DATA=\$PWD/.gpu/data bash scripts/gpu_stylegan2.sh   # then: scripts/ship_stylegan2.sh ..." \
  --steps "$TRAIN" --wall-time "$TEACHER_WALL" --eval "$EVAL" --eval "$EVAL_INCEPTION" ${NOTES:+--extra "$NOTES"}

for spec in "$@"; do
  src=${spec%%:*}
  wall=${spec#*:}
  w=$(python -c "import json; print(json.load(open('$src/config.json'))['config']['width'])")
  out=$DEST-student-w$w
  STEPS=$(python -c "
import json; d = json.load(open('$out/config.json'))['extra']['distill']
print(f\"{d['steps']} steps at batch {d['batch_size']} ({d['steps'] * d['batch_size']:,} images; the run was stopped by \"
      f\"its time limit and finished at that step), Adam {d['g_lr']:g} betas ({d['beta1']:g}, {d['beta2']:g}) for \"
      f\"student and discriminator, lr schedule {d.get('lr_schedule', 'constant')}, loss weights pixel {d['pixel']:g}, \"
      f\"feature {d['feature']:g}, disc_feature {d['disc_feature']:g}, disc_kl {d['disc_kl']:g}, adversarial \"
      f\"{d['adversarial']:g}, init {d['init']}, bf16 autocast={d['amp']}; the teacher was read from \"
      f\"{d['teacher']}, a copy of $DEST carried to the GPU machine (same weights sha256, recorded in config.json)\")")
  python scripts/card.py "$out" --title "$(basename "$out"): a width-$w student of stylegan2-fmnist" \
    --about "A stylegan2 generator with every synthesis layer at $w of the teacher's channels (the mapping \
network copied whole), initialised from the teacher's largest-L1 filters and distilled from \`$DEST\`: it draws \
nearly the teacher's image for the same z. Load it with \`gandistill.from_pretrained(\"$out\")\`." \
    --command "${STUDENT_COMMAND:-TEACHER_DIR=.gpu/teacher STUDENTS=\"w$w:$w:1e-3:SECONDS\" SEQUENTIAL=1 PY=python3 bash scripts/gpu_stylegan2.sh}" \
    --steps "$STEPS" --wall-time "$wall" --eval "$EVAL" --eval "$EVAL_INCEPTION" ${NOTES:+--extra "$NOTES"}
done
