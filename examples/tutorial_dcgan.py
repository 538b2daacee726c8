"""Train a generator in the PyTorch DCGAN tutorial's layout and save it the way that tutorial does.

This stands in for "a checkpoint a user brings": an ``nn.Sequential`` named ``main`` (ConvT-BN-ReLU blocks, a
bias-free image layer, tanh), z given as [N, nz, 1, 1], trained with the tutorial's recipe (BCE, Adam 2e-4,
betas (0.5, 0.999), N(0, 0.02) weights), saved as ``{"epoch": ..., "netG_state_dict": ...}`` with no discriminator, so that
``gandistill import`` sees a generator-only teacher. The data is Fashion-MNIST at 64x64 with the gray channel
repeated three times (the only image set on an offline machine). docs/importing.md shows the commands that
then import, distill, evaluate and export it.

    python examples/tutorial_dcgan.py --steps 1000 --out runs/byo/netG.pth
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn


class TutorialGenerator(nn.Module):
    """64x64: z [N, nz, 1, 1] -> ngf*8 at 4 px -> ngf*4 -> ngf*2 -> ngf -> nc at 64 px."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        blocks, prev = [], nz
        for i, mult in enumerate((8, 4, 2, 1)):
            blocks += [nn.ConvTranspose2d(prev, ngf * mult, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
            prev = ngf * mult
        self.main = nn.Sequential(*blocks, nn.ConvTranspose2d(prev, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def tutorial_discriminator(ndf: int = 64, nc: int = 3) -> nn.Module:
    layers, prev = [], nc
    for i, mult in enumerate((1, 2, 4, 8)):
        layers.append(nn.Conv2d(prev, ndf * mult, 4, 2, 1, bias=False))
        if i:
            layers.append(nn.BatchNorm2d(ndf * mult))
        layers.append(nn.LeakyReLU(0.2, True))
        prev = ndf * mult
    return nn.Sequential(*layers, nn.Conv2d(prev, 1, 4, 1, 0, bias=False), nn.Flatten(0))


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps of G and of D")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    p.add_argument("--out", required=True, help="the .pth file to write (refused if it exists)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        print(f"error: {out} exists; choose another --out", file=sys.stderr)
        return 1

    from gandistill.data import fashion_mnist

    torch.manual_seed(args.seed)
    images = fashion_mnist("train", args.data_root, resolution=64, channels=3).images  # uint8 [N, 3, 64, 64]
    G, D = TutorialGenerator(args.nz, args.ngf), tutorial_discriminator(args.ndf)
    G.apply(_init)
    D.apply(_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(args.batch_size), torch.zeros(args.batch_size)
    start = time.time()
    for step in range(1, args.steps + 1):
        real = images[torch.randint(len(images), (args.batch_size,))].float() / 127.5 - 1
        fake = G(torch.randn(args.batch_size, args.nz, 1, 1))
        d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = bce(D(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  d {d_loss.item():.3f}  g {g_loss.item():.3f}  "
                  f"{time.time() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    torch.save({"epoch": args.steps * args.batch_size / len(images), "netG_state_dict": G.state_dict()}, tmp)
    os.replace(tmp, out)
    print(f"wrote {out}: generator only, {sum(p.numel() for p in G.parameters()):,} params, "
          f"{args.steps} steps x {args.batch_size}, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
