#!/usr/bin/env bash
# Ship models into pretrained/, each with a card in which every number is measured here (`gandistill card`):
#   scripts/ship.sh teacher-dcgan "<wall time and machine>"     # pretrained/dcgan-fmnist from its training run
#   scripts/ship.sh students-dcgan "<machine>" [W | W=RUN | RUN ...]   # distilled dcgan students; default: 0.25 0.5
#   scripts/ship.sh stylegan2 TEACHER_DIR "<wall time>" STUDENT_DIR:"<wall time>" ...   # from scripts/gpu_stylegan2.sh
#
# teacher-dcgan: picks the snapshot of RUN (default runs/teacher-dcgan-fmnist, `scripts/train_teacher.sh dcgan`) by
#   FID on the held-out TRAIN slice (`gandistill select-teacher`, MIN_STEP=10000), evaluates it once on the test
#   split and writes the card. CARD_ONLY=1 rewrites the card from the recorded eval; EXTRA=note.md is appended.
# students-dcgan: copies each finished student, evaluates it once on the test split (paired with the teacher for
#   PSNR/SSIM; INCEPTION_N=1000 images through Inception as the independent check, 0 skips) and writes its card.
#   A bare W ships $RESULTS/distill-wW (scripts/results.py's run); W=RUN or a RUN path ships any run folder,
#   per-block students included. The folder is named by the student's size (gandistill.config.width_tag):
#   dcgan-fmnist-student-w0.25, or dcgan-fmnist-student-c106-26-26 for per-block channel counts. The command comes
#   from commands.md beside the run (scripts/results.py writes it; write it by hand for a run started by hand),
#   the wall time from timings.json there or else from the run's progress logs RUN.out* (tqdm's elapsed time of
#   each segment, summed). It refuses a student whose recorded teacher weights are not the shipped teacher's
#   (retrained since), and puts a previously shipped folder back when the evaluation or the card fails.
# stylegan2: copies the selected teacher (GAN directory) and each student, evaluates all of them once under one
#   protocol (fid10k[fmnist-cnn] with PSNR/SSIM, and fid1k[inception]) and writes their cards from those
#   measurements and the runs' own records. CARD_ONLY=1 rewrites the cards; NOTES=note.md is appended to each.
#   e.g. scripts/ship.sh stylegan2 runs/gpu1/sg2-teacher "230 s on one H200" runs/gpu1/w0.25/student:"95 s on one H200"
set -euo pipefail
USAGE="usage: scripts/ship.sh teacher-dcgan|students-dcgan|stylegan2 ... (see the head of scripts/ship.sh)"
MODE=${1:?$USAGE}
shift
G=${G:-gandistill}
mkdir -p runs/ship

ship_teacher_dcgan() {
  local WALL=${1:?usage: scripts/ship.sh teacher-dcgan "<wall time and machine>"}
  local RUN=${RUN:-runs/teacher-dcgan-fmnist} DEST=${DEST:-pretrained/dcgan-fmnist} MIN_STEP=${MIN_STEP:-10000}
  local EVAL=${EVAL:-runs/ship/eval-dcgan-fmnist.json}
  if [ -z "${CARD_ONLY:-}" ]; then
    rm -f "$EVAL"
    $G select-teacher --run "$RUN" --out "$DEST" --min-step "$MIN_STEP"
    $G eval "$DEST" --num-samples 10000 --extractor fmnist-cnn --split test --out "$EVAL"
  fi
  local STEP
  STEP=$(python -c "import json,sys; print(int(json.load(open('$DEST/selection.json'))['selected'][4:]))")
  $G card "$DEST" --title "dcgan-fmnist: the DCGAN teacher (32x32 Fashion-MNIST)" \
    --about "The teacher that \`make demo\` distills: a DCGAN generator (EMA weights) and its spectral-norm \
discriminator, base 64 channels, z of 100, trained from scratch on Fashion-MNIST. Load it with \
\`gandistill.from_pretrained(\"$DEST\")\` (generator) or \`from_pretrained(\"$DEST\", \"discriminator\")\`." \
    --command "scripts/train_teacher.sh dcgan   # then: scripts/ship.sh teacher-dcgan \"...\"" \
    --steps "the EMA generator of step $STEP (batch 64, hinge loss, Adam 2e-4 for G and D, EMA 0.999), the last 5000 \
train images held out for checkpoint selection" \
    --wall-time "$WALL" --eval "$EVAL" ${EXTRA:+--extra "$EXTRA"}
}

ship_students_dcgan() {
  local MACHINE=${1:?usage: scripts/ship.sh students-dcgan "<machine, in words>" [W | W=RUN | RUN ...]}
  shift
  local SPECS=("$@")
  [ ${#SPECS[@]} -gt 0 ] || SPECS=(0.25 0.5)
  local RESULTS=${RESULTS:-runs/results} TEACHER=${TEACHER:-pretrained/dcgan-fmnist} INCEPTION_N=${INCEPTION_N:-1000}
  for SPEC in "${SPECS[@]}"; do
    local W="" RUN
    if [[ $SPEC == *=* ]]; then W=${SPEC%%=*}; RUN=${SPEC#*=}
    elif [[ $SPEC == */* ]]; then RUN=$SPEC
    else W=$SPEC; RUN=$RESULTS/distill-w$(printf '%g' "$W"); fi  # results.py names its runs with {w:g}
    # the run's facts, checked before anything is written: finished, distilled from this teacher's weights
    local FACTS
    FACTS=$(python - "$RUN" "$TEACHER" "$W" <<'PY'
import dataclasses, json, re, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from results import teacher_of, threads_text  # the same rules as the results table's
from gandistill.checkpoint import weights_sha256
from gandistill.cli_args import distill_command_for
from gandistill.config import DISTILL_BOOKKEEPING, DistillConfig, model_config, width_tag
run, teacher, width = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if not (run / "student" / "config.json").is_file():  # student/ is written when a run completes
    sys.exit(f"{run}: no finished student")
meta = json.loads((run / "student" / "config.json").read_text())
cfg = DistillConfig.made_with(meta["extra"]["distill"])  # settings added since: as they were then
counts = meta["config"].get("layer_channels") or []
if width and (counts or cfg["width"] != float(width)):
    sys.exit(f"{run}: a {'per-block' if counts else 'width-%g' % cfg['width']} student, not width {float(width):g}")
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
# every setting away from its default, except those the card states in words (teacher, size, steps, batch, seed,
# learning rate and schedule, data path) and bookkeeping: a setting added to DistillConfig is listed without edits
on_card = DISTILL_BOOKKEEPING | {"teacher", "width", "widths", "steps", "batch_size", "seed", "g_lr", "d_lr",
                                 "lr_schedule", "data_root"}
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
tag = width_tag(model_config(meta["family"], **meta["config"]))
size = (f"per-block\tits blocks at {', '.join(map(str, counts))} channels (lowest resolution first)" if counts
        else f"width-{cfg['width']:g}\tevery hidden layer at {cfg['width']:g} of the teacher's channels")
print(cfg["steps"], cfg["batch_size"], cfg["seed"], cfg["g_lr"], cfg["lr_schedule"], cfg["init"], shipped, tag)
print(wall_text)
print("; ".join(changed) if changed else "-")
print(source)
print(size)
print(command)
PY
)
    local STEPS BATCH SEED LR SCHEDULE INIT TEACHER_SHA TAG WALL CHANGED SOURCE COMMAND SIZE SHAPE LOSSES WEIGHTS INHERITS OPT
    read -r STEPS BATCH SEED LR SCHEDULE INIT TEACHER_SHA TAG <<< "$(head -n 1 <<< "$FACTS")"
    WALL=$(sed -n 2p <<< "$FACTS")
    CHANGED=$(sed -n 3p <<< "$FACTS")
    SOURCE=$(sed -n 4p <<< "$FACTS")
    IFS=$'\t' read -r SIZE SHAPE <<< "$(sed -n 5p <<< "$FACTS")"
    COMMAND=$(tail -n 1 <<< "$FACTS")
    if [ "$CHANGED" = - ]; then
      LOSSES="\`gandistill distill\`'s default losses"; WEIGHTS="every loss weight at its default"
    else
      LOSSES="\`gandistill distill\` (not at its defaults: $CHANGED)"; WEIGHTS="not at the defaults: $CHANGED"
    fi
    case $INIT in
      l1) INHERITS="initialised from the teacher's largest-L1 filters";;
      prefix) INHERITS="initialised from the teacher's first channels of each layer";;
      *) INHERITS="initialised from the teacher with \`--init $INIT\`";;
    esac
    local DEST=pretrained/dcgan-fmnist-student-$TAG
    local EVAL=runs/ship/eval-dcgan-fmnist-student-$TAG.json
    local EVAL_INCEPTION=runs/ship/eval-dcgan-fmnist-student-$TAG-inception$INCEPTION_N.json
    # swap the new folder in; the old one comes back if the evaluation or the card fails or is interrupted
    restore() { rm -rf "$DEST"; if [ -d "$DEST.old" ]; then mv "$DEST.old" "$DEST"; fi; }
    if [ -d "$DEST.old" ]; then restore; fi  # an earlier ship of this student was interrupted: put it back first
    rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
    cp "$RUN/student/config.json" "$RUN/student/model.safetensors" "$DEST.tmp/"
    if [ -d "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
    mv "$DEST.tmp" "$DEST"
    trap restore ERR
    trap 'restore; exit 130' INT TERM
    rm -f "$EVAL" "$EVAL_INCEPTION"
    $G eval "$DEST" --num-samples 10000 --extractor fmnist-cnn --split test --teacher "$TEACHER" \
      --paired 1000 --out "$EVAL"
    # the independent check: Inception features on INCEPTION_N images (~0.2-0.4 s each on a 2-core CPU; 0 skips)
    local INCEPTION_ARGS=()
    if [ "$INCEPTION_N" -gt 0 ]; then
      $G eval "$DEST" --num-samples "$INCEPTION_N" --extractor inception --metrics fid,kid --split test \
        --paired 0 --out "$EVAL_INCEPTION"
      INCEPTION_ARGS=(--eval "$EVAL_INCEPTION")
    fi
    if [ "$SCHEDULE" = constant ]; then OPT="lr $LR, constant"; else OPT="lr $LR, $SCHEDULE decay to 0"; fi
    $G card "$DEST" --title "dcgan-fmnist-student-$TAG: a $SIZE student of dcgan-fmnist" \
      --about "A DCGAN generator with $SHAPE, $INHERITS and \
distilled from \`$TEACHER\` (generator weights sha256 \`$TEACHER_SHA\`) with $LOSSES: it draws nearly the teacher's image for the same z. Load it with \
\`gandistill.from_pretrained(\"$DEST\")\`; \`gandistill info $DEST\` shows its lineage and kept channels. \
How these students compare with other budgets, seeds and recipes: docs/recipe.md." \
      --command "$COMMAND   # $SOURCE" \
      --steps "$STEPS steps at batch $BATCH, seed $SEED ($OPT; $WEIGHTS), on the same z \
as the teacher, real images from the train split for the adversarial term" \
      --wall-time "$WALL on $MACHINE" --eval "$EVAL" "${INCEPTION_ARGS[@]}"
    trap - ERR INT TERM
    rm -rf "$DEST.old"
  done
}

ship_stylegan2() {
  local TEACHER_SRC=${1:?usage: scripts/ship.sh stylegan2 TEACHER_DIR "<wall time>" STUDENT_DIR:"<wall time>" ...}
  local TEACHER_WALL=${2:?teacher wall time}
  shift 2
  local DEST=pretrained/stylegan2-fmnist EVAL=runs/ship/eval-stylegan2-fmnist.json
  local EVAL_INCEPTION=runs/ship/eval-stylegan2-fmnist-inception1k.json NOTES=${NOTES:-}  # NOTES: appended to every card
  local students=() spec src w out wall TRAIN STEPS
  mkdir -p "$DEST"
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
  $G card "$DEST" --title "stylegan2-fmnist: an early StyleGAN2 teacher (32x32 Fashion-MNIST)" \
    --about "A StyleGAN2-like generator (gandistill's stylegan2 family: 4-layer mapping network, w of 128, \
modulated convolutions with 256/256/128/64 channels at 4/8/16/32 px, bilinear up-sampling, skip toRGB) and its \
residual discriminator, trained from scratch on a GPU within one short session. **It is far from converged** \
(fid10k[fmnist-cnn] 44 against the DCGAN teacher's 6.3): it is shipped so that StyleGAN2 distillation runs on \
real weights, and a longer GPU run is to replace it (issue #19). Load it with \
\`gandistill.from_pretrained(\"$DEST\")\`; continue it with \`INIT_FROM=$DEST scripts/train_teacher.sh stylegan2\`." \
    --command "PY=python3 GANDISTILL_DATA=\$PWD/.gpu/data bash scripts/gpu_stylegan2.sh   # then: scripts/ship.sh stylegan2 ..." \
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
    $G card "$out" --title "$(basename "$out"): a width-$w student of stylegan2-fmnist" \
      --about "A stylegan2 generator with every synthesis layer at $w of the teacher's channels (the mapping \
network copied whole), initialised from the teacher's largest-L1 filters and distilled from \`$DEST\`: it draws \
nearly the teacher's image for the same z. Load it with \`gandistill.from_pretrained(\"$out\")\`." \
      --command "${STUDENT_COMMAND:-TEACHER_DIR=.gpu/teacher STUDENTS=\"w$w:$w:1e-3:SECONDS\" SEQUENTIAL=1 PY=python3 bash scripts/gpu_stylegan2.sh}" \
      --steps "$STEPS" --wall-time "$wall" --eval "$EVAL" --eval "$EVAL_INCEPTION" ${NOTES:+--extra "$NOTES"}
  done
}

case $MODE in
  teacher-dcgan) ship_teacher_dcgan "$@";;
  students-dcgan) ship_students_dcgan "$@";;
  stylegan2) ship_stylegan2 "$@";;
  *) echo "$USAGE" >&2; exit 2;;
esac
