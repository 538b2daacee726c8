#!/usr/bin/env bash
# Ship pretrained/dcgan-fmnist-student-w{W} from a finished distill run: copy the student, evaluate it once on
# the test split (paired with the teacher for PSNR/SSIM), and write its card from those measurements.
#   scripts/ship_students_dcgan.sh "<machine, in words>" [W | W=RUN ...]   # default: 0.25 0.5
# A bare W ships $RESULTS/distill-wW (scripts/results.py's run); W=RUN ships any run folder, e.g. one of
# scripts/recipe.py's. The command comes from commands.md beside the run (results.py and recipe.py write it;
# write it by hand for a run started by hand), the wall time from timings.json there or else from the run's
# progress logs RUN.out* (tqdm's elapsed time of each segment, summed).
# It refuses a student whose recorded teacher weights are not the shipped teacher's (retrained since), and puts
# a previously shipped folder back when the evaluation or the card fails.
set -euo pipefail
MACHINE=${1:?usage: scripts/ship_students_dcgan.sh "<machine, in words>" [W | W=RUN ...]}
shift
SPECS=("$@")
[ ${#SPECS[@]} -gt 0 ] || SPECS=(0.25 0.5)
RESULTS=${RESULTS:-runs/results}
TEACHER=${TEACHER:-pretrained/dcgan-fmnist}
INCEPTION_N=${INCEPTION_N:-1000}
mkdir -p runs/ship
for SPEC in "${SPECS[@]}"; do
  W=$(printf '%g' "${SPEC%%=*}")  # results.py names its runs with {w:g}: 0.50 -> distill-w0.5
  if [[ $SPEC == *=* ]]; then RUN=${SPEC#*=}; else RUN=$RESULTS/distill-w$W; fi
  DEST=pretrained/dcgan-fmnist-student-w$W
  EVAL=runs/ship/eval-dcgan-fmnist-student-w$W.json
  EVAL_INCEPTION=runs/ship/eval-dcgan-fmnist-student-w$W-inception$INCEPTION_N.json
  EVAL_INCEPTION_ARG=$([ "$INCEPTION_N" -gt 0 ] && echo 1 || true)
  # the run's facts, checked before anything is written: finished, distilled from this teacher's weights
  FACTS=$(python - "$RUN" "$TEACHER" "$W" <<'PY'
import dataclasses, json, re, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from results import teacher_of, threads_text  # the same rules as the results table's
from gandistill.checkpoint import weights_sha256
from gandistill.cli_args import distill_command_for
from gandistill.config import DISTILL_BOOKKEEPING, DistillConfig
run, teacher, width = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
if not (run / "student" / "config.json").is_file():  # student/ is written when a run completes
    sys.exit(f"{run}: no finished student")
meta = json.loads((run / "student" / "config.json").read_text())
cfg = DistillConfig.made_with(meta["extra"]["distill"])  # settings added since: as they were then
if cfg["width"] != width:
    sys.exit(f"{run}: a width-{cfg['width']:g} student, not {width:g}")
recorded, shipped = teacher_of(run), weights_sha256(teacher)
if recorded != shipped:
    sys.exit(f"{run}: distilled from teacher weights {recorded}, but {teacher} is now {shipped}; "
             f"distill it again")
timings, commands = run.parent / "timings.json", run.parent / "commands.md"
wall = json.loads(timings.read_text()).get(run.name) if timings.is_file() else None
if wall is not None:
    wall_text = f"about {round(wall['seconds'] / 60)} min with {threads_text(wall)} torch threads"
else:  # tqdm's elapsed time, [MM:SS<...] or [H:MM:SS<...]: each segment's last value, summed over the logs
    minutes = 0.0
    for log in sorted(run.parent.glob(run.name + ".out*")):
        stamps = [int(h or 0) * 60 + int(m) + int(s) / 60
                  for h, m, s in re.findall(r"\[(?:(\d+):)?(\d+):(\d+)<", log.read_text(errors="replace"))]
        # a log appended to by a resumed run starts again from 0: a drop ends a segment
        minutes += sum(a for a, b in zip(stamps, stamps[1:]) if b < a) + (stamps[-1] if stamps else 0.0)
    wall_text = f"about {round(minutes)} min (its logged segments)" if minutes else None
defaults = DistillConfig()
# every setting away from its default, except those the card states in words (teacher, width, steps, batch, seed,
# learning rate and schedule, data path) and bookkeeping: a setting added to DistillConfig is listed without edits
on_card = DISTILL_BOOKKEEPING | {"teacher", "width", "steps", "batch_size", "seed", "g_lr", "d_lr", "lr_schedule",
                                 "data_root"}
changed = [f"{f.name} {cfg[f.name]}" for f in dataclasses.fields(DistillConfig)
           if f.name not in on_card and cfg[f.name] != getattr(defaults, f.name)]
if cfg["d_lr"] != cfg["g_lr"]:  # the card states one learning rate
    changed.append(f"d_lr {cfg['d_lr']}")
lines = commands.read_text().splitlines() if commands.is_file() else []
command = next((line.split("`")[3] for line in lines if line.startswith(f"- `{run.name}`")), None)
if wall_text is None or command is None:
    sys.exit(f"{run}: no wall time (timings.json or {run.name}.out logs) or no command in {commands}")
try:  # the card's command must make this run when run today: flags for defaults that changed since are added
    as_run, command = command, distill_command_for(command, meta["extra"]["distill"])
except ValueError as e:
    sys.exit(f"{run}: {commands}'s command: {e}")
source = f"from {commands}" + ("" if command == as_run else ", with flags added for defaults changed since")
print(cfg["steps"], cfg["batch_size"], cfg["seed"], cfg["g_lr"], cfg["lr_schedule"], cfg["init"],
      shipped)
print(wall_text)
print("; ".join(changed) if changed else "-")
print(source)
print(command)
PY
)
  read -r STEPS BATCH SEED LR SCHEDULE INIT TEACHER_SHA <<< "$(head -n 1 <<< "$FACTS")"
  WALL=$(sed -n 2p <<< "$FACTS")
  CHANGED=$(sed -n 3p <<< "$FACTS")
  if [ "$CHANGED" = - ]; then
    LOSSES="\`gandistill distill\`'s default losses"; WEIGHTS="every loss weight at its default"
  else
    LOSSES="\`gandistill distill\` (not at its defaults: $CHANGED)"; WEIGHTS="not at the defaults: $CHANGED"
  fi
  SOURCE=$(sed -n 4p <<< "$FACTS")
  COMMAND=$(tail -n 1 <<< "$FACTS")
  case $INIT in
    l1) INHERITS="initialised from the teacher's largest-L1 filters";;
    prefix) INHERITS="initialised from the teacher's first channels of each layer";;
    *) INHERITS="initialised from the teacher with \`--init $INIT\`";;
  esac
  # swap the new folder in; the old one comes back if the evaluation or the card fails or is interrupted
  restore() { rm -rf "$DEST"; if [ -d "$DEST.old" ]; then mv "$DEST.old" "$DEST"; fi; }
  if [ -d "$DEST.old" ]; then restore; fi  # an earlier ship of this width was interrupted: put it back first
  rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
  cp "$RUN/student/config.json" "$RUN/student/model.safetensors" "$DEST.tmp/"
  if [ -d "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
  mv "$DEST.tmp" "$DEST"
  trap restore ERR
  trap 'restore; exit 130' INT TERM
  rm -f "$EVAL" "$EVAL_INCEPTION"
  gandistill eval "$DEST" --num-samples 10000 --extractor fmnist-cnn --split test --teacher "$TEACHER" \
    --paired 1000 --out "$EVAL"
  # the independent check: Inception features on INCEPTION_N images (~0.2-0.4 s each on a 2-core CPU; 0 skips)
  if [ "$INCEPTION_N" -gt 0 ]; then
    gandistill eval "$DEST" --num-samples "$INCEPTION_N" --extractor inception --metrics fid,kid --split test \
      --paired 0 --out "$EVAL_INCEPTION"
  fi
  if [ "$SCHEDULE" = constant ]; then OPT="lr $LR, constant"; else OPT="lr $LR, $SCHEDULE decay to 0"; fi
  python scripts/card.py "$DEST" --title "dcgan-fmnist-student-w$W: a width-$W student of dcgan-fmnist" \
    --about "A DCGAN generator with every hidden layer at $W of the teacher's channels, $INHERITS and \
distilled from \`$TEACHER\` (generator weights sha256 \`$TEACHER_SHA\`) with $LOSSES: it draws nearly the teacher's image for the same z. Load it with \
\`gandistill.from_pretrained(\"$DEST\")\`; \`gandistill info $DEST\` shows its lineage and kept channels. \
How these students compare with other budgets, seeds and recipes: docs/recipe.md." \
    --command "$COMMAND   # $SOURCE" \
    --steps "$STEPS steps at batch $BATCH, seed $SEED ($OPT; $WEIGHTS), on the same z \
as the teacher, real images from the train split for the adversarial term" \
    --wall-time "$WALL on $MACHINE" --eval "$EVAL" ${EVAL_INCEPTION_ARG:+--eval "$EVAL_INCEPTION"}
  trap - ERR INT TERM
  rm -rf "$DEST.old"
done
