"""The command line: thin. Parses, calls the API with the same parameter names, prints.

Flags of ``train`` and ``distill`` are generated from the config dataclasses, so the API and the CLI
share one set of names and defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from .config import DistillConfig, TrainConfig

FIELD_HELP = {
    "out": "output run directory",
    "family": "model family",
    "resolution": "image size (32 or 64)",
    "channels": "image channels (1 or 3)",
    "base_channels": "channels of the narrowest hidden layer at width 1",
    "width": "width multiplier of every hidden layer, in (0, 1]",
    "d_width": "the discriminator's width multiplier",
    "data": "dataset name (for distill also 'none': data-free, teacher images count as real)",
    "data_root": "folder holding the dataset (default: search $GANDISTILL_DATA, then system folders)",
    "split": "dataset split to train on",
    "holdout": "keep the last N images of the split out of training (for checkpoint selection)",
    "steps": "optimizer steps in total (a resumed run continues up to this)",
    "batch_size": "images per step (per process under torchrun)",
    "g_lr": "generator/student learning rate",
    "d_lr": "discriminator learning rate",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "loss": "adversarial loss",
    "r1_gamma": "lazy R1 penalty weight on real images (0 = off)",
    "r1_every": "apply R1 every N steps",
    "ema": "keep an exponential moving average of the generator and save it",
    "ema_decay": "EMA decay per step",
    "seed": "random seed",
    "device": "cpu or cuda",
    "amp": "bf16 autocast (CUDA only)",
    "channels_last": "channels_last memory format",
    "checkpoint_every": "write the resumable state every N steps",
    "snapshot_every": "save a copy of the generator every N steps (0 = never)",
    "sample_every": "write a sample grid every N steps (0 = never)",
    "log_every": "write a log.jsonl record every N steps",
    "max_bad_steps": "non-finite steps in a row before reloading the last good state with halved learning rates",
    "resume": "continue the run in --out from its state.pt",
    "teacher": "teacher: a GAN directory (generator/ + discriminator/) or a generator directory",
    "init": "how the student inherits the teacher: l1 (largest filters), prefix (first k) or random",
    "pixel": "weight of the pixel loss (student vs teacher image)",
    "pixel_kind": "pixel loss: l1, mse or l1+mse",
    "feature": "weight of the generator-feature loss (1x1 adapters)",
    "disc_feature": "weight of the discriminator-feature L1 loss",
    "perceptual": "weight of the perceptual loss (needs --classifier)",
    "disc_kl": "weight of the discriminator-logit KL",
    "kl_temperature": "temperature of the discriminator-logit KL",
    "class_kl": "weight of the class-logit KL (needs --classifier)",
    "class_alpha": "class_kl: weight of the hard-label cross-entropy",
    "class_temperature": "class_kl: softmax temperature",
    "adversarial": "weight of the adversarial term",
    "adv_loss": "adversarial loss",
    "classifier": "classifier directory for perceptual / class_kl (e.g. pretrained/fmnist-cnn)",
}
CHOICES = {
    "family": ("dcgan", "stylegan2"),
    "loss": ("hinge", "nonsat", "lsgan"),
    "adv_loss": ("hinge", "nonsat", "lsgan"),
    "init": ("l1", "prefix", "random"),
    "pixel_kind": ("l1", "mse", "l1+mse"),
    "split": ("train", "test"),
}


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per dataclass field, with the dataclass default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kw: dict = {"dest": f.name, "default": f.default, "help": FIELD_HELP.get(f.name, f.name)}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            kw["type"] = base
            kw["metavar"] = f.name.upper()
            if f.name in CHOICES:
                kw["choices"] = CHOICES[f.name]
        kw["help"] += " (default: %(default)s)"
        parser.add_argument(flag, **kw)


def config_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gandistill",
        description="Compress GAN generators by knowledge distillation: train, distill, evaluate, export.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="family, config, params, MACs and lineage of a saved model")
    p.add_argument("path", help="a model directory or a GAN directory")

    p = sub.add_parser("train", help="train a GAN from scratch (teachers, baselines)")
    add_config_flags(p, TrainConfig)

    p = sub.add_parser("distill", help="distill a narrower student from a teacher generator")
    add_config_flags(p, DistillConfig)
    return parser


def _cmd_info(args) -> int:
    from .checkpoint import from_pretrained, read_config, resolve_model_dir
    from .profile import count_macs, count_params

    directory = resolve_model_dir(args.path)
    meta = read_config(directory)
    model = from_pretrained(directory, meta["kind"])
    print(f"path:      {directory}")
    print(f"family:    {meta['family']} ({meta['kind']})")
    print(f"config:    {', '.join(f'{k}={v}' for k, v in meta['config'].items())}")
    print(f"params:    {count_params(model):,}")
    if meta["kind"] == "generator":
        print(f"MACs:      {count_macs(model):,} per image")
    lineage = meta.get("lineage")
    if lineage:
        teacher = lineage["teacher"]
        print(f"lineage:   student of a {teacher['family']} teacher "
              f"(base_channels={teacher['config'].get('base_channels')}, width={teacher['config'].get('width')}), "
              f"width x{lineage['width']}, init={lineage['init']}")
        for group, idx in lineage.get("kept_channels", {}).items():
            shown = ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")
            print(f"  kept {group}: {len(idx)} channels [{shown}]")
    else:
        print("lineage:   none (not a distilled student)")
    return 0


def _cmd_train(args) -> int:
    from .train import train

    result = train(config_from_args(TrainConfig, args))
    return _report_run(result, "generator")


def _cmd_distill(args) -> int:
    from .train import distill

    result = distill(config_from_args(DistillConfig, args))
    return _report_run(result, "student")


def _report_run(result, what: str) -> int:
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}; state saved in {result.out}/state.pt - rerun with --resume",
              file=sys.stderr)
        return 130
    print(f"done: {result.step} steps; {what} in {result.out / what}"
          + (f"; {result.bad_steps} non-finite steps skipped" if result.bad_steps else ""))
    return 0


COMMANDS = {"info": _cmd_info, "train": _cmd_train, "distill": _cmd_distill}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        if args.debug:
            raise
        print(f"gandistill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, OSError) as e:
        if args.debug:
            raise
        print(f"gandistill {args.command}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) and _is_usage(e) else 1


def _is_usage(e: ValueError) -> bool:
    # config validation errors name a field: those are usage errors
    return getattr(e, "usage", False)


if __name__ == "__main__":
    sys.exit(main())
