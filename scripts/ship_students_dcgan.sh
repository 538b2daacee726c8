#!/usr/bin/env bash
# Ship pretrained/dcgan-fmnist-student-w{W} from the distill runs of scripts/results.py (the students of the
# README's results table, distilled with the defaults at the table's step budget): copy the student, evaluate
# it once on the test split (paired with the teacher for PSNR/SSIM), and write its card from those measurements.
#   scripts/ship_students_dcgan.sh "<machine, in words>" [W ...]      # default widths: 0.25 0.5
# It refuses a student whose recorded teacher weights are not the shipped teacher's (retrained since).
set -euo pipefail
MACHINE=${1:?usage: scripts/ship_students_dcgan.sh "<machine, in words>" [W ...]}
shift
WIDTHS=("$@")
[ ${#WIDTHS[@]} -gt 0 ] || WIDTHS=(0.25 0.5)
RESULTS=${RESULTS:-runs/results}
TEACHER=${TEACHER:-pretrained/dcgan-fmnist}
mkdir -p runs/ship
for W in "${WIDTHS[@]}"; do
  RUN=$RESULTS/distill-w$W
  DEST=pretrained/dcgan-fmnist-student-w$W
  EVAL=runs/ship/eval-dcgan-fmnist-student-w$W.json
  # the run's facts, checked before anything is written: finished, distilled from this teacher's weights
  FACTS=$(python - "$RUN" "$TEACHER" "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path
from gandistill.checkpoint import WEIGHTS_NAME, load_state, resolve_model_dir, sha256_file
run, teacher, results = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
meta = json.loads((run / "student" / "config.json").read_text())
cfg = meta["extra"]["distill"]
if int(load_state(run / "state.pt")["step"]) < cfg["steps"]:
    sys.exit(f"{run}: not finished; rerun scripts/results.py first")
recorded = meta["lineage"]["teacher"].get("weights_sha256")
shipped = sha256_file(resolve_model_dir(teacher) / WEIGHTS_NAME)
if recorded != shipped:
    sys.exit(f"{run}: distilled from teacher weights {recorded}, but {teacher} is now {shipped}; rerun the run")
seconds = json.loads((results / "timings.json").read_text())[run.name]
command = next(line.split("`")[3] for line in (results / "commands.md").read_text().splitlines()
               if line.startswith(f"- `{run.name}`"))
print(cfg["steps"], cfg["batch_size"], round(seconds["seconds"] / 60), seconds["torch_threads"], shipped)
print(command)
EOF
)
  read -r STEPS BATCH MINUTES THREADS TEACHER_SHA <<< "$(head -n 1 <<< "$FACTS")"
  COMMAND=$(tail -n 1 <<< "$FACTS")
  rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
  cp "$RUN/student/config.json" "$RUN/student/model.safetensors" "$DEST.tmp/"
  rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
  rm -f "$EVAL"
  gandistill eval "$DEST" --num-samples 10000 --extractor fmnist-cnn --split test --teacher "$TEACHER" \
    --paired 1000 --out "$EVAL"
  python scripts/card.py "$DEST" --title "dcgan-fmnist-student-w$W: a width-$W student of dcgan-fmnist" \
    --about "A DCGAN generator with every hidden layer at $W of the teacher's channels, initialised from the \
teacher's largest-L1 filters and distilled from \`$TEACHER\` (generator weights sha256 \`$TEACHER_SHA\`) with \
\`gandistill distill\`'s default losses: it draws nearly the teacher's image for the same z. It is the \
\`distill-w$W\` row of the README's results table. Load it with \`gandistill.from_pretrained(\"$DEST\")\`; \
\`gandistill info $DEST\` shows its lineage and kept channels." \
    --command "$COMMAND   # one row of: python scripts/results.py --teacher $TEACHER --out $RESULTS" \
    --steps "$STEPS steps at batch $BATCH (the results table's budget; every loss weight and learning rate at \
its default), on the same z as the teacher, real images from the train split for the adversarial term" \
    --wall-time "about $MINUTES min with $THREADS torch threads on $MACHINE" --eval "$EVAL"
done
