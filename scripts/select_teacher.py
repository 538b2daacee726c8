#!/usr/bin/env python
"""Pick a teacher checkpoint by FID on the held-out slice of the TRAIN split (never the test split).

  python scripts/select_teacher.py --run runs/teacher-dcgan-fmnist --out pretrained/dcgan-fmnist

Scores every snapshot the run kept (``snapshots/step*/``, EMA generators) with ``fid5k[fmnist-cnn]``
against the last ``--holdout`` train images (the images ``gandistill train --holdout`` kept out of
training), prints the table, and writes the best one as a GAN directory: its generator, and the
discriminator of the run's latest state (snapshots hold generators only; the step is recorded).
``selection.json`` beside it keeps every score.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gandistill.checkpoint import from_pretrained, load_state, save_gan, write_json
from gandistill.config import TrainConfig
from gandistill.data import load_dataset, to_uint8
from gandistill.metrics import image_metrics
from gandistill.models import build_discriminator
from gandistill.samples import latents


@torch.no_grad()
def generate(generator, num: int, seed: int, device: str = "cpu") -> torch.Tensor:
    generator = generator.to(device).eval()
    z = latents(num, generator.z_dim, seed).to(device)
    return torch.cat([to_uint8(generator(z[i:i + 500])).cpu() for i in range(0, num, 500)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a gandistill train run directory with snapshots/")
    parser.add_argument("--out", required=True, help="GAN directory to write the selected teacher to")
    parser.add_argument("--num", type=int, default=5000, help="generated images per snapshot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-step", type=int, default=0,
                        help="score only snapshots from this step on (early ones are far behind and cost time)")
    parser.add_argument("--last", type=int, default=0, help="score only the N latest snapshots (0 = all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where snapshots draw and features run")
    args = parser.parse_args(argv)

    run = Path(args.run)
    state = load_state(run / "state.pt")
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.holdout <= 0:
        print(f"{run}: trained without --holdout; nothing to select on but the test split, which we refuse",
              file=sys.stderr)
        return 1
    train = load_dataset(cfg.data, "train", cfg.data_root, cfg.resolution, cfg.channels)
    holdout = train.images[len(train) - cfg.holdout:]  # exactly the images training never saw
    snapshots = [p for p in sorted((run / "snapshots").glob("step*")) if int(p.name[4:]) >= args.min_step]
    if args.last > 0:
        snapshots = snapshots[-args.last:]
    if not snapshots:
        print(f"{run}/snapshots: no snapshots from step {args.min_step} on (train with --snapshot-every)",
              file=sys.stderr)
        return 1
    scores = {}
    key = None
    for snap in snapshots:
        values = image_metrics(generate(from_pretrained(snap), args.num, args.seed, args.device), holdout,
                               metrics=("fid",), seed=args.seed, device=args.device)
        key = next(iter(values))
        scores[snap.name] = values[key]
        print(f"{snap.name}: {key.replace('[', '-holdout[')} {values[key]:.2f}", flush=True)
    best = min(scores, key=scores.get)
    generator = from_pretrained(run / "snapshots" / best)
    discriminator = build_discriminator(cfg.family, cfg.model_config(discriminator=True))
    discriminator.load_state_dict(state["D"])
    out = Path(args.out)
    save_gan(generator, discriminator, out)
    write_json(out / "selection.json", {
        "run": str(run), "selected": best, "metric": f"{key} on the last {cfg.holdout} train images (held out)",
        "scores": scores, "scored_from_step": args.min_step, "discriminator_from_state_step": int(state["step"]),
        "train_config": cfg.to_dict()})
    print(f"selected {best} ({scores[best]:.2f}); discriminator from state step {state['step']}; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
