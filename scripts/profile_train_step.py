#!/usr/bin/env python
"""Where a GAN training step spends its time: torch.profiler over a few steps, the top kernels printed.

  python scripts/profile_train_step.py --family stylegan2 --base-channels 64 --batch-size 256 --device cuda --amp

Why: on one H200 (2026-12-04) the base-64 StyleGAN2 teacher trained at ~1,400 img/s per process (four
processes sharing the GPU) and its generator ran inference at only 5,400 img/s at batch 256 (~3 TFLOP/s), far
below the chip; nobody has seen which kernels take the time. This measures one process alone: img/s of
G forward, and of a full G+D step (forward and backward of both, no optimizer), with cudnn.benchmark off and
on, then the profiler's table of the heaviest operators. Runs on the CPU too (for a rehearsal).
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from gandistill.losses import ADVERSARIAL
from gandistill.models import build_discriminator, build_generator


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(G, D, z, real, amp: bool, device: torch.device, backward: bool = True):
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else contextlib.nullcontext()
    adv = ADVERSARIAL.get("nonsat")
    with ctx:
        fake = G(z)
        d_loss = adv(D(fake.detach()), D(real))
        g_loss = adv(D(fake))
    if backward:
        (d_loss + g_loss).backward()


def timed(fn, runs: int, device: torch.device) -> float:
    for _ in range(3):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="stylegan2", choices=("dcgan", "stylegan2"))
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cuda")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    G = build_generator(args.family, base_channels=args.base_channels).to(device).train()
    D = build_discriminator(args.family, base_channels=args.base_channels).to(device).train()
    z = torch.randn(args.batch_size, G.z_dim, device=device)
    real = torch.rand(args.batch_size, 1, 32, 32, device=device) * 2 - 1
    print(f"{args.family} base {args.base_channels}, batch {args.batch_size}, {device}, amp={args.amp}")
    for bench in ([False, True] if device.type == "cuda" else [False]):
        torch.backends.cudnn.benchmark = bench
        with torch.no_grad():
            g_fwd = timed(lambda: G(z), args.runs, device)
        full = timed(lambda: step(G, D, z, real, args.amp, device), args.runs, device)
        print(f"cudnn.benchmark={bench}: G forward {args.batch_size / g_fwd:,.0f} img/s ({g_fwd * 1e3:.1f} ms), "
              f"G+D step {args.batch_size / full:,.0f} img/s ({full * 1e3:.1f} ms)", flush=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            step(G, D, z, real, args.amp, device)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
