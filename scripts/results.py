#!/usr/bin/env python
"""The grid runner: the README's results table (distilled students vs same-size students trained from scratch,
and the ablation), or docs/recipe.md's recipe variants. Every run pins its full settings, so each row's command
makes that row again whatever today's defaults are.

  python scripts/results.py --teacher pretrained/dcgan-fmnist --out runs/results
  python scripts/results.py --out runs/recipe --variants base,lr1e-3-cos,adv0.3 --widths 0.25 --steps 1500

The results grid (each a normal run directory under --out; a finished run is skipped, an interrupted one resumed,
so the script can be stopped and rerun at any time):
  distill-w{W}      gandistill distill --teacher T --width W  (DISTILL_2026_12_05: the settings of the README
                    table's rows), for W in --widths; --steps, --batch-size, --seed, --disc-batch and --init
                    apply to these and to the ablation
  scratch-w{W}      gandistill train --width W --d-width DW --base-channels <teacher's>  (same steps/batch;
                    TRAIN_2026_12_05 otherwise)
  ablate-no-{TERM}  the width --ablation-width student with one loss term's weight set to 0
--variants instead runs w{W}-s{STEPS}-{VARIANT}-seed{S} for each variant, width and --seeds: DISTILL_2026_12_04
(the settings of docs/recipe.md's rows) changed as VARIANTS says.
Then every generator (teacher first) is evaluated under one protocol (fid/kid/is on --num-samples images
against the test split, PSNR/SSIM against the teacher on shared latents), profiled (params, MACs, CPU
throughput at batch 64) and written to --out/report.md, report.json and fid_vs_macs.png; --inception N adds
KID/FID on N samples through the Inception network for the teacher and the --ablation-width student (every
variant with --variants; ~0.2-0.4 s per image on a 2-core CPU). ``commands.md`` lists the command that
reproduces each row, ``timings.json`` each run's wall time, ``table.md`` the table from all of them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

from gandistill.checkpoint import (
    CONFIG_NAME,
    from_pretrained,
    load_state,
    read_config,
    resolve_model_dir,
    weights_sha256,
    write_json,
)
from gandistill.config import INITS, DistillConfig
from gandistill.metrics import evaluate
from gandistill.profile import profile, speedup
from gandistill.report import plot_fid_vs_macs, write_report
from gandistill.train import distill, train

ABLATION_TERMS = ("pixel", "feature", "disc_feature", "disc_kl", "adversarial")
# DistillConfig's defaults of 2026-12-04, when every row of docs/recipe.md was run (lr 2e-4 constant, --init l1, ...),
# and of 2026-12-05 (lr 1e-3 with cosine decay since f149729, --init prefix since 976a107), when the README table's
# rows were. Every distill run states all of them (a row used to be flags on top of the defaults of the day, and
# stopped reproducing when they moved). Left out: what a run sets itself (teacher, width, steps, batch size, seed;
# the results grid's --disc-batch and --init), bookkeeping, data_root/classifier (None: no flag), and the size
# settings added since (widths, macs, balance: a row's size is its width; DISTILL_ADDED says what they were then).
DISTILL_2026_12_04 = {"init": "l1", "data": "fashion-mnist", "split": "train", "g_lr": 2e-4, "d_lr": 2e-4,
                      "beta1": 0.5, "beta2": 0.999, "pixel": 1.0, "pixel_kind": "l1", "feature": 1.0,
                      "disc_feature": 1.0, "perceptual": 0.0, "disc_kl": 1.0, "kl_temperature": 1.0, "class_kl": 0.0,
                      "class_alpha": 0.5, "class_temperature": 4.0, "adversarial": 0.1, "adv_loss": "hinge",
                      "disc_batch": 0, "feature_kind": "mse", "lr_schedule": "constant", "ema": True,
                      "ema_decay": 0.999, "device": "cpu", "amp": False, "channels_last": False, "max_bad_steps": 5}
DISTILL_2026_12_05 = {**DISTILL_2026_12_04, "g_lr": 1e-3, "d_lr": 1e-3, "lr_schedule": "cosine", "init": "prefix"}
# TrainConfig's defaults then (unchanged since), for the scratch baselines
TRAIN_2026_12_05 = {"data": "fashion-mnist", "split": "train", "beta1": 0.5, "beta2": 0.999, "loss": "hinge",
                    "r1_gamma": 0.0, "r1_every": 16, "ema": True, "ema_decay": 0.999, "device": "cpu", "amp": False,
                    "max_bad_steps": 5}
_LR1E3_COS = {"g_lr": 1e-3, "d_lr": 1e-3, "lr_schedule": "cosine"}
# --variants: name -> what it changes from DISTILL_2026_12_04; the name says what
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


def _state(run: Path) -> dict | None:
    """A run directory's resumable state, None before it has one."""
    return load_state(run / "state.pt") if (run / "state.pt").is_file() else None


def teacher_of(run: Path) -> str | None:
    """The teacher weights' sha256 a distill run recorded (its student's lineage), None if it has none yet."""
    config = run / "student" / CONFIG_NAME
    if not config.is_file():
        return load_state(run / "state.pt").get("teacher_sha256") if (run / "state.pt").is_file() else None
    return json.loads(config.read_text())["lineage"]["teacher"].get("weights_sha256")


def settings_differ(state: dict | None, kwargs: dict) -> list[str]:
    """The planned settings a started run (its state) was made with otherwise (``name: then -> now``); the
    teacher is compared by its weights (teacher_of); in a distill state, a setting added since it was made counts
    as what it meant then (DistillConfig.made_with), and any other setting an older state lacks is not compared."""
    saved = (state or {}).get("config", {})
    if (state or {}).get("kind") == "distill":
        saved = DistillConfig.made_with(saved)
    return [f"{k}: {saved[k]!r} -> {v!r}" for k, v in kwargs.items()
            if k != "teacher" and k in saved and saved[k] != v]


def flags(settings: dict) -> list[str]:
    """CLI flags stating each setting (booleans as --name / --no-name, floats as repr: exactly the value)."""
    out: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{flag[2:]}")
        else:
            out += [flag, f"{value:g}" if isinstance(value, float) and float(f"{value:g}") == value else str(value)]
    return out


def plan(args, teacher_cfg: dict) -> list[dict]:
    """Every run: its directory, the API call's keyword arguments and the equivalent CLI command."""
    common = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}
    runs = []
    if args.variants:
        for name in args.variants:
            for w in args.widths:
                for seed in args.seeds:
                    runs.append({"name": f"w{w:g}-s{args.steps}-{name}-seed{seed}", "kind": "distill",
                                 "kwargs": {"teacher": args.teacher, "width": w, **common, "seed": seed,
                                            **DISTILL_2026_12_04, **VARIANTS[name]}})
    else:
        distill_common = {**common, **DISTILL_2026_12_05, "disc_batch": args.disc_batch, "init": args.init}
        for w in args.widths:
            runs.append({"name": f"distill-w{w:g}", "kind": "distill",
                         "kwargs": {"teacher": args.teacher, "width": w, **distill_common}})
        for w in args.widths:
            kwargs = {"family": teacher_cfg["family"], "base_channels": teacher_cfg["base_channels"],
                      "resolution": teacher_cfg["resolution"], "channels": teacher_cfg["channels"],
                      "width": w, "d_width": min(1.0, w * args.scratch_d_ratio), "g_lr": args.scratch_lr,
                      "d_lr": args.scratch_lr, "holdout": args.holdout, **common, **TRAIN_2026_12_05}
            runs.append({"name": f"scratch-w{w:g}", "kind": "train", "kwargs": kwargs})
        for term in args.ablate:
            runs.append({"name": f"ablate-no-{term}", "kind": "distill",
                         "kwargs": {"teacher": args.teacher, "width": args.ablation_width, **distill_common,
                                    term: 0.0}})
    for r in runs:
        r["out"] = str(Path(args.out) / r["name"])
        r["command"] = " ".join(["gandistill", r["kind"], *flags(r["kwargs"]), "--out", r["out"]])
    return runs


def write_commands(path: Path, runs: list[dict]) -> None:
    """``commands.md``: each run's command, one line a run; the lines of runs another call planned (other
    --variants into the same --out) are kept."""
    lines = {line.split("`")[1]: line for line in (path.read_text().splitlines() if path.is_file() else [])
             if line.startswith("- `")}
    lines.update({r["name"]: f"- `{r['name']}`: `{r['command']}`" for r in runs})
    path.write_text("".join(line + "\n" for line in lines.values()))


def _label(name: str) -> str:
    kind, _, rest = name.partition("-")
    if kind == "distill":
        return f"distilled, width {rest[1:]}"
    if kind == "scratch":
        return f"from scratch, width {rest[1:]}"
    if kind == "ablate":
        return f"distilled without {rest.removeprefix('no-')}"
    return name


def _thread_counts(wall: dict) -> list[int]:
    """The torch thread counts a run's segments used (timings.json before segments were told apart: one int)."""
    threads = wall["torch_threads"]
    return threads if isinstance(threads, list) else [threads]


def threads_text(wall: dict) -> str:
    return "/".join(map(str, _thread_counts(wall)))


def readme_table(report: dict, inception: list[dict], timings: dict) -> str:
    """The README's results table (markdown) from report.json, inception.json and timings.json: one row per
    generator, teacher first, every number as measured."""
    profiles = {p["model"]: p for p in report["profiles"]}
    keys = list(report["results"][0]["metrics"])
    inc_keys = list(inception[0]["metrics"]) if inception else []
    inc = {rec["model"]: rec["metrics"] for rec in inception}
    head = ["model", "row", "params", "MACs/img", f"img/s (CPU, batch {report['profiles'][0]['throughput_batch']})",
            *keys, "PSNR / SSIM vs teacher", *inc_keys, "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in report["results"]:
        name, prof = rec["model"], profiles[rec["model"]]
        paired = rec.get("paired")
        wall = timings.get(name)
        cells = [_label(name), f"`{name}`", f"{prof['params']:,}", f"{prof['macs'] / 1e6:.2f}M",
                 f"{prof['throughput_img_s']:,.0f}", *(f"{rec['metrics'][k]:.4g}" for k in keys),
                 f"{paired['psnr']:.2f} dB / {paired['ssim']:.3f}" if paired else "-",
                 *(f"{inc[name][k]:.4g}" if name in inc else "-" for k in inc_keys),
                 f"{wall['seconds'] / 60:.1f} min ({threads_text(wall)} threads)" if wall else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: Path) -> None:
    """``table.md`` beside report.json (rerun alone with --table-only)."""
    report = json.loads((out / "report.json").read_text())
    inception = json.loads((out / "inception.json").read_text()) if (out / "inception.json").is_file() else []
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
    (out / "table.md").write_text(readme_table(report, inception, timings))


def rows_from_table(text: str) -> list[dict]:
    """Plot rows (model, width, MACs, the first fid/kid column) from a table written by readme_table()."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    start = next((i for i, line in enumerate(lines) if "MACs/img" in line and "`" not in line), None)
    if start is None:
        raise ValueError("no results table (a header with MACs/img) found")
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    col = next((i for i, c in enumerate(head) if c.startswith(("fid", "kid"))), None)
    if col is None:
        raise ValueError(f"the results table has no fid or kid column: {head}")
    rows = []
    for line in lines[start + 2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(head) or not cells[1].startswith("`"):
            break
        name = cells[1].strip("`")
        width = re.search(r"-w([0-9.]+)(?:-|$)", name)
        width = 1.0 if name == "teacher" else float(width.group(1)) if width else None
        value = {"key": head[col], "mean": float(cells[col]), "std": None}
        is_fid = head[col].startswith("fid")
        rows.append({"model": name, "width": width, "macs": float(cells[3].removesuffix("M")) * 1e6,
                     "fid": value if is_fid else None, "kid": None if is_fid else value})
    if not rows:
        raise ValueError("no results table rows found")
    if any(r["width"] is None for r in rows):  # ablation rows: the ablation width, from their MACs
        by_macs = {r["macs"]: r["width"] for r in rows if r["width"] is not None}
        for r in rows:
            r["width"] = r["width"] if r["width"] is not None else by_macs.get(r["macs"])
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="pretrained/dcgan-fmnist", help="GAN directory of the teacher")
    p.add_argument("--out", default="runs/results")
    p.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    p.add_argument("--ablation-width", type=float, default=0.25)
    p.add_argument("--ablate", nargs="*", default=list(ABLATION_TERMS), choices=ABLATION_TERMS)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", type=lambda t: [v for v in t.split(",") if v], default=[],
                   help=f"run these recipe variants instead of the results grid, comma-separated, from: "
                        f"{', '.join(VARIANTS)} (each at every --widths and --seeds)")
    p.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",") if v], default=[0],
                   help="--variants: comma-separated distillation seeds (default: 0)")
    p.add_argument("--disc-batch", type=int, default=0,
                   help="distill runs: images per step through the discriminators (0: all; the demo uses 8)")
    p.add_argument("--init", default=DISTILL_2026_12_05["init"], choices=INITS,
                   help="distill runs: what the student inherits (distill's --init; default: %(default)s)")
    p.add_argument("--scratch-d-ratio", type=float, default=2.0,
                   help="scratch baseline: discriminator width = G width x this (capped at 1)")
    p.add_argument("--scratch-lr", type=float, default=5e-4,
                   help="scratch baseline: G and D learning rate (best of 2e-4 and 5e-4 in a 1500-step trial)")
    p.add_argument("--holdout", type=int, default=5000, help="scratch baseline: train images held out, as the teacher's")
    p.add_argument("--num-samples", type=int, default=10_000)
    p.add_argument("--paired", type=int, default=1000)
    p.add_argument("--inception", type=int, default=0, help="samples for the Inception KID/FID rows (0: skip)")
    p.add_argument("--only-runs", action="store_true", help="train the runs, skip the evaluation")
    p.add_argument("--table-only", action="store_true",
                   help="only rewrite --out/table.md from the report.json, inception.json and timings.json there")
    p.add_argument("--plot-from", metavar="TABLE_MD",
                   help="only redraw the FID-vs-MACs plot (to --out/fid_vs_macs.png) from a table this script "
                        "wrote (table.md, or the copy in docs/results.md); the values as printed there")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.plot_from:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        path = plot_fid_vs_macs(rows_from_table(Path(args.plot_from).read_text()), Path(args.out) / "fid_vs_macs.png")
        if path is None:
            print(f"{args.plot_from}: no row with a finite value to plot", file=sys.stderr)
            return 1
        print(f"written {path}")
        return 0
    if args.table_only:
        write_table(Path(args.out))
        print(f"written {args.out}/table.md")
        return 0
    torch.manual_seed(args.seed)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = read_config(resolve_model_dir(Path(args.teacher)))
    runs = plan(args, {"family": meta["family"], **meta["config"]})
    write_commands(out / "commands.md", runs)

    # --- the runs (skipped when finished, resumed when interrupted); wall time summed over resumptions ---
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    teacher_sha = weights_sha256(args.teacher)
    for r in runs:
        run = Path(r["out"])
        recorded = teacher_of(run) if r["kind"] == "distill" else None
        if recorded not in (None, teacher_sha):
            print(f"{run}: distilled from other teacher weights (sha256 {recorded[:12]}...) than {args.teacher}'s "
                  f"({teacher_sha[:12]}...); delete {run} and rerun", file=sys.stderr)
            return 1
        state = _state(run)
        if changed := settings_differ(state, r["kwargs"]):
            print(f"{run}: made with other settings ({'; '.join(changed)}); delete {run} or pick another --out",
                  file=sys.stderr)
            return 1
        if state is not None and int(state["step"]) >= args.steps:
            print(f"{r['name']}: done", flush=True)
            continue
        print(f"{r['name']}: {r['command']}", flush=True)
        fn = distill if r["kind"] == "distill" else train
        start = time.perf_counter()
        try:
            result = fn(out=r["out"], resume=state is not None, sample_every=500, checkpoint_every=250,
                        **r["kwargs"])
        finally:  # an interrupted segment's time counts too
            entry = timings.setdefault(r["name"], {"seconds": 0.0, "torch_threads": []})
            entry["seconds"] = round(entry["seconds"] + time.perf_counter() - start, 1)
            entry["torch_threads"] = sorted({*_thread_counts(entry), torch.get_num_threads()})
            write_json(timings_path, timings)
        if result.status != "completed":
            print(f"{r['name']}: {result.status} at step {result.step}; rerun to resume", file=sys.stderr)
            return 1
    if args.only_runs:
        return 0

    # --- one protocol for every generator ---
    names = ["teacher"] + [r["name"] for r in runs]
    paths = [args.teacher] + [str(Path(r["out"]) / ("student" if r["kind"] == "distill" else "generator"))
                              for r in runs]
    models = [from_pretrained(path, "generator") for path in paths]
    results = evaluate(models, num_samples=args.num_samples, seed=args.seed, paired=args.paired,
                       teacher=models[0], names=names, verbose=True)
    profiles = [profile(m, name=n) for m, n in zip(models, names, strict=True)]
    for prof in profiles[1:]:  # every row against the teacher, the scratch baselines too (they have no lineage)
        prof["teacher"], prof["speedup"] = names[0], speedup(profiles[0], prof)
    write_report(results, profiles, out, title=f"gandistill results: {args.teacher}, {args.steps} steps, "
                                               f"batch {args.batch_size}"
                                               + (f", disc_batch {args.disc_batch}" if args.disc_batch else ""))
    if args.inception:
        pick = [0, names.index(f"distill-w{args.ablation_width:g}")] if args.ablation_width in args.widths else [0]
        pick = list(range(len(names))) if args.variants else pick
        inc = evaluate([models[i] for i in pick], num_samples=args.inception, seed=args.seed, paired=0,
                       extractor="inception", metrics=("fid", "kid"), names=[names[i] for i in pick], verbose=True)
        write_json(out / "inception.json", inc)
        for rec in inc:
            print(rec["model"], json.dumps(rec["metrics"]))
    write_table(out)
    print(f"written {out}/report.md, report.json, fid_vs_macs.png, commands.md, table.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
