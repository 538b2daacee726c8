"""train() and distill(): each one top-down function with its phases marked; shared pieces are helpers.

Both write a run directory: the user-facing weights (safetensors + config.json), ``state.pt`` (everything
needed to resume: models, EMA, adapters, optimizers, step, every RNG state, the config), ``log.jsonl``
and ``samples/``. State is written atomically every ``checkpoint_every`` steps, on SIGINT/SIGTERM and at
the end; a run stopped and resumed ends with the same weights as an uninterrupted one on CPU.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import (
    atomic_write,
    load_gan,
    load_state,
    save_gan,
    save_pretrained,
    save_state,
    weights_sha256,
)
from .config import DistillConfig, TrainConfig
from .data import BatchSampler, load_dataset
from .losses import (
    ADVERSARIAL,
    adversarial_loss,
    class_kl_loss,
    disc_feature_loss,
    disc_kl_loss,
    feature_loss,
    make_adapters,
    perceptual_loss,
    pixel_loss,
    r1_penalty,
)
from .models import build_discriminator, build_generator
from .outputs import OutputRefused, check_fresh_dir, check_no_links, check_not_input, open_append, run_lock
from .samples import save_grid, side_by_side
from .students import make_student

NUM_FIXED = 32  # latents of the periodic sample grids


@dataclass
class RunResult:
    """What train() and distill() return."""

    out: Path
    generator: nn.Module  # the saved generator (EMA when enabled): the teacher for train(), the student for distill()
    discriminator: nn.Module | None
    step: int
    status: str  # "completed" | "interrupted"
    bad_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def student(self) -> nn.Module:
        return self.generator


# --- small shared helpers -----------------------------------------------------------------------------

def _resolve_config(cls, config, overrides: dict):
    if config is None:
        return cls(**overrides)
    if isinstance(config, dict):
        return cls.from_dict({**config, **overrides})
    return config.replace(**overrides) if overrides else config


def _setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    if world <= 1:
        return 0, 1, torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank()
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(device)


def _sync_grads(modules: list[nn.Module], world: int) -> None:
    """Average gradients across ranks (what DDP does, without wrapping modules that expose forward_features)."""
    if world <= 1:
        return
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _sync_buffers(module: nn.Module, world: int) -> None:
    """Batch-norm statistics differ per rank; take rank 0's so that every rank holds the same model."""
    if world > 1:
        for b in module.buffers():
            dist.broadcast(b, 0)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    decay = min(decay, (1 + step) / (10 + step))  # warm-up: follow the model closely at first
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    buffers = list(ema.buffers())
    if buffers:  # batch-norm statistics are copied, not averaged
        torch._foreach_copy_(buffers, list(model.buffers()))


def _rng_state(device: torch.device, **generators: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": list(random.getstate()[1]),
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device, **generators: torch.Generator) -> None:
    # RNG states are CPU byte tensors, but load_state(map_location="cuda") moves every tensor to the GPU
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((3, tuple(state["python"]), None))
    for k, g in generators.items():
        g.set_state(state["generators"][k].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _all_finite(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for m in modules if m is not None for t in m.state_dict().values()
               if t.is_floating_point())


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the state written is a whole step's."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        if threading_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Log:
    """JSON lines, one record per log interval; loss sums stay on the device until written (no per-step sync)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}  # per term: lazy R1 is added every r1_every steps, not every step
        self.count = 0
        self.t0 = time.perf_counter()
        if enabled and resume_step is not None and path.exists():
            # records written after the state we resume from would be duplicated: drop them
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            atomic_write(path, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in keep)))
        elif enabled and resume_step is None and (path.exists() or path.is_symlink()):
            path.unlink()  # the link itself, never its target

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1

    def write(self, step: int, images: int, **extra) -> dict:
        elapsed = time.perf_counter() - self.t0
        record = {"step": step, **{k: round(v.item() / self.counts[k], 6) for k, v in self.sums.items()},
                  "img_per_s": round(images / max(elapsed, 1e-9), 2), **extra}
        if self.enabled:
            with open_append(self.path) as f:  # O_NOFOLLOW: a link planted here is not written through
                f.write(json.dumps(record) + "\n")
        self.sums, self.counts, self.count, self.t0 = {}, {}, 0, time.perf_counter()
        return record


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_out(out: Path, cfg, rank: int) -> Path:
    """Check ``out`` against the output rules (gandistill/outputs.py) and take its lock for the run's life."""
    resume, overwrite = cfg.resume, cfg.overwrite
    check_not_input(out, {f"--{name.replace('_', '-')}": getattr(cfg, name, None)
                          for name in ("teacher", "init_from", "classifier", "data_root")})
    state_path = out / "state.pt"
    if resume and not state_path.is_file():
        raise FileNotFoundError(f"{state_path}: nothing to resume (run without --resume to start)")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError(f"{out}: not writable")
        _RUN_LOCKS[-1].enter_context(run_lock(out))  # before anything in out is read or written
    check_no_links(out)
    if not resume and state_path.exists() and not overwrite:
        raise OutputRefused(f"{out} already holds a run; pass --resume to continue it, --overwrite to start it "
                            f"over, or choose another --out")
    if not resume:
        check_fresh_dir(out, overwrite=overwrite)
    if resume and rank == 0:
        for stale in out.glob(".state.pt.*.tmp"):  # torn by a crash mid-write; state.pt itself is whole
            stale.unlink()
    if dist.is_initialized():
        dist.barrier()  # every rank has checked before rank 0 writes the step-0 state
    return state_path


# one ExitStack per train()/distill() call in progress: _check_out enters the run lock into it, and the call
# closes it on any exit (the OS releases it on kill -9)
_RUN_LOCKS: list[contextlib.ExitStack] = []


def _holding_run_lock(run):
    @functools.wraps(run)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            _RUN_LOCKS.append(stack)
            try:
                return run(*args, **kwargs)
            finally:
                _RUN_LOCKS.pop()

    return wrapper


def _step_ok(loss: torch.Tensor) -> bool:
    """Whether this step's losses are finite on every rank: the one host sync per step, the price of never
    applying a NaN update. Ranks must agree, or one would skip a gradient all-reduce the others wait in."""
    ok = torch.isfinite(loss).all()
    if dist.is_initialized() and dist.get_world_size() > 1:
        flag = ok.to(torch.int32)  # on the loss's device, as NCCL needs
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        ok = flag
    return bool(ok)


# --- train(): a GAN from scratch -----------------------------------------------------------------------

@_holding_run_lock
def train(config: TrainConfig | dict | None = None, **overrides) -> RunResult:
    """Train a GAN from scratch; writes ``generator/`` (EMA), ``discriminator/``, state, log and samples."""
    cfg = _resolve_config(TrainConfig, config, overrides)

    # --- set up: devices, ranks, seeds, output ---
    rank, world, device = _setup_distributed(cfg.device)
    out = Path(cfg.out)
    state_path = _check_out(out, cfg, rank)
    torch.manual_seed(cfg.seed * 1000 + rank)
    np.random.seed(cfg.seed * 1000 + rank)
    random.seed(cfg.seed * 1000 + rank)

    # --- data ---
    data = load_dataset(cfg.data, cfg.split, cfg.data_root, cfg.resolution, cfg.channels)
    if cfg.holdout:
        if cfg.holdout >= len(data):
            raise ValueError(f"holdout ({cfg.holdout}) must be smaller than the dataset ({len(data)} images)")
        data = data.subset(0, len(data) - cfg.holdout)
    sampler = BatchSampler(len(data), cfg.batch_size, cfg.seed, rank, world)

    # --- models, EMA, optimizers ---
    G = build_generator(cfg.family, cfg.model_config()).to(device).train()
    D = build_discriminator(cfg.family, cfg.model_config(discriminator=True)).to(device).train()
    if cfg.init_from and not cfg.resume:
        _init_from(G, D, cfg)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2))
    adv = ADVERSARIAL.get(cfg.loss)
    z_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 17 + rank)
    fixed_z = torch.randn(NUM_FIXED, G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    step, bad_total, lr_factor = 0, 0, 1.0

    def capture() -> dict:
        return {"kind": "train", "config": cfg.to_dict(), "step": step, "bad_steps": bad_total,
                "lr_factor": lr_factor,
                "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict() if G_ema else None,
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "sampler": sampler.state_dict(),
                "rng": _rng_state(device, z=z_gen)}

    def restore(state: dict) -> int:
        nonlocal step, bad_total, lr_factor
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if G_ema is not None and state["G_ema"] is not None:
            G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], device, z=z_gen)
        step, bad_total, lr_factor = int(state["step"]), int(state["bad_steps"]), float(state["lr_factor"])
        return step

    def final_g() -> nn.Module:
        return G_ema if G_ema is not None else G

    def checkpoint() -> None:
        _sync_buffers(G, world)
        if rank == 0 and _all_finite(G, D, G_ema):
            save_state(capture(), state_path)

    # --- resume ---
    if cfg.resume:
        state = load_state(state_path, map_location=str(device))
        _check_resumable(state, cfg, "train", ("family", "resolution", "channels", "base_channels", "width", "d_width"))
        restore(state)
    else:
        checkpoint()  # step 0: the "last good state" that non-finite recovery falls back to
    log = _Log(out / "log.jsonl", rank == 0, step if cfg.resume else None)

    # --- loop ---
    bad_run = 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=rank != 0, dynamic_ncols=True,
               mininterval=1.0, file=sys.stderr)
    with _StopRequest() as stop:
        while step < cfg.steps and not stop.requested:
            real = data.batch(sampler.next(), device)  # [B, C, R, R]
            z = torch.randn(cfg.batch_size, G.z_dim, device=device, generator=z_gen)

            # discriminator step: real vs G(z).detach(), lazy R1 every r1_every steps
            with _autocast(device, cfg.amp):
                fake = G(z)
                d_loss = adv(D(fake.detach()), D(real))
                terms = {"d_loss": d_loss}
                if cfg.r1_gamma > 0 and step % cfg.r1_every == 0:
                    real_r1 = real.detach().requires_grad_(True)
                    r1 = r1_penalty(D(real_r1).float(), real_r1)
                    d_loss = d_loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
                    terms["r1"] = r1
            # generator step against the discriminator as it was before its update (one G forward per step)
            D.requires_grad_(False)
            with _autocast(device, cfg.amp):
                g_loss = adv(D(fake))
            D.requires_grad_(True)
            terms["g_loss"] = g_loss

            if _step_ok(d_loss + g_loss):
                opt_d.zero_grad(set_to_none=True)
                opt_g.zero_grad(set_to_none=True)
                d_loss.backward()
                g_loss.backward()
                _sync_grads([D, G], world)
                opt_d.step()
                opt_g.step()
                bad_run = 0
                step += 1
                if G_ema is not None:
                    _ema_update(G_ema, G, cfg.ema_decay, step)
                log.add(terms)
            else:
                bad_run, bad_total = bad_run + 1, bad_total + 1
                if bad_run >= cfg.max_bad_steps:
                    bad_kept, halved = bad_total, lr_factor * 0.5
                    _recover(restore, state_path, device, {opt_g: cfg.g_lr, opt_d: cfg.d_lr}, halved, bar, rank)
                    bad_total, bad_run, lr_factor = bad_kept, 0, halved
                continue
            bar.update(1)

            # --- bookkeeping: log, samples, snapshots, state ---
            if step % cfg.log_every == 0 or step == cfg.steps:
                record = log.write(step, log.count * cfg.batch_size * world, bad_steps=bad_total)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("d_loss", "g_loss")}
                                | {"img/s": f"{record['img_per_s']:.0f}"})
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                with torch.no_grad():
                    save_grid(final_g().eval()(fixed_z), out / "samples" / f"step{step:07d}.png", nrow=8)
                G.train()
            if rank == 0 and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_pretrained(final_g(), out / "snapshots" / f"step{step:07d}")
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    bar.close()

    # --- finish: state, weights for people ---
    checkpoint()
    status = "completed" if step >= cfg.steps else "interrupted"
    final = final_g()
    if rank == 0 and status == "completed":
        save_gan(final, D, out)
    return RunResult(out, final.eval(), D, step, status, bad_total)


def _init_from(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> None:
    """Load a GAN directory's weights into the freshly built G and D; their configs must be this run's."""
    generator, discriminator = load_gan(cfg.init_from)
    if discriminator is None:
        raise ValueError(f"--init-from {cfg.init_from}: no discriminator/ beside the generator; a GAN directory "
                         f"(generator/ and discriminator/) is needed to train on")
    for name, model, loaded in (("generator", G, generator), ("discriminator", D, discriminator)):
        if loaded.family != cfg.family or loaded.config != model.config:
            raise ValueError(f"--init-from {cfg.init_from}: its {name} is {loaded.family} {loaded.config}, this run "
                             f"builds {cfg.family} {model.config}; pass the same family and sizes")
        model.load_state_dict(loaded.state_dict())


def _check_resumable(state: dict, cfg, kind: str, same: tuple[str, ...]) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"state.pt holds a {state.get('kind')!r} run, not a {kind!r} run")
    saved = state["config"]
    diff = [k for k in same if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise ValueError(f"cannot resume: {', '.join(f'{k}={saved.get(k)!r}' for k in diff)} in the saved run "
                         f"differ from this command's; resume with the original settings")


def lr_at(schedule: str, step: int, steps: int) -> float:
    """The learning-rate multiplier of ``schedule`` for the update at ``step`` (0-based) of ``steps``."""
    progress = min(step / max(steps, 1), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"lr schedule must be constant, cosine or linear, got {schedule!r}")


def _set_lrs(base_lrs: dict, factor: float) -> None:
    for opt, lr in base_lrs.items():
        for group in opt.param_groups:
            group["lr"] = lr * factor


def _recover(restore, state_path: Path, device: torch.device, base_lrs: dict, lr_factor: float, bar,
             rank: int) -> None:
    """After too many non-finite steps in a row: reload the last good state, set lrs to base * lr_factor."""
    bar.n = restore(load_state(state_path, map_location=str(device)))  # the step it rewound to
    bar.refresh()
    _set_lrs(base_lrs, lr_factor)
    if rank == 0:
        bar.write(f"non-finite losses: reloaded the last good state; learning rates now x{lr_factor:g} "
                  f"of the configured ones")


# --- distill(): teacher -> student -----------------------------------------------------------------------

@_holding_run_lock
def distill(config: DistillConfig | dict | None = None, **overrides) -> RunResult:
    """Distill a ``width``-times narrower student from a frozen teacher; writes ``student/`` (EMA when enabled).

    Teacher and student see the same z every step. Loss terms (weight 0 turns one off): pixel, feature
    (student taps -> 1x1 adapters -> teacher taps), disc_feature and disc_kl (on the teacher's frozen
    discriminator), perceptual and class_kl (on a classifier), adversarial (a discriminator that starts
    from the teacher's and keeps training; real images are data, or teacher images when ``data="none"``).
    """
    from .checkpoint import from_pretrained

    cfg = _resolve_config(DistillConfig, config, overrides)

    # --- set up: devices, ranks, seeds, output ---
    rank, world, device = _setup_distributed(cfg.device)
    out = Path(cfg.out)
    state_path = _check_out(out, cfg, rank)
    torch.manual_seed(cfg.seed * 1000 + rank)
    np.random.seed(cfg.seed * 1000 + rank)
    random.seed(cfg.seed * 1000 + rank)

    # --- load the teacher (frozen: eval mode, no grad) and its discriminator ---
    teacher, teacher_d = load_gan(cfg.teacher, map_location=str(device))
    teacher.eval().requires_grad_(False)
    if hasattr(teacher, "set_noise_mode"):
        teacher.set_noise_mode("const")  # same z -> same image, for teacher and student alike

    # --- the student, initialised from the teacher's most important channels ---
    student = make_student(teacher, cfg.width, cfg.init, seed=cfg.seed).to(device).train()
    # which teacher weights, not just which path: a student stays traceable after its teacher is retrained
    teacher_sha256 = weights_sha256(cfg.teacher)
    student.lineage["teacher"]["weights_sha256"] = teacher_sha256
    if hasattr(student, "set_noise_mode"):
        student.set_noise_mode("const")
    student_ema = copy.deepcopy(student).eval().requires_grad_(False) if cfg.ema else None

    # --- discriminators: a frozen one for disc_feature / disc_kl, a trained one for the adversarial term ---
    if teacher_d is None and (cfg.disc_feature > 0 or cfg.disc_kl > 0):
        # most published checkpoints hold the generator only: run without the terms that need its discriminator
        # (the config saved with the state and the student records them as 0) rather than stop
        if rank == 0:
            print(f"note: {cfg.teacher} has no discriminator/: disc_feature and disc_kl are off"
                  + ("; the adversarial term trains a fresh discriminator" if cfg.adversarial > 0 else ""),
                  file=sys.stderr)
        cfg = cfg.replace(disc_feature=0.0, disc_kl=0.0)
    need_d_kd = cfg.disc_feature > 0 or cfg.disc_kl > 0
    D_kd = teacher_d.eval().requires_grad_(False) if teacher_d is not None else None
    D = None
    if cfg.adversarial > 0:
        D = (copy.deepcopy(teacher_d) if teacher_d is not None
             else build_discriminator(teacher.family, teacher.config)).to(device).train().requires_grad_(True)

    # --- adapters: one 1x1 conv per generator tap, student channels -> teacher channels ---
    # shapes are probed in eval mode: a train-mode pass would move the student's batch-norm statistics
    with torch.no_grad():
        probe = torch.zeros(2, teacher.z_dim, device=device)
        _, t_probe = teacher.forward_features(probe)
        _, s_probe = student.eval().forward_features(probe)
        student.train()
    kept = student.lineage["kept_channels"]
    tap_kept = {tap: kept[group] for tap, group in student.tap_groups.items() if group in kept}
    adapters = (make_adapters(s_probe, t_probe, list(teacher.distill_taps), tap_kept).to(device) if cfg.feature > 0
                else nn.ModuleDict())

    # --- optional classifier for perceptual / class_kl ---
    classifier = None
    if cfg.perceptual > 0 or cfg.class_kl > 0:
        classifier = from_pretrained(cfg.classifier, kind="classifier", map_location=str(device))
        classifier.eval().requires_grad_(False)

    # --- data: real images for the discriminator (none: data-free, teacher images count as real) ---
    data = sampler = None
    if D is not None and cfg.data != "none":
        tc = teacher.config
        data = load_dataset(cfg.data, cfg.split, cfg.data_root, tc.resolution, tc.channels)
        sampler = BatchSampler(len(data), cfg.batch_size, cfg.seed, rank, world)

    # --- optimizers ---
    opt_g = torch.optim.Adam(list(student.parameters()) + list(adapters.parameters()), lr=cfg.g_lr,
                             betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2)) if D is not None else None
    optimizers = {opt_g: cfg.g_lr, **({opt_d: cfg.d_lr} if opt_d is not None else {})}
    adv = ADVERSARIAL.get(cfg.adv_loss)
    if cfg.channels_last:
        for m in (teacher, student, D, D_kd, student_ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    z_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 17 + rank)
    fixed_z = torch.randn(NUM_FIXED, teacher.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    with torch.no_grad():
        fixed_teacher = teacher(fixed_z)
    step, bad_total, lr_factor = 0, 0, 1.0

    def capture() -> dict:
        return {"kind": "distill", "config": cfg.to_dict(), "teacher_sha256": teacher_sha256, "step": step,
                "bad_steps": bad_total, "lr_factor": lr_factor, "student": student.state_dict(),
                "student_ema": student_ema.state_dict() if student_ema is not None else None,
                "adapters": adapters.state_dict(), "D": D.state_dict() if D is not None else None,
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict() if opt_d is not None else None,
                "sampler": sampler.state_dict() if sampler is not None else None,
                "rng": _rng_state(device, z=z_gen)}

    def restore(state: dict) -> int:
        nonlocal step, bad_total, lr_factor
        student.load_state_dict(state["student"])
        if student_ema is not None and state["student_ema"] is not None:
            student_ema.load_state_dict(state["student_ema"])
        adapters.load_state_dict(state["adapters"])
        if D is not None:
            D.load_state_dict(state["D"])
            opt_d.load_state_dict(state["opt_d"])
        opt_g.load_state_dict(state["opt_g"])
        if sampler is not None:
            sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], device, z=z_gen)
        step, bad_total, lr_factor = int(state["step"]), int(state["bad_steps"]), float(state["lr_factor"])
        return step

    def final_student() -> nn.Module:
        return student_ema if student_ema is not None else student

    def checkpoint() -> None:
        _sync_buffers(student, world)
        if rank == 0 and _all_finite(student, student_ema, adapters, D):
            save_state(capture(), state_path)

    # --- resume ---
    if cfg.resume:
        state = load_state(state_path, map_location=str(device))
        _check_resumable(state, cfg, "distill", ("teacher", "width", "init", "feature", "adversarial", "data",
                                                  "ema"))
        if state.get("teacher_sha256", teacher_sha256) != teacher_sha256:  # states before this field: no check
            raise ValueError(f"cannot resume: {cfg.teacher}'s generator weights changed since this run started "
                             f"(sha256 {state['teacher_sha256'][:12]}... then, {teacher_sha256[:12]}... now); "
                             f"start a new run")
        restore(state)
    else:
        checkpoint()
    log = _Log(out / "log.jsonl", rank == 0, step if cfg.resume else None)
    if rank == 0:
        save_grid(fixed_teacher, out / "samples" / "teacher.png", nrow=8)

    # --- loop ---
    bad_run = 0
    bar = tqdm(total=cfg.steps, initial=step, desc=f"distill w{cfg.width:g}", disable=rank != 0,
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    with _StopRequest() as stop:
        while step < cfg.steps and not stop.requested:
            z = torch.randn(cfg.batch_size, teacher.z_dim, device=device, generator=z_gen)

            # teacher: images and taps for the same z, no graph
            with torch.no_grad(), _autocast(device, cfg.amp):
                t_img, t_feats = teacher.forward_features(z)
                t_dlogits, t_dfeats = D_kd.forward_features(t_img) if need_d_kd else (None, None)
                t_cls, t_cfeats = classifier.forward_features(t_img) if classifier is not None else (None, None)

            # student: every enabled term against the teacher's
            with _autocast(device, cfg.amp):
                s_img, s_feats = student.forward_features(z)
                terms: dict[str, torch.Tensor] = {}
                if cfg.pixel > 0:
                    terms["pixel"] = pixel_loss(s_img, t_img, cfg.pixel_kind)
                if cfg.feature > 0:
                    terms["feature"] = feature_loss(s_feats, t_feats, adapters, cfg.feature_kind)
                if need_d_kd:
                    s_dlogits, s_dfeats = D_kd.forward_features(s_img)
                    if cfg.disc_feature > 0:
                        terms["disc_feature"] = disc_feature_loss(s_dfeats, t_dfeats)
                    if cfg.disc_kl > 0:
                        terms["disc_kl"] = disc_kl_loss(s_dlogits.float(), t_dlogits.float(), cfg.kl_temperature)
                if classifier is not None:
                    s_cls, s_cfeats = classifier.forward_features(s_img)
                    if cfg.perceptual > 0:
                        terms["perceptual"] = perceptual_loss(s_cfeats, t_cfeats)
                    if cfg.class_kl > 0:
                        terms["class_kl"] = class_kl_loss(s_cls.float(), t_cls.float(), cfg.class_alpha,
                                                          cfg.class_temperature)
                if D is not None:
                    D.requires_grad_(False)
                    terms["adversarial"] = adversarial_loss(D(s_img), cfg.adv_loss)
                    D.requires_grad_(True)
                weights = {"pixel": cfg.pixel, "feature": cfg.feature, "disc_feature": cfg.disc_feature,
                           "disc_kl": cfg.disc_kl, "perceptual": cfg.perceptual, "class_kl": cfg.class_kl,
                           "adversarial": cfg.adversarial}
                total = sum(weights[k] * v.float() for k, v in terms.items())
                terms["total"] = total

            # discriminator: real (data, or teacher images when data-free) vs the student's images
            if D is not None:
                with _autocast(device, cfg.amp):
                    real = data.batch(sampler.next(), device) if data is not None else t_img
                    d_loss = adv(D(s_img.detach()), D(real))
                terms["d_loss"] = d_loss
                total_check = total + d_loss
            else:
                total_check = total

            if _step_ok(total_check):
                if cfg.lr_schedule != "constant":
                    _set_lrs(optimizers, lr_factor * lr_at(cfg.lr_schedule, step, cfg.steps))
                opt_g.zero_grad(set_to_none=True)
                total.backward()
                _sync_grads([student, adapters], world)
                opt_g.step()
                if D is not None:
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    _sync_grads([D], world)
                    opt_d.step()
                bad_run = 0
                step += 1
                if student_ema is not None:
                    _ema_update(student_ema, student, cfg.ema_decay, step)
                log.add(terms)
            else:
                bad_run, bad_total = bad_run + 1, bad_total + 1
                if bad_run >= cfg.max_bad_steps:
                    bad_kept, halved = bad_total, lr_factor * 0.5
                    _recover(restore, state_path, device, optimizers, halved, bar, rank)
                    bad_total, bad_run, lr_factor = bad_kept, 0, halved
                continue
            bar.update(1)

            # --- bookkeeping: log, samples, state ---
            if step % cfg.log_every == 0 or step == cfg.steps:
                record = log.write(step, log.count * cfg.batch_size * world, bad_steps=bad_total)
                bar.set_postfix({k: f"{record[k]:.3f}" for k in ("total", "pixel", "adversarial") if k in record}
                                | {"img/s": f"{record['img_per_s']:.0f}"})
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                with torch.no_grad():
                    s_fixed = final_student().eval()(fixed_z)
                student.train()
                save_grid(side_by_side(fixed_teacher, s_fixed, nrow=8), out / "samples" / f"step{step:07d}.png",
                          nrow=8)
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    bar.close()

    # --- finish: state, the student for people ---
    checkpoint()
    status = "completed" if step >= cfg.steps else "interrupted"
    final = final_student().eval()
    if rank == 0 and status == "completed":
        save_pretrained(final, out / "student", extra={"distill": cfg.to_dict()})
        if D is not None:
            save_pretrained(D, out / "discriminator")
    return RunResult(out, final, D, step, status, bad_total)
