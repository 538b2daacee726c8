#!/usr/bin/env python
"""Issue #17's recipe search: distillation variants at a fixed budget and seed, judged under one protocol.

  python scripts/recipe.py --out runs/recipe --variants base,lr1e-3-cos,adv0.3 --width 0.25 --steps 1500

Each variant is one ``gandistill distill`` run with every setting stated (BASE, the defaults of 2026-12-04 when
the rows of docs/recipe.md were made, changed as VARIANTS below says; each command is in ``commands.md``); a
finished run is skipped and an interrupted one resumed, so the script can be stopped and rerun. ``--jobs 2``
runs two at a time (one torch thread each). Then every finished student is evaluated together with the
teacher: fid/kid on ``--num-samples`` images of the test split with fmnist-cnn features, PSNR/SSIM against
the teacher; ``--inception N`` adds fid/kid on N images through the Inception network for an independent check.
``table.md`` holds the table with the command behind each row. Choosing by test-split FID here picks a recipe,
not a checkpoint: every row is the run's last EMA student.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# DistillConfig's defaults of 2026-12-04, when every row of docs/recipe.md this script made was run (lr 2e-4
# constant, --init l1, ...). Each variant's command states all of them, changed as the variant says, so that it
# makes the same run whatever today's defaults are (a variant used to be flags on top of the defaults of the day,
# and stopped reproducing its row when they moved). Left out: the script's own arguments (teacher, width, steps,
# batch size, seed), bookkeeping (where and how often it writes) and data_root/classifier (None: no flag).
BASE = {"init": "l1", "data": "fashion-mnist", "split": "train", "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.5,
        "beta2": 0.999, "pixel": 1.0, "pixel_kind": "l1", "feature": 1.0, "disc_feature": 1.0, "perceptual": 0.0,
        "disc_kl": 1.0, "kl_temperature": 1.0, "class_kl": 0.0, "class_alpha": 0.5, "class_temperature": 4.0,
        "adversarial": 0.1, "adv_loss": "hinge", "disc_batch": 0, "feature_kind": "mse", "lr_schedule": "constant",
        "ema": True, "ema_decay": 0.999, "device": "cpu", "amp": False, "channels_last": False, "max_bad_steps": 5}
_LR1E3_COS = {"g_lr": 1e-3, "d_lr": 1e-3, "lr_schedule": "cosine"}
# name -> what it changes from BASE; the name says what
VARIANTS: dict[str, dict] = {
    "base": {},
    "no-feature": {"feature": 0.0},
    "feature-relative": {"feature_kind": "relative"},
    "adv0.3": {"adversarial": 0.3},
    "adv1": {"adversarial": 1.0},
    "cos": {"lr_schedule": "cosine"},
    "lr1e-3-cos": _LR1E3_COS,
    "lr5e-4-cos": {"g_lr": 5e-4, "d_lr": 5e-4, "lr_schedule": "cosine"},
    "lr2e-3-cos": {"g_lr": 2e-3, "d_lr": 2e-3, "lr_schedule": "cosine"},
    "lr1e-3-cos-adv0.3": {**_LR1E3_COS, "adversarial": 0.3},
    "lr1e-3-cos-svs": {**_LR1E3_COS, "init": "svs"},
    "lr1e-3-cos-relative": {**_LR1E3_COS, "feature_kind": "relative"},
    "lr1e-3-cos-no-feature": {**_LR1E3_COS, "feature": 0.0},
    "ema0.99": {"ema_decay": 0.99},
    "init-prefix": {"init": "prefix"},
    "init-random": {"init": "random"},
    "init-svs": {"init": "svs"},
}


def flags(settings: dict) -> list[str]:
    """``gandistill distill`` flags stating each setting (booleans as --name / --no-name)."""
    out: list[str] = []
    for name, value in settings.items():
        flag = name.replace("_", "-")
        out += [f"--{flag}" if value else f"--no-{flag}"] if isinstance(value, bool) else [f"--{flag}", str(value)]
    return out


def command(args, name: str, seed: int) -> list[str]:
    return ["gandistill", "distill", "--teacher", args.teacher, "--width", str(args.width), "--steps",
            str(args.steps), "--batch-size", str(args.batch_size), "--seed", str(seed),
            *flags({**BASE, **VARIANTS[name]}), "--sample-every", "0", "--checkpoint-every", "250",
            "--out", str(run_dir(args, name, seed))]


def run_dir(args, name: str, seed: int) -> Path:
    return Path(args.out) / f"w{args.width:g}-s{args.steps}-{name}-seed{seed}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/recipe")
    p.add_argument("--teacher", default="pretrained/dcgan-fmnist")
    p.add_argument("--variants", default="base", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", default="0", help="comma-separated distillation seeds")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one torch thread each")
    p.add_argument("--num-samples", type=int, default=10_000)
    p.add_argument("--inception", type=int, default=0, help="also fid/kid on N images through Inception (0: off)")
    p.add_argument("--no-eval", action="store_true", help="only train")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    # --- train: at most --jobs runs at a time ---
    todo = [(n, s) for n in names for s in seeds if not (run_dir(args, n, s) / "student").is_dir()]
    running: list[tuple[subprocess.Popen, str, float]] = []
    with open(out / "commands.md", "a") as commands:
        while todo or running:
            while todo and len(running) < args.jobs:
                name, seed = todo.pop(0)
                cmd = command(args, name, seed)
                if (run_dir(args, name, seed) / "state.pt").exists():
                    cmd.append("--resume")
                commands.write(f"- `{run_dir(args, name, seed).name}`: `{' '.join(cmd)}`\n")
                commands.flush()
                log = open(out / f"{run_dir(args, name, seed).name}.out", "a")  # a resumed run: another segment
                running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT),
                                run_dir(args, name, seed).name, time.time()))
            time.sleep(5)
            for proc, label, t0 in list(running):
                if proc.poll() is not None:
                    running.remove((proc, label, t0))
                    print(f"{label}: exit {proc.returncode} after {(time.time() - t0) / 60:.1f} min", flush=True)
    if args.no_eval:
        return 0

    # --- evaluate every finished student with the teacher, one protocol ---
    from gandistill.metrics import evaluate

    students = [run_dir(args, n, s) / "student" for n in names for s in seeds]
    students = [str(d) for d in students if d.is_dir()]
    rows = evaluate([args.teacher, *students], num_samples=args.num_samples, verbose=True,
                    out=out / f"eval-fid{args.num_samples}.jsonl")
    inception = {}
    if args.inception:
        for r in evaluate([args.teacher, *students], extractor="inception", num_samples=args.inception,
                          metrics=("fid", "kid"), paired=0, verbose=True,
                          out=out / f"eval-inception{args.inception}.jsonl"):
            inception[r["model"]] = r["metrics"]
    keys = [k for k in rows[0]["metrics"] if not k.startswith("is")]
    ikeys = list(next(iter(inception.values()))) if inception else []
    lines = ["| run | " + " | ".join(keys + ["PSNR dB", "SSIM"] + ikeys) + " |", "|---" * (len(keys + ikeys) + 3) + "|"]
    for r in rows:
        paired = r.get("paired") or {}
        cells = [f"{r['metrics'][k]:.4g}" for k in keys]
        cells += [f"{paired['psnr']:.2f}" if paired else "-", f"{paired['ssim']:.3f}" if paired else "-"]
        cells += [f"{inception.get(r['model'], {}).get(k, float('nan')):.4g}" for k in ikeys]
        name = Path(r["model"]).parent.name if r["model"] != args.teacher else "teacher"
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
