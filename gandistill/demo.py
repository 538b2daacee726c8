"""The main job: distill the shipped teacher, evaluate teacher and student under one protocol, profile
both, export the student, and write the report with its plot and sample grids."""
from __future__ import annotations

import contextlib
import re
import shutil
import sys
import time
from pathlib import Path

from .checkpoint import from_pretrained, load_state, read_config, resolve_model_dir, weights_sha256
from .config import DISTILL_BOOKKEEPING, DemoConfig, DistillConfig
from .outputs import OutputRefused, check_not_input, foreign_entries

# what a demo writes into its --out; anything else there is the user's
_DEMO_FILES = re.compile(r"distill|report\.(md|json)|fid_vs_macs\.png|export\.json|student(\.onnx|\.pt|-export)|"
                         r"(samples|compare)_.*\.png|\..*\.tmp")


def demo(config: DemoConfig | None = None, **overrides) -> dict:
    """Run the demo; returns the paths it wrote (report.md, report.json, plot, grids, export, student)."""
    if config is None:
        cfg = DemoConfig(**overrides)
    else:
        cfg = config.replace(**overrides) if overrides else config
    out = Path(cfg.out)
    t_start = time.perf_counter()

    # --- the teacher must be there before anything runs ---
    teacher_dir = Path(cfg.teacher)
    if not teacher_dir.exists():
        shipped = cfg.teacher == DemoConfig.teacher
        raise FileNotFoundError(f"{cfg.teacher} not found" + (" (it ships in the gandistill checkout: run the demo "
                                                                "from there)" if shipped else "")
                                + "; or pass --teacher DIR (a GAN directory)")
    read_config(resolve_model_dir(teacher_dir))  # one clear error for a broken teacher
    say = (lambda msg: print(f"[demo] {msg}", file=sys.stderr, flush=True)) if cfg.verbose else (lambda msg: None)

    # --- the output: new, or a folder holding only what a demo writes ---
    check_not_input(out, {"--teacher": teacher_dir, "--data-root": cfg.data_root})
    foreign = [name for name in foreign_entries(out) if not _DEMO_FILES.fullmatch(name)]
    if foreign and not cfg.overwrite:
        raise OutputRefused(f"--out {out}: already holds files a demo does not make ({', '.join(foreign[:3])}"
                            f"{', ...' if len(foreign) > 3 else ''}); choose another --out, or pass --overwrite")

    # --- distill (resumes when a previous demo run left a state) ---
    run_dir = out / "distill"
    state = run_dir / "state.pt"
    resume = state.exists()
    with _removed_unless_interrupted(run_dir):
        return _run(cfg, out, run_dir, state, resume, teacher_dir, say, t_start)


@contextlib.contextmanager
def _removed_unless_interrupted(run_dir: Path):
    """A demo that fails removes the distillation it started (an interrupted one keeps it to resume)."""
    started_here = not run_dir.exists()
    try:
        yield
    except Exception:
        if started_here and run_dir.is_dir():
            shutil.rmtree(run_dir)
        raise


def _run(cfg: DemoConfig, out: Path, run_dir: Path, state: Path, resume: bool, teacher_dir: Path, say,
         t_start: float) -> dict:
    from .export import MissingExtraError, export
    from .report import make_report
    from .train import distill

    settings = DistillConfig(teacher=str(cfg.teacher), out=str(run_dir), width=cfg.width, steps=cfg.steps,
                             batch_size=cfg.batch_size, disc_batch=cfg.disc_batch, data=cfg.data,
                             data_root=cfg.data_root, device=cfg.device, seed=cfg.seed, sample_every=0,
                             checkpoint_every=250)
    if resume:
        saved = load_state(state)
        if saved["config"].get("teacher") != str(cfg.teacher):
            raise ValueError(f"{run_dir} holds a distillation of another teacher; choose another --out")
        made_with = DistillConfig.made_with(saved["config"])
        # the steps may grow on a resume; any other setting that decides the weights must be what the demo asks
        changed = [f"{k} {made_with.get(k)!r} -> {v!r}" for k, v in settings.to_dict().items()
                   if k not in DISTILL_BOOKKEEPING | {"steps", "data_root", "device"} and made_with.get(k) != v]
        if saved.get("teacher_sha256") != weights_sha256(teacher_dir):
            # the teacher was retrained (or the state predates the digest): this folder is the demo's own
            say(f"{run_dir} was distilled from other weights of {cfg.teacher}; starting it over")
            shutil.rmtree(run_dir)
            resume = False
        elif changed:  # an earlier version's demo (e.g. before a default changed): also the demo's own
            say(f"{run_dir} was distilled with other settings ({'; '.join(changed)}); starting it over")
            shutil.rmtree(run_dir)
            resume = False
    say(f"distilling a width-{cfg.width:g} student from {cfg.teacher} for {cfg.steps} steps -> {run_dir}")
    distilled = distill(settings.replace(resume=resume, overwrite=cfg.overwrite and not resume))
    if distilled.status != "completed":
        raise KeyboardInterrupt
    student_dir = run_dir / "student"

    # --- evaluate, profile and sample both under one protocol ---
    say(f"evaluating teacher and student: {cfg.num_samples} samples, {cfg.extractor} features, "
        f"{cfg.dataset}/{cfg.split}")
    teacher = from_pretrained(teacher_dir)
    student = from_pretrained(student_dir)
    paths = make_report([teacher, student], out=out, dataset=cfg.dataset, split=cfg.split, extractor=cfg.extractor,
                   num_samples=cfg.num_samples, seed=cfg.seed, device=cfg.device, data_root=cfg.data_root,
                   paired=cfg.paired, names=["teacher", f"student-w{cfg.width:g}"],
                   title=f"gandistill demo: {teacher_dir} and its width-{cfg.width:g} student")

    # --- export the student, checked against PyTorch ---
    fmt = cfg.export_format
    suffix = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ""}[fmt]
    target = out / f"student{suffix}" if suffix else out / "student-export"
    try:
        exported = export(student, fmt, target)
    except MissingExtraError as e:
        if fmt != "onnx":
            raise
        say(f"{e}; exporting safetensors instead")
        exported = export(student, "safetensors", out / "student-export")
    paths = {**paths, "export": exported.path, "student": student_dir}
    paths["seconds"] = round(time.perf_counter() - t_start, 1)
    return paths
