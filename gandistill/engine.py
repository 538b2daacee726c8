"""The run plumbing train() and distill() share, written once: config resolution, torch.distributed helpers,
EMA, RNG state capture and restore, stop requests, the JSON-lines log, autocast, the output checks and run
lock, the per-step finiteness check, resume checks, learning-rate schedules and non-finite recovery.

gandistill/train.py holds the two loops and imports these; the names it uses stay importable from it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import atomic_write, load_state
from .config import DISTILL_BOOKKEEPING, DistillConfig
from .outputs import OutputRefused, check_fresh_dir, check_no_links, check_not_input, open_append, run_lock


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
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the state written is a whole step's.

    Under torch.distributed a signal may reach one rank only (a scheduler's SIGTERM to one process): a rank that
    left the loop alone would wait in a collective the others never enter. There the request travels in the
    step's all-reduce (``_step_ok``) and every rank stops after the same step.
    """

    def __init__(self):
        self.requested = False  # this process was asked to stop
        self.agreed = False  # some rank was asked, as of the last step's all-reduce
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

    @property
    def stopping(self) -> bool:
        """Whether the loop ends before its next step: on one process at once, across ranks at the step all
        ranks agreed on."""
        return self.agreed if _distributed() else self.requested


def _distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


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


def _step_ok(loss: torch.Tensor, stop: _StopRequest | None = None) -> bool:
    """Whether this step's losses are finite on every rank: the one host sync per step, the price of never
    applying a NaN update. Ranks must agree, or one would skip a gradient all-reduce the others wait in.

    Under torch.distributed the same all-reduce carries ``stop``'s request to every rank (``stop.agreed``)."""
    ok = torch.isfinite(loss).all()
    if not _distributed():
        return bool(ok)
    # one MAX over [non-finite here, stop requested here]: on the loss's device, as NCCL needs
    requested = torch.tensor(stop is not None and stop.requested, device=ok.device)
    flags = torch.stack([~ok, requested]).to(torch.int32)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    bad, stop_any = flags.tolist()
    if stop is not None:
        stop.agreed = bool(stop_any)
    return not bad


def _broadcast_start(modules: list[nn.Module | None], world: int) -> None:
    """Every rank starts from rank 0's weights (what DDP does when it wraps a module): layers initialised fresh
    draw from each rank's own random stream."""
    if world > 1:
        with torch.no_grad():
            for module in modules:
                if module is not None:
                    for tensor in module.state_dict().values():
                        dist.broadcast(tensor, 0)


# Settings a resume may change: the run's length (extending it), and those that decide nothing about the weights
# it ends with: where it writes and where the named dataset lives, how often it logs, draws samples, keeps snapshots
# and saves its state. Everything else (learning rates, schedule, loss weights, classifier, batch sizes, seed, amp,
# ...) is refused: the card would state the last segment's values for the whole run.
RESUME_MAY_CHANGE = {
    "distill": DISTILL_BOOKKEEPING | {"steps", "data_root"},
    "train": frozenset({"out", "resume", "overwrite", "checkpoint_every", "sample_every", "log_every",
                        "snapshot_every", "steps", "data_root"}),
}
# Compared by what decides the result: another card of the same kind draws the same random streams, CPU <-> CUDA
# does not (nor can a CPU generator's saved state be set on a CUDA one)
_RESUME_COMPARED_AS = {"device": lambda device: torch.device(device).type, "widths": tuple}


def _check_resumable(state: dict, cfg, kind: str) -> None:
    """Refuse, in one line naming each field (the run's value -> this command's), a resume whose settings are
    not the run's, but for those in ``RESUME_MAY_CHANGE``."""
    if state.get("kind") != kind:
        raise ValueError(f"state.pt holds a {state.get('kind')!r} run, not a {kind!r} run")
    saved = DistillConfig.made_with(state["config"]) if kind == "distill" else state["config"]
    free = RESUME_MAY_CHANGE[kind]
    diff = []
    for name in (f.name for f in dataclasses.fields(cfg)):
        if name in free or name not in saved:  # a field newer than the state (and not in DISTILL_ADDED): unknown
            continue
        old, new = saved[name], getattr(cfg, name)
        as_ = _RESUME_COMPARED_AS.get(name, lambda value: value)
        if as_(old) != as_(new):
            diff.append(f"{name} {old!r} -> {new!r}")
    if diff:
        raise ValueError(f"cannot resume: {', '.join(diff)} (the run's setting -> this command's); only steps and "
                         f"bookkeeping ({', '.join(sorted(free - {'steps', 'resume', 'overwrite'}))}) may change: "
                         f"resume with the run's settings or start a new run in another --out")


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
