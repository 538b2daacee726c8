#!/usr/bin/env python
"""Benchmarks that print a table and write JSON. Every figure that is judged is a ratio of two timings taken
in the same process, in alternating rounds (median per model), so a load change on a shared machine hits
both sides alike; absolute times are printed beside it with the machine's description.

  python scripts/bench.py                          # all sections on CPU
  python scripts/bench.py --sections distill       # one section
  python scripts/bench.py --device cuda --out bench-cuda.json

Sections:
  inference  teacher vs students (widths 0.5, 0.25, 0.125): images/s at batch 1 and 64 in each mode; the
             student's speed-up over the teacher in the same mode next to its MAC ratio (target: >= 0.7 x the
             MAC ratio at batch 64, width 0.25). Modes: eager (no_grad) and inference_mode run the generator
             module itself; all_onednn is inference_mode with the DCGAN image layer sent through oneDNN like
             every other convolution (the toolkit sends it to PyTorch's native kernel, faster for few output
             channels: models/layers.py conv_transpose_native); channels_last is the module in that memory
             format. for_inference is gandistill.for_inference(generator) under inference_mode (batch norm
             folded, first layer as a matrix product: what profile, evaluate and export run), with
             its hidden layers channels_last in for_inference_channels_last. compile is torch.compile of the
             for_inference form (reported as skipped, with the reason, when it fails or takes longer than
             --compile-timeout). onnxruntime runs the file gd.export writes (the for_inference form). Each
             mode runs in a fresh child process: a mode run before another in one process changed the
             other's speed by up to 1.5x (allocator state), and the order of --modes must not matter.
  distill    the toolkit's distill() step vs a bare loop written here with the same modules and arithmetic
             (the test suite checks that both end with bit-identical students); target toolkit / bare <= 1.10.
             Also the bare step by phase, and distill() with --channels-last.
  eval       evaluate([teacher, student w0.25]) as `gandistill eval` runs it (paired fidelity included, real-image
             statistics cached as in repeated use): images/s through each feature extractor and through the
             whole call for the same images, the rest broken down into the generators' forward passes and the
             metric formulas (FID and IS by torch-fidelity, KID by gandistill on torch-fidelity's subsets).
             Target: the whole call within 1.2 x the extractor's time.
  memory     peak RSS (CPU) / peak allocated (CUDA) of distill() at the default batch size, in a child process.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import gandistill as gd
from gandistill.checkpoint import from_pretrained, load_gan, save_gan
from gandistill.config import DistillConfig, EvalConfig
from gandistill.data import BatchSampler, load_dataset
from gandistill.losses import (
    ADVERSARIAL,
    adversarial_loss,
    disc_feature_loss,
    disc_kl_loss,
    feature_loss,
    make_adapters,
    pixel_loss,
)
from gandistill.models import DCGANInference, build_discriminator, build_generator
from gandistill.profile import count_macs, count_params
from gandistill.students import kept_channels_by_tap, make_student

WIDTHS = (0.5, 0.25, 0.125)
MODES = ("eager", "inference_mode", "all_onednn", "channels_last", "for_inference", "for_inference_channels_last",
         "compile", "onnxruntime")
TARGET_WIDTH, TARGET_BATCH, TARGET_EFFICIENCY = 0.25, 64, 0.7


def machine(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}
    with contextlib.suppress(OSError):
        info["load_avg_at_start"] = list(os.getloadavg())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def teacher_dir(path: str | None, tmp: Path) -> str:
    """The given teacher, the shipped one, or a random DCGAN of the shipped size (same arithmetic)."""
    if path:
        return path
    if Path("pretrained/dcgan-fmnist/generator").is_dir():
        return "pretrained/dcgan-fmnist"
    out = tmp / "random-teacher"
    if not out.exists():
        save_gan(build_generator("dcgan", base_channels=64), build_discriminator("dcgan", base_channels=64), out)
    return str(out)


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, min_time: float, device) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds after a warm-up call.

    Each round calls a function often enough to last ``min_time`` (calibrated on the warm-up), so cheap
    and expensive models are timed over comparable windows.
    """
    reps = {}
    for name, fn in fns.items():
        fn()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        reps[name] = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-7)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: statistics.median(t) for name, t in times.items()}


# --- inference: teacher vs students -----------------------------------------------------------------------

def inference_models(teacher_path: str, widths, device: str) -> dict[str, torch.nn.Module]:
    teacher = from_pretrained(teacher_path, "generator").to(device).eval().requires_grad_(False)
    students = {f"w{w:g}": make_student(teacher, w).to(device).eval().requires_grad_(False) for w in widths}
    return {"teacher": teacher, **students}


def _inference(model: torch.nn.Module, z: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return model(z)
    return run


def _all_onednn(model: torch.nn.Module, z: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.inference_mode(), _image_layer_through_onednn():
            return model(z)
    return run


@contextlib.contextmanager
def _image_layer_through_onednn():
    """The DCGAN generator's image layer as it ran before conv_transpose_native (oneDNN, like every conv)."""
    from gandistill.models import dcgan

    native = dcgan.conv_transpose_native
    dcgan.conv_transpose_native = lambda conv, x: conv(x)
    try:
        yield
    finally:
        dcgan.conv_transpose_native = native


def _eager(model: torch.nn.Module, z: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return model(z)
    return run


def _onnx_runners(models: dict, tmp: Path) -> dict[str, Callable[[torch.Tensor], Callable[[], object]]]:
    """name -> (z -> callable): each model exported by gd.export (checked against PyTorch), run by onnxruntime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch in this process
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    runners = {}
    for name, model in models.items():
        path = tmp / f"{name}.onnx"
        gd.export(model, "onnx", path, seed=0)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        runners[name] = functools.partial(_onnx_run, session)
    return runners


def _onnx_run(session, z: torch.Tensor) -> Callable[[], object]:
    feed = {"z": z.cpu().numpy()}
    return lambda: session.run(None, feed)


def _mode_in_child(args, teacher_path: str, mode: str) -> dict:
    """One inference mode's timings from a child process ({"batches": ...} or {"skipped": reason})."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "inference", "--modes", mode,
           "--teacher", teacher_path, "--device", args.device, "--widths", ",".join(f"{w:g}" for w in args.widths),
           "--batches", ",".join(str(b) for b in args.batches), "--rounds", str(args.rounds),
           "--min-time", str(args.min_time)]
    timeout = args.compile_timeout if mode == "compile" else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"compiling and timing took longer than --compile-timeout {args.compile_timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if mode == "compile":
            return {"skipped": f"torch.compile failed: {last[:300]}"}
        raise RuntimeError(f"inference worker for mode {mode} failed: {last}")
    return json.loads(lines[-1])


def worker_inference(args) -> dict:
    """In the child: time one mode (args.modes[0]) for every model and batch size, in alternating rounds."""
    (mode,) = args.modes
    if mode == "compile":
        return worker_compile(args)
    if mode == "onnxruntime" and torch.device(args.device).type != "cpu":
        return {"skipped": "onnxruntime runs on the CPU execution provider here"}
    models = inference_models(args.teacher, args.widths, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "onnxruntime":
            try:
                runners = _onnx_runners(models, Path(tmp))
            except ImportError as e:
                return {"skipped": f"onnxruntime not installed ({e})"}
        else:
            runners = {}
            for name, model in models.items():
                m = copy.deepcopy(model).to(memory_format=torch.channels_last) if mode == "channels_last" else model
                if mode == "for_inference":
                    m = gd.for_inference(m)
                elif mode == "for_inference_channels_last":
                    m = DCGANInference(m, channels_last=True) if m.family == "dcgan" else gd.for_inference(m)
                make = {"eager": _eager, "all_onednn": _all_onednn}.get(mode, _inference)
                runners[name] = functools.partial(make, m)
        seconds = {}
        for batch in args.batches:
            z = torch.randn(batch, models["teacher"].z_dim, device=args.device)
            seconds[str(batch)] = interleaved({name: make(z) for name, make in runners.items()}, args.rounds,
                                              args.min_time, args.device)
    return {"batches": seconds}


def worker_compile(args) -> dict:
    """In the child: per batch size, compile every model (static shapes) and time it against inference_mode."""
    import torch._dynamo

    for knob in ("recompile_limit", "cache_size_limit"):  # one entry per model and batch size, all one class
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    models = inference_models(args.teacher, args.widths, args.device)
    out: dict = {"compile_s": {}, "batches": {}, "inference_mode_same_process_img_s": {}}
    for batch in args.batches:
        z = torch.randn(batch, models["teacher"].z_dim, device=args.device)
        fns, plain = {}, {}
        for name, model in models.items():
            compiled = torch.compile(gd.for_inference(model), dynamic=False)
            t0 = time.perf_counter()
            _inference(compiled, z)()
            sync(args.device)
            out["compile_s"][f"{name}@{batch}"] = time.perf_counter() - t0  # small when inductor's cache is warm
            fns[name], plain[f"{name}/plain"] = _inference(compiled, z), _inference(model, z)
        seconds = interleaved({**fns, **plain}, args.rounds, args.min_time, args.device)
        out["batches"][str(batch)] = {name: seconds[name] for name in fns}
        out["inference_mode_same_process_img_s"][str(batch)] = {name: batch / seconds[f"{name}/plain"]
                                                                for name in fns}
    return out


def section_inference(args, tmp: Path) -> dict:
    teacher_path = teacher_dir(args.teacher, tmp)
    models = inference_models(teacher_path, args.widths, args.device)
    macs = {name: count_macs(m) for name, m in models.items()}
    result: dict = {
        "teacher": teacher_path, "batches": args.batches,
        "models": {name: {"params": count_params(m), "macs": macs[name], "mac_ratio": macs["teacher"] / macs[name]}
                   for name, m in models.items()},
        "modes": {},
    }
    for mode in args.modes:
        print(f"[bench] inference: {mode}", file=sys.stderr)
        # each mode in a fresh process: one mode's allocations change the next one's speed (measured: w0.25
        # for_inference 12,992 img/s alone, 8,629 after all_onednn in the same process)
        child = _mode_in_child(args, teacher_path, mode)
        if "skipped" in child:
            result["modes"][mode] = child
            continue
        seconds = child.pop("batches")
        result["modes"][mode] = {
            "batches": {b: {name: {"img_s": int(b) / s, "ms_per_call": s * 1e3,
                                   "speedup": per["teacher"] / s,
                                   "efficiency": per["teacher"] / s / result["models"][name]["mac_ratio"]}
                            for name, s in per.items()}
                        for b, per in seconds.items()}, **child}
    target = f"w{TARGET_WIDTH:g}"
    if target in result["models"]:
        eff = {mode: r["batches"][str(TARGET_BATCH)][target]["efficiency"] for mode, r in result["modes"].items()
               if "batches" in r and str(TARGET_BATCH) in r["batches"]}
        result["target"] = {"model": target, "batch": TARGET_BATCH, "min_efficiency": TARGET_EFFICIENCY,
                            "efficiency": eff, "met_in": [m for m, e in eff.items() if e >= TARGET_EFFICIENCY]}
    return result


# --- distill: toolkit vs bare loop -----------------------------------------------------------------------

class BareDistill:
    """distill()'s arithmetic for its default terms (pixel, feature, disc_feature, disc_kl, adversarial, EMA)
    as a plain loop: same modules, seeds, order of operations; no logging, checks or state."""

    PHASES = ("teacher", "student + losses", "backward + G step", "D step", "EMA")

    def __init__(self, cfg: DistillConfig):
        assert cfg.perceptual == 0 and cfg.class_kl == 0 and cfg.adversarial > 0 and cfg.data != "none"
        assert cfg.lr_schedule == "constant", "the bare loop keeps the learning rates constant"
        self.cfg, self.device = cfg, torch.device(cfg.device)
        torch.manual_seed(cfg.seed * 1000)
        self.teacher, teacher_d = load_gan(cfg.teacher, map_location=cfg.device)
        self.teacher.eval().requires_grad_(False)
        self.student = make_student(self.teacher, cfg.width, cfg.init, seed=cfg.seed).to(self.device).train()
        for g in (self.teacher, self.student):
            if hasattr(g, "set_noise_mode"):
                g.set_noise_mode("const")
        self.ema = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.d_kd = teacher_d.eval().requires_grad_(False)
        self.d = copy.deepcopy(teacher_d).to(self.device).train().requires_grad_(True)
        with torch.no_grad():
            probe = torch.zeros(2, self.teacher.z_dim, device=self.device)
            _, t_probe = self.teacher.forward_features(probe)
            _, s_probe = self.student.eval().forward_features(probe)  # eval: batch-norm statistics stay
            self.student.train()
        self.adapters = make_adapters(s_probe, t_probe, list(self.teacher.distill_taps),
                                      kept_channels_by_tap(self.student)).to(self.device)
        self.data = load_dataset(cfg.data, cfg.split, cfg.data_root, self.teacher.config.resolution,
                                 self.teacher.config.channels)
        self.sampler = BatchSampler(len(self.data), cfg.batch_size, cfg.seed)
        self.opt_g = torch.optim.Adam([*self.student.parameters(), *self.adapters.parameters()], lr=cfg.g_lr,
                                      betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2))
        if cfg.channels_last:
            for m in (self.teacher, self.student, self.d, self.d_kd, self.ema):
                m.to(memory_format=torch.channels_last)
        self.z_gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 17)
        self.step = 0

    def run(self, steps: int, phases: dict[str, float] | None = None) -> float:
        """Seconds per step over ``steps`` steps; with ``phases``, adds each phase's seconds to it."""
        cfg, dev = self.cfg, self.device
        adv = ADVERSARIAL.get(cfg.adv_loss)

        def tick(name: str, t0: float) -> float:
            if phases is None:
                return t0
            sync(dev)
            t = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + t - t0
            return t

        sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            t = time.perf_counter()
            z = torch.randn(cfg.batch_size, self.teacher.z_dim, device=dev, generator=self.z_gen)
            with torch.no_grad():
                t_img, t_feats = self.teacher.forward_features(z)
                t_dlogits, t_dfeats = self.d_kd.forward_features(t_img)
            t = tick("teacher", t)
            # the terms in distill()'s order: gradients reaching s_img are summed in the order of the graph
            s_img, s_feats = self.student.forward_features(z)
            pixel = pixel_loss(s_img, t_img, cfg.pixel_kind)
            feature = feature_loss(s_feats, t_feats, self.adapters, cfg.feature_kind)
            s_dlogits, s_dfeats = self.d_kd.forward_features(s_img)
            disc_feature = disc_feature_loss(s_dfeats, t_dfeats)
            disc_kl = disc_kl_loss(s_dlogits, t_dlogits, cfg.kl_temperature)
            self.d.requires_grad_(False)
            adversarial = adversarial_loss(self.d(s_img), cfg.adv_loss)
            self.d.requires_grad_(True)
            total = (0 + cfg.pixel * pixel + cfg.feature * feature + cfg.disc_feature * disc_feature
                     + cfg.disc_kl * disc_kl + cfg.adversarial * adversarial)
            real = self.data.batch(self.sampler.next(), dev)
            d_loss = adv(self.d(s_img.detach()), self.d(real))
            t = tick("student + losses", t)
            self.opt_g.zero_grad(set_to_none=True)
            total.backward()
            self.opt_g.step()
            t = tick("backward + G step", t)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            t = tick("D step", t)
            self.step += 1
            with torch.no_grad():
                decay = min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
                torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.student.parameters()],
                                     1.0 - decay)
                for b_ema, b in zip(self.ema.buffers(), self.student.buffers(), strict=True):
                    b_ema.copy_(b)
            tick("EMA", t)
        sync(dev)
        return (time.perf_counter() - start) / max(steps, 1)


def toolkit_distill_step(cfg: DistillConfig, steps: int, out: Path) -> float:
    """Seconds per step of distill() itself, from its own log: a warm-up interval of ``steps`` steps, then
    one measured interval of ``steps`` steps (everything in the loop counts: checks, logging, EMA)."""
    gd.distill(cfg.replace(out=str(out), steps=2 * steps, log_every=steps, checkpoint_every=10**9, sample_every=0))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [steps, 2 * steps], records
    return cfg.batch_size / records[1]["img_per_s"]


def section_distill(args, tmp: Path) -> dict:
    cfg = DistillConfig(teacher=teacher_dir(args.teacher, tmp), width=TARGET_WIDTH, batch_size=args.batch_size,
                        data=args.data, device=args.device, lr_schedule="constant")
    rounds = max(1, min(args.distill_rounds, args.steps))
    per_round = max(1, args.steps // rounds)
    bare = BareDistill(cfg)
    bare.run(min(3, per_round))  # warm-up
    runs = {"bare": lambda r: bare.run(per_round),
            "toolkit": lambda r: toolkit_distill_step(cfg, per_round, tmp / f"toolkit-{r}")}
    if args.distill_channels_last:
        runs["toolkit_channels_last"] = lambda r: toolkit_distill_step(cfg.replace(channels_last=True), per_round,
                                                                       tmp / f"toolkit-cl-{r}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        print(f"[bench] distill: round {r + 1}/{rounds}", file=sys.stderr)
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):  # alternate the order: drift cancels
            times[name].append(runs[name](r))
    phases: dict[str, float] = {}
    bare.run(per_round, phases)
    ratios = [t / b for t, b in zip(times["toolkit"], times["bare"], strict=True)]
    result = {"teacher": cfg.teacher, "width": cfg.width, "batch_size": cfg.batch_size, "steps": per_round * rounds,
              "rounds": rounds, "bare_s_per_step": statistics.median(times["bare"]),
              "toolkit_s_per_step": statistics.median(times["toolkit"]), "ratio": statistics.median(ratios),
              "ratio_per_round": ratios, "target": 1.10,
              "bare_phases_s": {k: phases.get(k, 0.0) / per_round for k in BareDistill.PHASES}}
    result["toolkit_img_s"] = cfg.batch_size / result["toolkit_s_per_step"]
    if "toolkit_channels_last" in times:
        result["toolkit_channels_last_s_per_step"] = statistics.median(times["toolkit_channels_last"])
        result["channels_last_speedup"] = statistics.median(
            [t / c for t, c in zip(times["toolkit"], times["toolkit_channels_last"], strict=True)])
    return result


# --- eval: extractor forward vs the whole evaluate() call -------------------------------------------------

@contextlib.contextmanager
def _cache_in(path: Path):
    """Real-image statistics go to a throw-away cache for the bench (the user's cache is left alone)."""
    old = os.environ.get("GANDISTILL_CACHE")
    os.environ["GANDISTILL_CACHE"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GANDISTILL_CACHE", None)
        else:
            os.environ["GANDISTILL_CACHE"] = old


def section_eval(args, tmp: Path) -> dict:
    """evaluate([teacher, student]) as `gandistill eval teacher student` runs it (paired fidelity included)."""
    from gandistill import metrics as M

    teacher_path = teacher_dir(args.teacher, tmp)
    teacher = from_pretrained(teacher_path, "generator").to(args.device).eval()
    generators = {"teacher": teacher, f"w{TARGET_WIDTH:g}": make_student(teacher, TARGET_WIDTH).to(args.device).eval()}
    out: dict = {"generators": list(generators), "teacher": teacher_path, "batch_size": EvalConfig.batch_size,
                 "metrics": list(EvalConfig.metrics)}
    for name, n in (("fmnist-cnn", args.eval_samples), ("inception", args.eval_inception_samples)):
        if n <= 0:
            out[name] = {"skipped": "sample count set to 0"}
            continue
        print(f"[bench] eval: {name}, {n} images per generator", file=sys.stderr)
        try:  # may convert the Inception weights once, into the user's cache (as evaluate() would)
            weights = M.resolve_extractor(name)[1]
        except (FileNotFoundError, ValueError) as e:
            out[name] = {"skipped": str(e)}
            continue
        with _cache_in(tmp / "eval-cache"):
            out[name] = _eval_extractor(args, name, weights, n, generators)
    return out


def _eval_extractor(args, name: str, weights, n: int, generators: dict[str, torch.nn.Module]) -> dict:
    from gandistill import metrics as M

    spec = M.EXTRACTORS.get(name)
    bs, device = EvalConfig.batch_size, args.device
    wanted = [m for m in EvalConfig.metrics if m != "is" or weights.has_logits]
    layers = [spec.layer("fid")] + ([spec.layer("isc")] if "is" in wanted else [])
    extractor = M.make_extractor(name, weights, layers, device)
    first = next(iter(generators.values()))
    z = M.latents(n, first.z_dim, 0)
    paired = min(EvalConfig.paired, n)

    @torch.no_grad()
    def generate() -> list[torch.Tensor]:  # through for_inference, as evaluate() generates
        served = [M.ToUint8RGB(M.for_inference(g)) for g in generators.values()]
        return [torch.cat([s(z[i:i + bs].to(device)).cpu() for i in range(0, n, bs)]) for s in served]

    images = generate()
    protocol = {"dataset": args.data, "split": EvalConfig.split, "extractor": name, "weights_sha256": weights.sha256}
    real = M.real_images(args.data, EvalConfig.split, n, first.config.resolution, first.config.channels)
    real_feats, real_stats, _ = M.real_features(real, protocol, extractor, spec.layer("fid"), bs, device)
    fakes = [M.extract_features(x, extractor, bs, device) for x in images]
    fns = {
        "generators": generate,
        "extractor": lambda: [M.extract_features(x, extractor, bs, device) for x in images],
        "metric formulas": lambda: [M._scores(f, real_feats, real_stats, wanted, spec, n, 0, memo)
                                    for memo in [{}] for f in fakes],  # real-real KID sums shared, as in evaluate()
        "evaluate": lambda: M.evaluate(list(generators.values()), dataset=args.data, extractor=name, num_samples=n,
                                       batch_size=bs, device=device, extractor_weights=weights.path, paired=paired,
                                       names=list(generators)),
    }
    seconds = interleaved(fns, args.eval_rounds, 0.0, device)
    images_total = n * len(generators)
    core = seconds["extractor"] + seconds["generators"] + seconds["metric formulas"]
    return {"num_samples": n, "paired": paired, "metrics": wanted, "seconds": seconds,
            "extractor_img_s": images_total / seconds["extractor"],
            "generators_img_s": images_total / seconds["generators"],
            "evaluate_img_s": images_total / seconds["evaluate"],
            "ratio": seconds["evaluate"] / seconds["extractor"], "overhead_ratio": seconds["evaluate"] / core,
            "rest_s": seconds["evaluate"] - core, "target": 1.2}


# --- memory ----------------------------------------------------------------------------------------------

def _rss_mib() -> dict[str, float]:
    """Current and peak resident set size of this process, from /proc (ru_maxrss would count the parent's
    pages: Linux carries it across fork and exec)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def worker_memory(args) -> dict:
    """In the child: distill() at the default batch size; the peak RSS of this process (and CUDA's peak)."""
    before = _rss_mib()["VmRSS"]
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        gd.distill(teacher=args.teacher, out=str(Path(tmp) / "mem"), steps=args.steps, data=args.data,
                   batch_size=DistillConfig.batch_size, device=args.device, sample_every=0, checkpoint_every=10**9)
    result = {"batch_size": DistillConfig.batch_size, "steps": args.steps, "rss_after_imports_mib": before,
              "peak_rss_mib": _rss_mib()["VmHWM"]}
    if torch.device(args.device).type == "cuda":
        result["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def section_memory(args, tmp: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "memory", "--teacher",
           teacher_dir(args.teacher, tmp), "--device", args.device, "--data", args.data,
           "--steps", str(min(args.steps, 5))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SECTIONS = {"inference": section_inference, "distill": section_distill, "eval": section_eval,
            "memory": section_memory}


# --- output ----------------------------------------------------------------------------------------------

def print_table(results: dict) -> None:
    m = results["machine"]
    load = f", load average {m['load_avg_at_start'][0]:.2f} at start" if "load_avg_at_start" in m else ""
    print(f"\nmachine: {m['cpu']} ({m['cores']} cores), {m['threads']} torch threads, torch {m['torch']}"
          + (f", {m['gpu']}" if "gpu" in m else "") + load)
    if "inference" in results:
        r = results["inference"]
        names = list(r["models"])
        print(f"\ninference, device {m['device']}: images/s (speed-up over the teacher in the same mode)")
        print(f"{'MACs/img':<24}" + "".join(f"{r['models'][n]['macs'] / 1e6:>19.2f}M" for n in names))
        print(f"{'MAC ratio':<24}" + "".join(f"{r['models'][n]['mac_ratio']:>19.1f}x" for n in names))
        print(f"{'mode':<16}{'batch':>8}" + "".join(f"{n:>20}" for n in names))
        for mode, res in r["modes"].items():
            if "skipped" in res:
                print(f"{mode:<16}{'':>8}  skipped: {res['skipped']}")
                continue
            for b, per in res["batches"].items():
                cells = [f"{per[n]['img_s']:>11.0f} ({per[n]['speedup']:>4.1f}x)" for n in names]
                print(f"{mode:<16}{b:>8}" + "".join(f"{c:>20}" for c in cells))
        if "target" in r:
            t = r["target"]
            effs = ", ".join(f"{mode} {e:.2f}" for mode, e in t["efficiency"].items())
            print(f"{t['model']} at batch {t['batch']}: speed-up / MAC ratio = {effs} (target >= {t['min_efficiency']}"
                  f"; met in: {', '.join(t['met_in']) or 'none'})")
    if "distill" in results:
        r = results["distill"]
        print(f"\ndistill step, width {r['width']:g}, batch {r['batch_size']}, {r['steps']} steps in {r['rounds']} "
              f"rounds{'':<2}{'s/step':>10}{'img/s':>10}")
        rows = [("bare loop", r["bare_s_per_step"]), ("gandistill.distill", r["toolkit_s_per_step"])]
        if "toolkit_channels_last_s_per_step" in r:
            rows.append(("gandistill.distill --channels-last", r["toolkit_channels_last_s_per_step"]))
        for label, s in rows:
            print(f"{label:<54}{s:>10.4f}{r['batch_size'] / s:>10.1f}")
        print(f"{'ratio toolkit / bare (target <= 1.10)':<54}{r['ratio']:>10.3f}")
        if "channels_last_speedup" in r:
            print(f"{'speed-up from --channels-last':<54}{r['channels_last_speedup']:>10.3f}")
        for phase, s in r["bare_phases_s"].items():
            print(f"  bare: {phase:<46}{s:>10.4f}")
    if "eval" in results:
        r = results["eval"]
        print(f"\nevaluate({', '.join(r['generators'])}), metrics {', '.join(r['metrics'])}, batch {r['batch_size']}, "
              "real statistics cached")
        for name in ("fmnist-cnn", "inception"):
            e = r.get(name)
            if e is None:
                continue
            if "skipped" in e:
                print(f"  {name}: skipped: {e['skipped']}")
                continue
            s = e["seconds"]
            print(f"  {name}, {e['num_samples']} images per generator, paired fidelity on {e['paired']}: extractor "
                  f"{e['extractor_img_s']:.0f} img/s, generators {e['generators_img_s']:.0f} img/s, whole "
                  f"evaluate() {e['evaluate_img_s']:.0f} img/s")
            print(f"    seconds: extractor {s['extractor']:.2f}, generators {s['generators']:.2f}, metric formulas "
                  f"{s['metric formulas']:.2f}, rest {e['rest_s']:.2f}; whole evaluate() {s['evaluate']:.2f}")
            print(f"    whole / extractor = {e['ratio']:.2f} (target <= 1.2); whole / (extractor + generators + "
                  f"metric formulas) = {e['overhead_ratio']:.2f}")
    if "memory" in results:
        r = results["memory"]
        print(f"\nmemory, distill at batch {r['batch_size']}: peak RSS {r['peak_rss_mib']:.0f} MiB (after imports "
              f"{r['rss_after_imports_mib']:.0f} MiB)"
              + (f", peak CUDA allocated {r['peak_allocated_mib']:.0f} MiB" if "peak_allocated_mib" in r else ""))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--teacher", help="teacher GAN directory (default: pretrained/dcgan-fmnist, else a random "
                                          "DCGAN of the same size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="fashion-mnist", help="dataset of distill's real images and eval's "
                                                                "real statistics")
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--rounds", type=int, default=5, help="inference: alternating timing rounds (medians)")
    parser.add_argument("--min-time", type=float, default=0.5, help="inference: seconds per model per round")
    parser.add_argument("--widths", type=_floats, default=WIDTHS, help="student widths, comma-separated")
    parser.add_argument("--batches", type=_ints, default=(1, TARGET_BATCH), help="inference batch sizes")
    parser.add_argument("--modes", default=",".join(MODES), help="inference modes: " + ", ".join(MODES))
    parser.add_argument("--compile-timeout", type=float, default=600, help="seconds for the torch.compile child")
    parser.add_argument("--batch-size", type=int, default=64, help="distill batch size")
    parser.add_argument("--steps", type=int, default=30, help="distill: timed steps per measurement")
    parser.add_argument("--distill-rounds", type=int, default=6, help="distill: rounds the steps are split into")
    parser.add_argument("--distill-channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="also time distill() with --channels-last")
    parser.add_argument("--eval-samples", type=int, default=2000, help="eval: images per generator, fmnist-cnn")
    parser.add_argument("--eval-inception-samples", type=int, default=32,
                        help="eval: images per generator through Inception (~0.2 s each on a CPU core; 0 skips)")
    parser.add_argument("--eval-rounds", type=int, default=2)
    parser.add_argument("--worker", choices=("inference", "memory"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in args.modes if m not in MODES]:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.worker:
        work = {"inference": worker_inference, "memory": worker_memory}[args.worker]
        print(json.dumps(work(args)))
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    results = {"machine": machine(args.device),
               "args": {k: v for k, v in vars(args).items() if k != "worker"}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sections:
            print(f"[bench] {name} ...", file=sys.stderr)
            results[name] = SECTIONS[name](args, Path(tmp))
    with contextlib.suppress(OSError):
        results["machine"]["load_avg_at_end"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
