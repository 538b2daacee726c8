"""``gandistill search``: which per-block widths distil best under a MACs budget, by short distillations.

The candidates are ``budget.pick_widths`` at each ``balances`` value (0 is the uniform width) plus any count
vectors given; duplicates count once. Each candidate is distilled for ``steps`` steps at each seed with one
recipe (the distill settings given, every other at its default), then scored on the TRAIN split: FID of
``num_samples`` images against the split's last 10,000 images with fmnist-cnn features, and PSNR against the
teacher on ``paired`` shared latents. The test split is left for the final student's evaluation, so that the
choice does not tune to the numbers it will be judged by.

Everything lands in ``out``: one distillation run per candidate and seed (``c64-32-16-s0/``), ``search.json``
(settings, candidates, scores), ``table.md`` and ``search.png``; a second call with the same settings resumes
(finished runs are kept, interrupted ones resumed, scored ones not rescored) and refuses other settings.
The last line printed is the command that distils the winner.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .budget import MacsModel, parse_macs, pick_widths
from .checkpoint import from_pretrained, load_state, read_config, resolve_model_dir, write_json
from .config import (
    DISTILL_BOOKKEEPING,
    ConfigMixin,
    DistillConfig,
    _check,
    _check_device,
    _check_path,
    _check_range,
    _check_seed,
    _check_types,
    _fail,
    load_json_text,
    parse_macs_spec,
)
from .models import block_channels
from .outputs import OutputRefused, check_no_links, foreign_entries, run_lock

SELECTION_REFERENCE = 10_000  # the train split's last images: the reference of the selection FID
# distill settings a search sets per run (not part of its recipe)
PER_RUN = frozenset({"teacher", "out", "width", "widths", "macs", "balance", "seed", "steps", "resume", "overwrite"})


@dataclass(frozen=True)
class SearchConfig(ConfigMixin):
    """``search()``: candidates under one MACs budget, each distilled briefly, ranked on the train split."""

    teacher: str = "pretrained/dcgan-fmnist"
    out: str = "runs/search"
    macs: str = "14.3x"  # the budget: 1.5M, 250k, 1500000, or 10x (ten times fewer than the teacher)
    balances: tuple = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0)
    candidates: tuple = ()  # more candidates: per-block channel counts, each a list
    steps: int = 2000
    seeds: tuple = (0,)
    num_samples: int = 5000
    paired: int = 1000
    device: str = "cpu"
    recipe: dict = dataclasses.field(default_factory=dict)  # distill settings for every run (e.g. disc_batch)

    def __post_init__(self):
        _check_path(self, "teacher")
        _check_path(self, "out")
        parse_macs_spec(self.macs)
        object.__setattr__(self, "macs", str(self.macs))
        for name in ("balances", "seeds", "candidates"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            elif not isinstance(value, tuple):
                _fail(name, "must be a list", value)
        object.__setattr__(self, "candidates", tuple(tuple(c) if isinstance(c, list) else c for c in self.candidates))
        for b in self.balances:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not -1 <= b <= 1:
                _fail("balances", "must be numbers in [-1, 1]", self.balances)
        object.__setattr__(self, "balances", tuple(float(b) for b in self.balances))
        for c in self.candidates:
            if not isinstance(c, tuple) or not c or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                        for v in c):
                _fail("candidates", "must be lists of channel counts (ints >= 1)", c)
        _check(bool(self.balances or self.candidates), "balances", "and candidates are both empty: nothing to rank")
        _check(bool(self.seeds), "seeds", "must name at least one seed")
        for s in self.seeds:
            _check_seed(SimpleNamespace(seed=s))
        _check_types(self, int, ("steps", "num_samples", "paired"))
        _check_range(self, ("steps", "num_samples"), 1, 10**7)
        _check_range(self, ("paired",), 0, 10**6)
        _check_device(self)
        if not isinstance(self.recipe, dict):
            _fail("recipe", "must be a mapping of distill settings", self.recipe)
        bad = sorted(set(self.recipe) & PER_RUN)
        _check(not bad, "recipe", f"cannot set {', '.join(bad)}: the search sets them per run")
        DistillConfig(**self.recipe)  # every recipe setting is a valid distill setting

    def run_config(self, counts: tuple[int, ...], seed: int, resume: bool) -> DistillConfig:
        return DistillConfig(**{**self.recipe, "teacher": self.teacher, "out": str(Path(self.out) / run_name(counts, seed)),
                                "widths": tuple(counts), "steps": self.steps, "seed": seed, "resume": resume,
                                "device": self.device})


def run_name(counts, seed: int) -> str:
    return "c" + "-".join(map(str, counts)) + f"-s{seed}"


def candidates_for(cfg: SearchConfig, teacher) -> tuple[int, int, list[dict]]:
    """(teacher MACs, budget, candidates): each candidate's counts, the balances that gave it, its MACs."""
    costs = MacsModel(teacher)
    teacher_macs = round(costs(costs.full))
    budget = parse_macs(cfg.macs, teacher_macs)
    full = [int(c) for c in costs.full]
    found: dict[tuple, dict] = {}
    for b in cfg.balances:
        counts = pick_widths(teacher, budget, b, costs)
        found.setdefault(counts, {"counts": list(counts), "balances": []})["balances"].append(b)
    for c in cfg.candidates:
        if len(c) != len(full) or any(v > f for v, f in zip(c, full, strict=False)):
            raise ValueError(f"candidates: {list(c)} does not fit the teacher's blocks {full} (one count per "
                             f"block, at most the teacher's)")
        if costs(c) > budget + 0.5:
            raise ValueError(f"candidates: {list(c)} costs {costs(c):,.0f} MACs, over the budget {budget:,}")
        found.setdefault(tuple(c), {"counts": list(c), "balances": []})
    for cand in found.values():
        cand["macs"] = round(costs(cand["counts"]))
    return teacher_macs, budget, list(found.values())


def _finished(run: Path, steps: int) -> bool:
    state = run / "state.pt"
    return (run / "student" / "model.safetensors").is_file() and state.is_file() \
        and load_state(state)["step"] >= steps


@torch.no_grad()
def _score(run: Path, teacher, reference: torch.Tensor, cfg: SearchConfig) -> dict:
    from .data import to_uint8
    from .metrics import image_metrics, paired_fidelity
    from .models import for_inference
    from .samples import latents

    student = from_pretrained(run / "student", "generator").eval()
    served = for_inference(student).to(cfg.device)
    z = latents(cfg.num_samples, student.z_dim, 0)
    images = torch.cat([to_uint8(served(z[i:i + 500].to(cfg.device))).cpu() for i in range(0, len(z), 500)])
    fid = image_metrics(images, reference, metrics=("fid",), device=cfg.device)
    record = {"fid": next(iter(fid.values())), "fid_key": next(iter(fid))}
    if cfg.paired:
        record["psnr"] = paired_fidelity(student, teacher, num=cfg.paired, device=cfg.device)["psnr"]
    return record


def search(config: SearchConfig | dict | None = None, **overrides) -> dict:
    """Run (or resume) a search; returns what ``search.json`` holds, with ``ranking`` and ``command``."""
    cfg = config if isinstance(config, SearchConfig) else SearchConfig(**{**(config or {}), **overrides})
    if isinstance(config, SearchConfig) and overrides:
        cfg = cfg.replace(**overrides)
    meta = read_config(resolve_model_dir(cfg.teacher, "generator"))
    teacher_sizes = SimpleNamespace(family=meta["family"], config=meta["config_obj"])
    block_channels(teacher_sizes.family, teacher_sizes.config)  # refuses families without per-block widths
    teacher_macs, budget, cands = candidates_for(cfg, teacher_sizes)

    out = Path(cfg.out)
    record_path = out / "search.json"
    settings = {k: v for k, v in _jsonable(cfg.to_dict()).items() if k not in ("out", "device")}
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out, flag="--out"):
        check_no_links(out)
        if record_path.is_file():
            record = load_json_text(record_path.read_bytes(), record_path)
            if record.get("settings") != settings:
                raise OutputRefused(f"{out} holds a search with other settings ({_diff(record.get('settings'), settings)}); "
                                    f"rerun it with its own or choose another --out")
        else:
            foreign = foreign_entries(out, {run_name(c["counts"], s) for c in cands for s in cfg.seeds})
            if foreign:
                raise OutputRefused(f"{out} holds files a search did not make ({', '.join(foreign[:3])}); "
                                    f"choose another --out")
            record = {"settings": settings, "teacher_macs": teacher_macs, "budget": budget, "scores": {}}
        record["candidates"] = cands
        write_json(record_path, record)
        _runs(cfg, cands, record, record_path, budget)
    return record


def _runs(cfg: SearchConfig, cands: list[dict], record: dict, record_path: Path, budget: int) -> None:
    from .data import load_dataset
    from .train import distill

    teacher = None
    reference = None
    total = len(cands) * len(cfg.seeds)
    for i, cand in enumerate(cands):
        for seed in cfg.seeds:
            name = run_name(cand["counts"], seed)
            run = Path(cfg.out) / name
            if name in record["scores"] and _finished(run, cfg.steps):
                continue
            if not _finished(run, cfg.steps):
                print(f"search: [{i * len(cfg.seeds) + cfg.seeds.index(seed) + 1}/{total}] distilling {name} "
                      f"({cand['macs']:,} MACs) for {cfg.steps} steps", file=sys.stderr)
                result = distill(cfg.run_config(tuple(cand["counts"]), seed, resume=(run / "state.pt").exists()))
                if result.status != "completed":
                    raise KeyboardInterrupt
            if teacher is None:
                teacher = from_pretrained(cfg.teacher, "generator").eval()
                dataset = cfg.recipe.get("data", DistillConfig.data)
                data = load_dataset(DistillConfig.data if dataset == "none" else dataset, "train",
                                    cfg.recipe.get("data_root"), teacher.config.resolution, teacher.config.channels)
                reference = data.images[-SELECTION_REFERENCE:]
            record["scores"][name] = _score(run, teacher, reference, cfg)
            write_json(record_path, record)
    _rank(cfg, record, budget)
    write_json(record_path, record)
    _write_table(cfg, record)


def _rank(cfg: SearchConfig, record: dict, budget: int) -> None:
    rows = []
    for cand in record["candidates"]:
        scores = [record["scores"][run_name(cand["counts"], s)] for s in cfg.seeds]
        fids = [s["fid"] for s in scores]
        psnrs = [s["psnr"] for s in scores if "psnr" in s]
        rows.append({**cand, "fid": float(np.mean(fids)), "fid_seeds": fids,
                     "psnr": float(np.mean(psnrs)) if psnrs else None})
    rows.sort(key=lambda r: (r["fid"], -(r["psnr"] or 0)))
    record["ranking"] = rows
    best = rows[0]
    flags = [f"--{k.replace('_', '-')} {shlex.quote(_flag_value(v))}" for k, v in sorted(cfg.recipe.items())
             if k not in DISTILL_BOOKKEEPING]
    record["command"] = " ".join(["gandistill distill", f"--teacher {shlex.quote(cfg.teacher)}",
                                  f"--widths {','.join(map(str, best['counts']))}", *flags,
                                  f"--out runs/distill-{run_name(best['counts'], 0)[:-3]}"])


def _flag_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def _write_table(cfg: SearchConfig, record: dict) -> None:
    out = Path(cfg.out)
    rows, teacher_macs = record["ranking"], record["teacher_macs"]
    key = next(iter(record["scores"].values()))["fid_key"]
    seeds = ", ".join(map(str, cfg.seeds))
    lines = [f"Budget {record['budget']:,} MACs per image ({cfg.macs}; teacher {teacher_macs:,}), {cfg.steps} steps "
             f"per run, seeds {seeds}; {key} on the train split's last {SELECTION_REFERENCE:,} images, PSNR vs the "
             f"teacher on {cfg.paired} latents.", "",
             f"| rank | widths (channels) | balance | MACs/img | fewer | {key} (mean; per seed) | PSNR (dB) |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        balance = ", ".join(f"{b:g}" for b in r["balances"]) or "given"
        per_seed = "; ".join(f"{f:.2f}" for f in r["fid_seeds"])
        psnr = "-" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(f"| {i} | {','.join(map(str, r['counts']))} | {balance} | {r['macs']:,} | "
                     f"{teacher_macs / r['macs']:.1f}x | {r['fid']:.2f} ({per_seed}) | {psnr} |")
    lines += ["", "Distil the winner:", "", f"    {record['command']}", ""]
    (out / "table.md").write_text("\n".join(lines))
    _plot(rows, key, out / "search.png", record)
    print("\n".join(lines))


def _plot(rows: list[dict], key: str, path: Path, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    labels = [",".join(map(str, r["counts"])) for r in rows]
    for i, r in enumerate(rows):
        ax.scatter([i] * len(r["fid_seeds"]), r["fid_seeds"], color="tab:blue", s=18)
        ax.plot([i - 0.25, i + 0.25], [r["fid"]] * 2, color="black")
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(key)
    ax.set_title(f"per-block widths at {record['budget']:,} MACs (teacher {record['teacher_macs']:,})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return float(value)
    return value


def _diff(old: dict | None, new: dict) -> str:
    old = old or {}
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))
