"""Parameters, MACs, latency, throughput and peak memory of generators.

Timings exclude warm-up runs; on CUDA every timed region is bracketed by synchronisation. Peak memory is
the CUDA allocator's peak when on CUDA; on the CPU it is the peak of tensor bytes alive during one forward
pass, counted by a dispatch mode (weights excluded: they are reported separately).
"""
from __future__ import annotations

import os
import secrets
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .config import ProfileConfig
from .models import for_inference
from .timing import SETTLE_S, Settler, paired_ratio, round_order, split, spread


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(generator: nn.Module, batch: int = 1) -> int:
    """Multiply-accumulates per image of ``generator(z)``, counted by torch.utils.flop_counter (FLOPs / 2).

    Runs with autograd enabled, also when called under no_grad (as profile() is): FlopCounterMode's module
    tracker fails under no_grad for StyleGAN2 (torch 2.14); no backward pass is run, so only the forward counts.
    """
    z = torch.zeros(batch, generator.z_dim, device=next(generator.parameters()).device)
    was_training = generator.training
    generator.eval()
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        generator(z)
    generator.train(was_training)
    return counter.get_total_flops() // 2 // batch


class PeakTensorMemory(TorchDispatchMode):
    """Tracks bytes of tensor storages created inside the context and still alive; ``peak`` is their maximum."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, list] = {}  # storage data_ptr -> [nbytes, tensors referencing it]
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def _track(self, t: torch.Tensor, input_ptrs: set[int]) -> None:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or (ptr in input_ptrs and ptr not in self.live):
            return  # a view of memory made outside the context (weights, inputs): not ours to count
        if ptr not in self.live:
            self.live[ptr] = [storage.nbytes(), 0]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[ptr][1] += 1
        weakref.finalize(t, self._release, ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        input_ptrs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                      if isinstance(a, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t, input_ptrs)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(model) -> tuple[nn.Module, str]:
    if isinstance(model, (str, os.PathLike)):
        from .checkpoint import from_pretrained

        return from_pretrained(model, "generator"), str(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"profile needs a generator module or directory, got {type(model).__name__}")
    return model, getattr(model, "source", None) or f"{model.family}-w{model.config.width:g}"


def _is_onnx(model) -> bool:
    return isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx")


SPREAD_LIMIT = 1.5  # a speed-up whose p10-p90 range across rounds spans more than this factor is not reported


@torch.no_grad()
def profile(model, device: str = ProfileConfig.device, latency_runs: int = ProfileConfig.latency_runs,
            throughput_batch: int = ProfileConfig.throughput_batch,
            throughput_runs: int = ProfileConfig.throughput_runs, warmup: int = ProfileConfig.warmup,
            name: str | None = None, rounds: int = ProfileConfig.rounds) -> dict:
    """Params, MACs per image, latency p50/p90 at batch 1, throughput at ``throughput_batch``, peak memory.

    Params and MACs are the generator's; timings and memory are of the generator as served
    (``gandistill.models.for_inference``: batch norm folded for a DCGAN), which draws the same images.
    The runs are split into ``rounds``; the spread across rounds is reported (see `profile_models`).

    ``model``: a generator module, a model directory, or a path ending in ``.onnx`` (run by onnxruntime on the
    CPU, with gandistill.onnx_runtime's session settings).
    """
    return profile_models([model], device, latency_runs, throughput_batch, throughput_runs, warmup,
                          names=None if name is None else [name], rounds=rounds)[0]


class _Served:
    """One model as timed: a callable per batch (1 and the throughput batch), the thread pool it runs on."""

    def __init__(self, model, device: torch.device, throughput_batch: int, threads: int | None):
        self.onnx = _is_onnx(model)
        if self.onnx:
            if device.type != "cpu":
                raise ValueError(f"{model}: .onnx files are run by onnxruntime on the CPU, not on {device}")
            self.record = _onnx_record(model, threads)
            session = self.record.pop("_session")
            z_input = session.get_inputs()[0]
            rng = np.random.default_rng(0)
            feeds = [{z_input.name: rng.standard_normal((n, self.record["z_dim"]), dtype=np.float32)}
                     for n in (1, throughput_batch)]
            self.calls = [lambda feed=feed: session.run(None, feed) for feed in feeds]
            self.pool = f"onnxruntime:{id(session)}"  # every session has its own threads
            self.generator = None
            return
        self.generator, self.label = _load(model)
        g = self.generator
        self.before = (next(g.parameters()).device, g.training)
        g.to(device).eval()
        self.served = for_inference(g)
        z1, zb = torch.randn(1, g.z_dim, device=device), torch.randn(throughput_batch, g.z_dim, device=device)
        self.calls = [lambda: self.served(z1), lambda: self.served(zb)]
        self.zb = zb
        self.pool = "torch"

    def restore(self) -> None:
        if self.generator is not None:
            device_before, was_training = self.before
            self.generator.train(was_training)
            self.generator.to(device_before)


@torch.no_grad()
def profile_models(models: Sequence, device: str = ProfileConfig.device,
                   latency_runs: int = ProfileConfig.latency_runs,
                   throughput_batch: int = ProfileConfig.throughput_batch,
                   throughput_runs: int = ProfileConfig.throughput_runs, warmup: int = ProfileConfig.warmup,
                   names: Sequence[str] | None = None, rounds: int = ProfileConfig.rounds,
                   timer=time.perf_counter, settle: float = SETTLE_S) -> list[dict]:
    """profile() of several generators whose timings are taken in interleaved rounds.

    Each round times every model in turn (the order reversed every other round), a share of ``latency_runs``
    and ``throughput_runs`` each, so that teacher and student see the same machine: a busy spell or a change
    of clock speed lands on both instead of making one look faster. Besides the p50/p90 latency over all
    runs, each result holds per-round values (latency median, throughput) and their [p10, p90] spread;
    `speedup` uses them to refuse a speed-up the spread cannot support. Models may be ``.onnx`` exports
    (float or int8): they take their turns in the same rounds, through onnxruntime with as many threads as
    PyTorch has here, and a turn that follows one on another thread pool starts after ``settle`` seconds
    (gandistill.timing). ``timer``: for tests.
    """
    cfg = ProfileConfig(device=device, latency_runs=latency_runs, throughput_batch=throughput_batch,
                        throughput_runs=throughput_runs, warmup=warmup, rounds=rounds)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    if names is not None and len(names) != len(models):
        raise ValueError(f"names: {len(names)} given for {len(models)} models")
    rounds = min(cfg.rounds, cfg.latency_runs, cfg.throughput_runs)
    dev = torch.device(cfg.device)
    threads = torch.get_num_threads() if dev.type == "cpu" else None
    timed: list[_Served] = []
    try:
        for m in models:
            timed.append(_Served(m, dev, cfg.throughput_batch, threads))
        for t in timed:
            for _ in range(cfg.warmup):
                t.calls[0]()
                t.calls[1]()
        latencies = [[[] for _ in range(rounds)] for _ in timed]  # [model][round] -> seconds per run
        elapsed = [[0.0] * rounds for _ in timed]  # [model][round] -> seconds of the throughput runs
        lat_split, thr_split = split(cfg.latency_runs, rounds), split(cfg.throughput_runs, rounds)
        # a pause between turns on different thread pools; one thread has no pool that could spin
        settler = Settler(settle if len({t.pool for t in timed}) > 1 and (threads or 1) > 1 else 0.0)
        for r, i in round_order(len(timed), rounds):
            one, batch = timed[i].calls
            if settler.before(timed[i].pool):
                one()  # untimed: wakes this pool's threads after the pause
            for _ in range(lat_split[r]):
                _sync(dev)
                t0 = timer()
                one()
                _sync(dev)
                latencies[i][r].append(timer() - t0)
            _sync(dev)
            t0 = timer()
            for _ in range(thr_split[r]):
                batch()
            _sync(dev)
            elapsed[i][r] = timer() - t0
        peaks = [None if t.onnx else _peak_memory(t.served, t.zb, dev) for t in timed]
    finally:
        for t in timed:
            t.restore()
    results = []
    session = secrets.token_hex(4)
    for i, t in enumerate(timed):
        every = [x for per_round in latencies[i] for x in per_round]
        lat_rounds = [float(np.median(per_round) * 1e3) for per_round in latencies[i]]
        thr_rounds = [cfg.throughput_batch * n / max(e, 1e-12) for n, e in zip(thr_split, elapsed[i], strict=True)]
        record = t.record if t.onnx else _torch_record(t, dev, cfg, peaks[i])
        record.update({
            "model": names[i] if names is not None else record["model"],
            "threads": threads,
            "latency_ms_p50": float(np.percentile(every, 50) * 1e3),
            "latency_ms_p90": float(np.percentile(every, 90) * 1e3),
            "latency_runs": cfg.latency_runs,
            "throughput_img_s": cfg.throughput_batch * cfg.throughput_runs / max(sum(elapsed[i]), 1e-12),
            "throughput_batch": cfg.throughput_batch,
            "throughput_runs": cfg.throughput_runs,
            "rounds": rounds,
            "latency_ms_rounds": lat_rounds,  # the median of each round
            "latency_ms_spread": spread(lat_rounds),  # [p10, p90] across rounds
            "throughput_img_s_rounds": thr_rounds,
            "throughput_img_s_spread": spread(thr_rounds),
            "warmup": cfg.warmup,
            "settle_s": settler.settle,
            "timed_together": session,  # the same for every model of one call: their rounds pair up
        })
        results.append(record)
    return results


def _torch_record(t: _Served, dev: torch.device, cfg: ProfileConfig, peak: int) -> dict:
    generator = t.generator
    weights_bytes = sum(x.numel() * x.element_size() for x in generator.state_dict().values())
    return {
        "model": t.label, "family": generator.family,
        "config": generator.config.to_dict(), "width": float(generator.config.width),
        "device": str(dev), "params": count_params(generator), "macs": count_macs(generator),
        "peak_memory_mb": peak / 2**20,
        "peak_memory_kind": ("CUDA allocator peak" if dev.type == "cuda"
                             else "tensors alive during one forward (weights excluded)"),
        "peak_memory_batch": cfg.throughput_batch,
        "weights_mb": weights_bytes / 2**20,
        "timed": type(t.served).__name__,
        "lineage": getattr(generator, "lineage", None),
        "weights_sha256": getattr(generator, "weights_sha256", None),
    }


def _peak_memory(generator: nn.Module, z: torch.Tensor, device: torch.device) -> int:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        generator(z)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with PeakTensorMemory() as tracker:
        out = generator(z)
        del out
    return tracker.peak


def _onnx_record(path: str | os.PathLike, threads: int | None) -> dict:
    """What is known of an exported ``.onnx`` generator before it is timed, and its onnxruntime session (under
    ``_session``): family, config, lineage from its metadata; params and MACs of the architecture it stores."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        from .onnx_runtime import architecture, onnx_session, runtime_description
    except ImportError as e:
        raise ValueError(f"cannot profile {path}: ONNX profiling needs gandistill.onnx_runtime and onnxruntime "
                         f"(pip install 'gandistill[export]'); import failed: {e}") from None
    from .export import read_metadata

    session = onnx_session(path, threads)
    try:
        meta = read_metadata(path)
    except (ValueError, ImportError):  # a foreign ONNX file: timings only
        meta = {}
    z_dim = session.get_inputs()[0].shape[1]
    record = {"model": str(path), "family": meta.get("family"), "config": meta.get("config"),
              "width": meta.get("width"), "lineage": meta.get("lineage"), "quantize": meta.get("quantize"),
              "device": "cpu", "runtime": runtime_description(session), "timed": "onnxruntime",
              "bytes": path.stat().st_size, "peak_memory_mb": None,
              "z_dim": z_dim if isinstance(z_dim, int) else int(meta.get("z_dim", 0)), "_session": session}
    if record["z_dim"] < 1:
        raise ValueError(f"{path}: input has no fixed z dimension and no gandistill metadata")
    if meta.get("family") and meta.get("config"):  # a gandistill export: the architecture it stores
        skeleton = architecture(path, meta)  # on the meta device, checked against the graph
        record.update(params=count_params(skeleton), macs=count_macs(skeleton))
    return record


def speedup(teacher: dict, student: dict) -> dict:
    """Student vs teacher from two profile() results: measured speed-ups next to the MAC and parameter ratios."""
    out = {"teacher": teacher.get("model")}
    if teacher.get("macs") and student.get("macs"):
        out["mac_ratio"] = teacher["macs"] / student["macs"]
    if teacher.get("params") and student.get("params"):
        out["param_ratio"] = teacher["params"] / student["params"]
    if teacher.get("latency_ms_p50") and student.get("latency_ms_p50"):
        out["latency_speedup"] = teacher["latency_ms_p50"] / student["latency_ms_p50"]
    if teacher.get("throughput_img_s") and student.get("throughput_img_s"):
        out["throughput_speedup"] = student["throughput_img_s"] / teacher["throughput_img_s"]
    # timed in the same rounds: the median of each round's ratio, which a drift of the machine's speed from round
    # to round does not move
    t_rounds, s_rounds = teacher.get("throughput_img_s_rounds"), student.get("throughput_img_s_rounds")
    together = teacher.get("timed_together") is not None and teacher.get("timed_together") == student.get(
        "timed_together")
    if together and t_rounds and s_rounds and min(t_rounds + s_rounds) > 0:
        out["throughput_speedup_paired"] = paired_ratio(s_rounds, t_rounds)
        out["latency_speedup_paired"] = paired_ratio(teacher["latency_ms_rounds"], student["latency_ms_rounds"])
    note = _inconclusive(teacher, student)
    if note:
        out["inconclusive"] = note
    return out


def _inconclusive(teacher: dict, student: dict) -> str | None:
    """One line when the rounds' spread leaves the speed-up open by more than SPREAD_LIMIT, else None.

    The speed-up's range: the teacher's slowest rounds against the student's fastest, and the other way round
    (latency p10-p90 of both; throughput likewise).
    """
    t, s = teacher.get("latency_ms_spread"), student.get("latency_ms_spread")
    tt, st = teacher.get("throughput_img_s_spread"), student.get("throughput_img_s_spread")
    ranges = []
    if t and s and min(t + s) > 0:
        ranges.append(("latency", t[0] / s[1], t[1] / s[0]))
    if tt and st and min(tt + st) > 0:
        ranges.append(("throughput", st[0] / tt[1], st[1] / tt[0]))
    wide = [(what, low, high) for what, low, high in ranges if high / low > SPREAD_LIMIT]
    if not wide:
        return None
    what, low, high = wide[0]
    return (f"timings too noisy to compare: the {what} speed-up lies anywhere between {low:.2f}x and {high:.2f}x "
            f"across rounds; rerun on a quieter machine or with more runs")


def paired_by(lineage: dict | None, family: str | None, config: dict | None,
              weights_sha256: str | None) -> str | None:
    """How a student's lineage names this candidate as its teacher: "sha256" (the teacher weights it recorded),
    "config" (family and config, when the lineage or the candidate has no digest), or None (not its teacher)."""
    parent = (lineage or {}).get("teacher") if isinstance(lineage, dict) else None
    if not isinstance(parent, dict):
        return None
    recorded = parent.get("weights_sha256")
    if recorded and weights_sha256:  # both known: the digest decides (a retrained teacher keeps its config)
        return "sha256" if recorded == weights_sha256 else None
    if parent.get("family") == family and config is not None and parent.get("config") == config:
        return "config"
    return None


def _pairs(students: Sequence, candidates: Sequence) -> dict[int, tuple[int, str]]:
    """student index -> (teacher index, how): a teacher its recorded weights digest names first, else by config.

    students / candidates: (lineage, family, config, weights_sha256) per model; a model is never its own teacher."""
    out = {}
    for i, (lineage, *_) in enumerate(students):
        found = [(j, paired_by(lineage, *candidate[1:])) for j, candidate in enumerate(candidates) if j != i]
        for how in ("sha256", "config"):
            match = next((j for j, h in found if h == how), None)
            if match is not None:
                out[i] = (match, how)
                break
    return out


def _described(model: nn.Module) -> tuple:
    return (getattr(model, "lineage", None), model.family, model.config.to_dict(),
            getattr(model, "weights_sha256", None))


def find_teachers(models: Sequence[nn.Module]) -> dict[int, int]:
    """student index -> teacher index, for every model whose recorded teacher is in ``models`` (see `teacher_pairs`)."""
    return {i: j for i, (j, _) in teacher_pairs(models).items()}


def teacher_pairs(models: Sequence[nn.Module]) -> dict[int, tuple[int, str]]:
    """student index -> (teacher index, "sha256" or "config"): the teacher weights a student's lineage records pick
    its teacher; family + config only where the lineage or the candidate carries no digest."""
    described = [_described(m) for m in models]
    return _pairs(described, described)


def attach_speedups(results: list[dict]) -> list[dict]:
    """Add ``teacher`` and ``speedup`` (with ``paired_by``) to each profile() result whose lineage names another
    result as teacher."""
    described = [(r.get("lineage"), r.get("family"), r.get("config"), r.get("weights_sha256")) for r in results]
    for i, (j, how) in _pairs(described, described).items():
        results[i]["teacher"] = results[j]["model"]
        results[i]["speedup"] = {**speedup(results[j], results[i]), "paired_by": how}
    return results
