#!/usr/bin/env python
"""Benchmarks that print a table and write JSON: every figure is a ratio measured in the same process run.

  python scripts/bench.py                      # all sections on CPU
  python scripts/bench.py --sections distill   # one section
  python scripts/bench.py --device cuda --out bench-cuda.json

Sections:
  inference  teacher vs students: images/s at batch 1 and 64, eager / inference_mode / channels_last /
             torch.compile / ONNX Runtime; the student's speed-up next to its MAC ratio (target >= 0.7 x).
  distill    the toolkit's distill() step vs a bare loop with the same modules and arithmetic
             (target toolkit / bare <= 1.10), and a breakdown of the bare step by phase.
  eval       images/s through each feature extractor and through the whole evaluate() call
             (target: the whole call within 1.2 x the extractor's own forward time).
  memory     peak RSS (CPU) / peak allocated (CUDA) of distill at the default batch size.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import gandistill as gd
from gandistill.checkpoint import load_gan, save_gan
from gandistill.config import DistillConfig
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
from gandistill.models import build_discriminator, build_generator
from gandistill.students import make_student


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
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
    save_gan(build_generator("dcgan", base_channels=64), build_discriminator("dcgan", base_channels=64), out)
    return str(out)


# --- distill: toolkit vs bare loop ---------------------------------------------------------------------

def bare_distill_steps(teacher_path: str, cfg: DistillConfig, steps: int, device: str) -> tuple[float, dict]:
    """Seconds per step of a plain loop doing distill()'s arithmetic, and its per-phase breakdown."""
    teacher, teacher_d = load_gan(teacher_path, map_location=device)
    teacher.eval().requires_grad_(False)
    student = make_student(teacher, cfg.width, cfg.init).to(device).train()
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    d_kd = teacher_d.eval().requires_grad_(False)
    d = copy.deepcopy(teacher_d).train().requires_grad_(True)
    with torch.no_grad():
        _, t_probe = teacher.forward_features(torch.zeros(2, teacher.z_dim, device=device))
        _, s_probe = student.forward_features(torch.zeros(2, teacher.z_dim, device=device))
    adapters = make_adapters(s_probe, t_probe).to(device)
    data = load_dataset(cfg.data, "train", None, teacher.config.resolution, teacher.config.channels)
    sampler = BatchSampler(len(data), cfg.batch_size, 0)
    opt_g = torch.optim.Adam([*student.parameters(), *adapters.parameters()], lr=cfg.g_lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.d_lr, betas=(0.5, 0.999))
    adv = ADVERSARIAL.get(cfg.adv_loss)
    phases = dict.fromkeys(("teacher", "student+losses", "backward+step G", "D step", "EMA"), 0.0)

    def tick(name: str, t0: float) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        phases[name] += t - t0
        return t

    warmup = 3
    for i in range(steps + warmup):
        if i == warmup:
            phases = dict.fromkeys(phases, 0.0)
            start = time.perf_counter()
        t = time.perf_counter()
        z = torch.randn(cfg.batch_size, teacher.z_dim, device=device)
        with torch.no_grad():
            t_img, t_feats = teacher.forward_features(z)
            t_dl, t_df = d_kd.forward_features(t_img)
        t = tick("teacher", t)
        s_img, s_feats = student.forward_features(z)
        s_dl, s_df = d_kd.forward_features(s_img)
        d.requires_grad_(False)
        total = (cfg.pixel * pixel_loss(s_img, t_img) + cfg.feature * feature_loss(s_feats, t_feats, adapters)
                 + cfg.disc_feature * disc_feature_loss(s_df, t_df) + cfg.disc_kl * disc_kl_loss(s_dl, t_dl)
                 + cfg.adversarial * adversarial_loss(d(s_img), cfg.adv_loss))
        d.requires_grad_(True)
        t = tick("student+losses", t)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        t = tick("backward+step G", t)
        real = data.batch(sampler.next(), device)
        d_loss = adv(d(s_img.detach()), d(real))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        t = tick("D step", t)
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in student.parameters()], 0.001)
        tick("EMA", t)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    return per_step, {k: v / steps for k, v in phases.items()}


def toolkit_distill_steps(teacher_path: str, cfg: DistillConfig, steps: int, tmp: Path) -> float:
    """Seconds per step of distill() itself: the time of 2n steps minus n steps (set-up cancels out)."""
    times = []
    for n in (steps, 2 * steps):
        out = tmp / f"toolkit-{n}"
        t0 = time.perf_counter()
        gd.distill(cfg.replace(teacher=teacher_path, out=str(out), steps=n, checkpoint_every=10**9,
                               sample_every=0, log_every=50))
        times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / steps


def section_distill(args, tmp: Path) -> dict:
    teacher = teacher_dir(args.teacher, tmp)
    cfg = DistillConfig(width=0.25, batch_size=args.batch_size, data=args.data, device=args.device)
    bare, phases = bare_distill_steps(teacher, cfg, args.steps, args.device)
    toolkit = toolkit_distill_steps(teacher, cfg, args.steps, tmp)
    return {"teacher": teacher, "batch_size": cfg.batch_size, "steps": args.steps, "bare_s_per_step": bare,
            "toolkit_s_per_step": toolkit, "ratio": toolkit / bare, "target": 1.10, "bare_phases_s": phases}


# --- memory --------------------------------------------------------------------------------------------

def section_memory(args, tmp: Path) -> dict:
    teacher = teacher_dir(args.teacher, tmp)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    gd.distill(teacher=teacher, out=str(tmp / "mem"), steps=args.steps, batch_size=DistillConfig.batch_size,
               data=args.data, device=args.device, sample_every=0)
    result = {"batch_size": DistillConfig.batch_size}
    if args.device.startswith("cuda"):
        result["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    import resource

    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


SECTIONS = {"distill": section_distill, "memory": section_memory}


def print_table(results: dict) -> None:
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}" + (f", {m['gpu']}" if "gpu" in m else ""))
    if "distill" in results:
        r = results["distill"]
        print(f"\n{'distill step (batch ' + str(r['batch_size']) + ')':<36}{'s/step':>10}")
        print(f"{'bare loop':<36}{r['bare_s_per_step']:>10.4f}")
        print(f"{'gandistill.distill':<36}{r['toolkit_s_per_step']:>10.4f}")
        print(f"{'ratio toolkit / bare (target <= 1.10)':<36}{r['ratio']:>10.3f}")
        for phase, s in r["bare_phases_s"].items():
            print(f"  bare: {phase:<28}{s:>10.4f}")
    if "memory" in results:
        r = results["memory"]
        print(f"\nmemory, distill at batch {r['batch_size']}: peak RSS {r['peak_rss_mib']:.0f} MiB"
              + (f", peak CUDA {r['peak_allocated_mib']:.0f} MiB" if "peak_allocated_mib" in r else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--teacher", help="teacher GAN directory (default: pretrained/dcgan-fmnist, else a random "
                                          "DCGAN of the same size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--out", default="bench.json")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    results = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sections:
            print(f"[bench] {name} ...", file=sys.stderr)
            results[name] = SECTIONS[name](args, Path(tmp))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
