"""The command line's arguments: config flags generated from the dataclasses (one set of names and
defaults for the API and the CLI) and the way back from a recorded run to its distill command line, value
parsers, usage errors, and the output-path checks that run before a command does. gandistill/cli.py builds
the parser and runs the commands with these.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import typing
from pathlib import Path

from .config import DISTILL_BOOKKEEPING, FEATURE_KINDS, GAN_FAMILIES, LR_SCHEDULES, DistillConfig

FIELD_HELP = {
    "out": "output run directory",
    "family": "model family",
    "resolution": "image size (32 or 64)",
    "channels": "image channels (1 or 3)",
    "base_channels": "channels of the narrowest hidden layer at width 1 (stylegan2: at the output resolution, doubling "
                     "below it up to 4x)",
    "width": "width multiplier of every hidden layer, in (0, 1]",
    "widths": "per-block widths instead of one width, lowest resolution first, comma-separated: factors of the "
              "teacher's channels (0.5) or channel counts (16), e.g. 0.5,16,0.5 (`gandistill info TEACHER` lists "
              "the blocks)",
    "macs": "a MACs-per-image budget instead of a width: 1.5M, 250k, 1500000, or 10x (ten times fewer than the "
            "teacher); the per-block widths are picked for it and printed",
    "balance": "with --macs: how the budget is shared, 0 = one uniform width, 1 = cheap blocks kept whole and the "
               "dear ones narrowed, negative = the other way (gandistill search measures which distils best)",
    "d_width": "the discriminator's width multiplier",
    "data": "dataset name (for distill also 'none': data-free, teacher images count as real)",
    "data_root": "folder holding the dataset (default: search $GANDISTILL_DATA, then system folders)",
    "split": "dataset split to train on",
    "holdout": "keep the last N images of the split out of training (for checkpoint selection)",
    "init_from": "GAN directory to start from: its generator and discriminator weights (the EMA starts from the "
                 "generator; optimizers and the step count start fresh), e.g. to train a shipped teacher further",
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
    "overwrite": "write into an --out that holds files this command did not make (a run there starts over)",
    "teacher": "teacher: a GAN directory (generator/ + discriminator/) or a generator directory",
    "init": "how the student inherits the teacher: l1 (largest filters), prefix (first k), random, or svs (l1 with "
            "each weight's singular values evened out)",
    "pixel": "weight of the pixel loss (student vs teacher image)",
    "pixel_kind": "pixel loss: l1, mse or l1+mse",
    "feature_kind": "feature loss per tap: mse, or relative (MSE over the teacher tap's mean square, so every tap "
                    "weighs alike whatever its scale)",
    "lr_schedule": "learning rates over the run: constant, or cosine / linear decay to 0 at --steps (a --resume "
                   "with another --steps continues on the new schedule)",
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
    "disc_batch": "how many of each batch's images go through the discriminators (disc_feature, disc_kl, "
                  "adversarial and the discriminator's own update); 0 = all. The discriminators cost most of a step "
                  "on a small student, so fewer buys more steps per second",
    "classifier": "classifier directory for perceptual / class_kl (e.g. pretrained/fmnist-cnn-b; not the network "
                  "you will judge the student with: its FID would then be meaningless, docs/evaluation.md)",
    "feature_dim": "classifier: size of the feature layer (the FID/KID tap)",
    "epochs": "passes over the training split",
    "lr": "peak learning rate (SGD, Nesterov momentum, cosine decay)",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay of conv/linear weights",
    "label_smoothing": "cross-entropy label smoothing",
    "augment": "random horizontal flips and 2-pixel shifts",
    "num_threads": "torch CPU threads (0 = torch's default)",
    "dataset": "dataset whose real images give the evaluation statistics",
    "extractor": "feature extractor for FID/KID/IS",
    "num_samples": "generated images per model for FID/KID/IS",
    "paired": "latents for PSNR/SSIM/feature distance of the student against its teacher (0 = off)",
    "export_format": "format of the exported student",
    "verbose": "print what each phase does",
}
CHOICES = {
    "family": GAN_FAMILIES,
    "loss": ("hinge", "nonsat", "lsgan"),
    "adv_loss": ("hinge", "nonsat", "lsgan"),
    "init": ("l1", "prefix", "random", "svs"),
    "pixel_kind": ("l1", "mse", "l1+mse"),
    "feature_kind": FEATURE_KINDS,
    "lr_schedule": LR_SCHEDULES,
    "split": ("train", "test"),
    "export_format": ("onnx", "torchscript", "safetensors"),
}


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit code 2) instead of the usage block and the line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def width_list(text: str) -> tuple:
    """``0.5,16,0.5`` -> (0.5, 16, 0.5): an integer token is a channel count, one with a point or exponent a factor."""
    values: list = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            values.append(int(token))
        except ValueError:
            try:
                values.append(float(token))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated factors (0.5) or channel counts (16), "
                                                 f"got {text!r}") from None
    return tuple(values)


PARSERS = {"widths": width_list}


def add_config_flags(parser: argparse.ArgumentParser, cls, help_overrides: dict[str, str] | None = None,
                     choices: dict[str, typing.Sequence[str]] | None = None,
                     exclude: typing.Collection[str] = ()) -> None:
    """One ``--flag`` per dataclass field but ``exclude``, with the dataclass default; ``choices`` adds to
    ``CHOICES``."""
    hints = typing.get_type_hints(cls)
    helps = {**FIELD_HELP, **(help_overrides or {})}
    choices = {**CHOICES, **(choices or {})}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kw: dict = {"dest": f.name, "default": f.default, "help": helps.get(f.name, f.name)}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            kw["type"] = PARSERS.get(f.name, base)
            kw["metavar"] = f.name.upper()
            if f.name in choices:
                kw["choices"] = choices[f.name]
        kw["help"] += " (default: %(default)s)"
        parser.add_argument(flag, **kw)


def config_from_args(cls, args: argparse.Namespace):
    """The config dataclass from parsed flags; its validation errors are usage errors (exit code 2)."""
    try:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
    except ValueError as e:
        raise UsageError(str(e)) from None


def distill_command_for(command: str, record: dict) -> str:
    """``command`` (the ``gandistill distill ...`` line that made a run, as run then) with a flag appended for each
    setting that today's CLI would read otherwise than the run recorded it (``record``: a student's
    ``extra.distill``; a default changed since, or a setting added later), so that the line, run today, makes the
    same run. ValueError when the line itself states a setting otherwise than the record (it did not make that
    run) or cannot be parsed. Bookkeeping (``DISTILL_BOOKKEEPING``) is left as the line has it."""
    argv = shlex.split(command)
    if argv[:2] != ["gandistill", "distill"]:
        raise ValueError(f"not a gandistill distill command: {command!r}")
    parser = _Parser(prog="gandistill distill")  # the distill sub-command's flags (its data choices aside)
    add_config_flags(parser, DistillConfig)
    try:
        args = parser.parse_args(argv[2:])
    except SystemExit:
        raise ValueError(f"today's CLI cannot parse {command!r}") from None
    today = vars(config_from_args(DistillConfig, args))
    made_with = DistillConfig.made_with(record)
    stated = {tok[2:].split("=")[0].removeprefix("no-").replace("-", "_") for tok in argv if tok.startswith("--")}
    extra: list[str] = []
    for f in dataclasses.fields(DistillConfig):
        name, value = f.name, made_with.get(f.name, "<not recorded>")
        if name in DISTILL_BOOKKEEPING or today[name] == value:
            continue
        if name in stated or value is None or value == "<not recorded>":
            raise ValueError(f"{command!r} reads today as {name}={today[name]!r}; the run recorded {value!r}")
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            extra.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            extra += [flag, ",".join(map(str, value))]
        else:
            extra += [flag, repr(value) if isinstance(value, float) else str(value)]
    return " ".join([command, *map(shlex.quote, extra)]) if extra else command


# --- output paths: checked before anything runs; a failed command leaves no empty folder behind ---------

def _first_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(path: str | os.PathLike, *, directory: bool, flag: str = "--out") -> None:
    """A usage error when ``path`` cannot be the output it should be; PermissionError when not writable."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file; expected a directory to write into")
    if not directory and path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; expected a file to write")
    existing = _first_existing(path if directory else path.parent)
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")
    target = path if path.is_dir() else existing
    if not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: {target} is not writable")


def check_data_flags(config) -> None:
    """What the dataset needs from the command line, checked before a run starts."""
    if config.data == "image-folder" and config.data_root is None:
        raise UsageError("--data image-folder needs --data-root pointing at a folder of images")
    if config.data_root is not None and Path(config.data_root).exists() and not Path(config.data_root).is_dir():
        raise UsageError(f"--data-root {config.data_root}: is a file; expected a folder")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _metric_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ("fid", "kid", "is")]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of fid,kid,is, got {text!r}")
    return values
