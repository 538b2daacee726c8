"""The main job: distill the shipped teacher, evaluate teacher and student under one protocol, profile
both, export the student, and write the report with its plot and sample grids."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from .checkpoint import (
    atomic_write,
    from_pretrained,
    load_state,
    read_config,
    resolve_model_dir,
    weights_sha256,
)
from .config import DISTILL_BOOKKEEPING, DemoConfig, DistillConfig
from .export import check_export_target
from .outputs import OutputRefused, check_no_links, check_not_input, foreign_entries
from .report import check_report_targets, report_grids

SAMPLE_NUM = 64  # images per sample grid in the demo's report

# what a demo writes into its --out; anything else there is the user's
_DEMO_FILES = re.compile(r"distill|report\.(md|json)|fid_vs_macs\.png|export\.json|student(\.onnx|\.pt|-export)|"
                         r"(samples|compare)_.*\.png|\..*\.(tmp|lock)|\.demo\.json")
# the demo's proof that it made distill/: the folder's identity (device, inode) recorded when it created it
_MARKER = ".demo.json"
_EXPORT_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ""}


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

    # the files it will write are new or a demo's own (report, grids, export), checked before anything runs
    grids = report_grids(out, ["teacher", f"student-w{cfg.width:g}"], {1: 0}, SAMPLE_NUM, cfg.seed)
    check_report_targets(out, [path for path, _ in grids.values()], overwrite=cfg.overwrite)
    for fmt, target in _export_targets(cfg, out):
        check_export_target(target, fmt, overwrite=cfg.overwrite)

    # --- distill (resumes when a previous demo run left a state) ---
    run_dir = out / "distill"
    if run_dir.is_symlink():
        raise OutputRefused(f"--out {out}: {run_dir} is a symbolic link; a command follows no link out of its output "
                            f"folder (remove the link)")
    check_no_links(run_dir, flag="--out")
    state = run_dir / "state.pt"
    resume = state.exists()
    with _removed_unless_interrupted(out, run_dir):
        return _run(cfg, out, run_dir, state, resume, teacher_dir, say, t_start)


def _export_targets(cfg: DemoConfig, out: Path) -> list[tuple[str, Path]]:
    """Where the student is exported: the asked format, and safetensors when ONNX's extra may be missing."""
    fmt = cfg.export_format
    targets = [(fmt, out / f"student{_EXPORT_SUFFIX[fmt]}" if _EXPORT_SUFFIX[fmt] else out / "student-export")]
    return targets + ([("safetensors", out / "student-export")] if fmt == "onnx" else [])


def _identity(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_dev, st.st_ino]


def _made_by_demo(out: Path, run_dir: Path) -> bool:
    """Whether ``run_dir`` is the folder this demo created (its marker names the folder's device and inode)."""
    marker = out / _MARKER
    try:
        recorded = json.loads(marker.read_text()).get("distill") if not marker.is_symlink() else None
        return not run_dir.is_symlink() and run_dir.is_dir() and recorded == _identity(run_dir)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def _start_run_dir(out: Path, run_dir: Path) -> None:
    """Create distill/ and record that the demo made it, so that only this folder is ever started over."""
    run_dir.mkdir(parents=True)
    atomic_write(out / _MARKER, lambda tmp: Path(tmp).write_text(json.dumps({"distill": _identity(run_dir)}) + "\n"))


@contextlib.contextmanager
def _removed_unless_interrupted(out: Path, run_dir: Path):
    """A demo that fails removes the distillation it started (an interrupted one keeps it to resume)."""
    started_here = not run_dir.exists()
    try:
        yield
    except Exception:
        if started_here and _made_by_demo(out, run_dir):
            shutil.rmtree(run_dir)
            (out / _MARKER).unlink(missing_ok=True)
        raise


def _start_over(cfg: DemoConfig, out: Path, run_dir: Path, why: str, say) -> None:
    """Remove a distill/ the demo can prove it made; refuse (one line) to touch anyone else's run."""
    if _made_by_demo(out, run_dir):
        say(f"{run_dir} was {why}; starting it over")
        shutil.rmtree(run_dir)
        _start_run_dir(out, run_dir)
        return
    if cfg.overwrite:  # the distillation writes over its own files there; nothing is deleted
        say(f"{run_dir} was {why}; --overwrite: distilling over it")
        return
    raise OutputRefused(f"--out {out}: {run_dir} holds a run that was {why}, and the demo cannot show it made "
                        f"it; move it away, choose another --out, or pass --overwrite to distill over it")


def _run(cfg: DemoConfig, out: Path, run_dir: Path, state: Path, resume: bool, teacher_dir: Path, say,
         t_start: float) -> dict:
    from .export import MissingExtraError, export
    from .report import make_report
    from .train import distill

    settings = DistillConfig(teacher=str(cfg.teacher), out=str(run_dir), width=cfg.width, steps=cfg.steps,
                             batch_size=cfg.batch_size, disc_batch=min(cfg.disc_batch, cfg.batch_size), data=cfg.data,
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
            # the teacher was retrained (or the state predates the digest)
            _start_over(cfg, out, run_dir, f"distilled from other weights of {cfg.teacher}", say)
            resume = False
        elif changed:  # e.g. an earlier version's demo, before a default changed
            _start_over(cfg, out, run_dir, f"distilled with other settings ({'; '.join(changed)})", say)
            resume = False
    elif not run_dir.exists():
        _start_run_dir(out, run_dir)
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
                        paired=cfg.paired, names=["teacher", f"student-w{cfg.width:g}"], sample_num=SAMPLE_NUM,
                        title=f"gandistill demo: {teacher_dir} and its width-{cfg.width:g} student",
                        overwrite=cfg.overwrite)

    # --- export the student, checked against PyTorch ---
    (fmt, target), *fallback = _export_targets(cfg, out)
    try:
        exported = export(student, fmt, target, overwrite=cfg.overwrite)
    except MissingExtraError as e:
        if not fallback:
            raise
        say(f"{e}; exporting safetensors instead")
        exported = export(student, fallback[0][0], fallback[0][1], overwrite=cfg.overwrite)
    paths = {**paths, "export": exported.path, "student": student_dir}
    paths["seconds"] = round(time.perf_counter() - t_start, 1)
    return paths
