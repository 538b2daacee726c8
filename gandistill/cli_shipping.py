"""The commands that ship a model into pretrained/: ``select-teacher`` and ``card`` (gandistill/shipping.py)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub) -> None:
    from .shipping import FASHION_MNIST

    p = sub.add_parser("select-teacher", help="pick a teacher snapshot by FID on the held-out TRAIN images of a "
                                              "`train --holdout` run (never the test split); write it as a GAN "
                                              "directory with selection.json")
    p.add_argument("--run", required=True, help="a gandistill train run directory with snapshots/")
    p.add_argument("--out", required=True, help="GAN directory to write the selected teacher to")
    p.add_argument("--num", type=int, default=5000, help="generated images per snapshot (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and the metric (default: %(default)s)")
    p.add_argument("--min-step", dest="min_step", type=int, default=0,
                   help="score only snapshots from this step on (early ones are far behind and cost time)")
    p.add_argument("--last", type=int, default=0, help="score only the N latest snapshots (0 = all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where snapshots draw and features run")

    p = sub.add_parser("card", help="write a shipped directory's README.md card from what can be measured: "
                                    "params, MACs, sha256, the selection, eval JSONs")
    p.add_argument("root", type=Path, help="the shipped directory (a GAN directory or a model directory)")
    p.add_argument("--title", required=True)
    p.add_argument("--about", default="", help="a paragraph on what the model is and how to use it")
    # not dest "command": that is the sub-command's name
    p.add_argument("--command", dest="made_by", required=True, help="the exact command that produced it")
    p.add_argument("--data", default=FASHION_MNIST, help="the training data, in words")
    p.add_argument("--steps", default="", help="steps / batch size, in words")
    p.add_argument("--wall-time", dest="wall_time", required=True, help="wall time and machine, in words")
    p.add_argument("--eval", type=Path, action="append", default=[], help="gandistill eval JSON (repeatable)")
    p.add_argument("--extra", type=Path, help="a markdown file appended before the licence")


def _cmd_select_teacher(args: argparse.Namespace) -> int:
    from .shipping import select_teacher

    sel = select_teacher(args.run, args.out, num=args.num, seed=args.seed, min_step=args.min_step, last=args.last,
                         device=args.device)
    print(f"selected {sel['selected']} ({sel['scores'][sel['selected']]:.2f}); discriminator from state step "
          f"{sel['discriminator_from_state_step']}; written {args.out}")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from .shipping import write_card

    path = write_card(args.root, args.title, args.made_by, args.wall_time, about=args.about, data=args.data,
                      steps=args.steps, evals=args.eval, extra=args.extra)
    print(f"written {path}")
    return 0


COMMANDS = {"select-teacher": _cmd_select_teacher, "card": _cmd_card}
