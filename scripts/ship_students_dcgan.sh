#!/usr/bin/env bash
# Ship pretrained/dcgan-fmnist-student-w{W} from the distill runs of scripts/results.py (the students of the
# README's results table, distilled with the defaults at the table's step budget): copy the student, evaluate
# it once on the test split (paired with the teacher for PSNR/SSIM), and write its card from those measurements.
#   scripts/ship_students_dcgan.sh "<machine, in words>" [W ...]      # default widths: 0.25 0.5
# It refuses a student whose recorded teacher weights are not the shipped teacher's (retrained since), and puts
# a previously shipped folder back when the evaluation or the card fails.
set -euo pipefail
MACHINE=${1:?usage: scripts/ship_students_dcgan.sh "<machine, in words>" [W ...]}
shift
WIDTHS=("$@")
[ ${#WIDTHS[@]} -gt 0 ] || WIDTHS=(0.25 0.5)
RESULTS=${RESULTS:-runs/results}
TEACHER=${TEACHER:-pretrained/dcgan-fmnist}
mkdir -p runs/ship
for W in "${WIDTHS[@]}"; do
  W=$(printf '%g' "$W")  # results.py names its runs with {w:g}: 0.50 -> distill-w0.5
  RUN=$RESULTS/distill-w$W
  DEST=pretrained/dcgan-fmnist-student-w$W
  EVAL=runs/ship/eval-dcgan-fmnist-student-w$W.json
  # the run's facts, checked before anything is written: finished, distilled from this teacher's weights
  FACTS=$(python - "$RUN" "$TEACHER" "$RESULTS" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from results import teacher_of, threads_text  # the same rules as the results table's
from gandistill.checkpoint import weights_sha256
run, teacher, results = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
if not (run / "student" / "config.json").is_file():  # student/ is written when a run completes
    sys.exit(f"{run}: no finished student; run scripts/results.py first")
meta = json.loads((run / "student" / "config.json").read_text())
recorded, shipped = teacher_of(run), weights_sha256(teacher)
if recorded != shipped:
    sys.exit(f"{run}: distilled from teacher weights {recorded}, but {teacher} is now {shipped}; "
             f"delete {run} and rerun scripts/results.py")
timings, commands = results / "timings.json", results / "commands.md"
wall = json.loads(timings.read_text()).get(run.name) if timings.is_file() else None
lines = commands.read_text().splitlines() if commands.is_file() else []
command = next((line.split("`")[3] for line in lines if line.startswith(f"- `{run.name}`")), None)
if wall is None or command is None:
    sys.exit(f"{run}: no wall time in {timings} or no command in {commands} (scripts/results.py writes both)")
cfg = meta["extra"]["distill"]
print(cfg["steps"], cfg["batch_size"], round(wall["seconds"] / 60), threads_text(wall), shipped)
print(command)
PY
)
  read -r STEPS BATCH MINUTES THREADS TEACHER_SHA <<< "$(head -n 1 <<< "$FACTS")"
  COMMAND=$(tail -n 1 <<< "$FACTS")
  # swap the new folder in; the old one comes back if the evaluation or the card fails
  rm -rf "$DEST.tmp" "$DEST.old" && mkdir -p "$DEST.tmp"
  cp "$RUN/student/config.json" "$RUN/student/model.safetensors" "$DEST.tmp/"
  if [ -d "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
  mv "$DEST.tmp" "$DEST"
  trap 'rm -rf "$DEST"; if [ -d "$DEST.old" ]; then mv "$DEST.old" "$DEST"; fi' ERR
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
  trap - ERR
  rm -rf "$DEST.old"
done
