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

from . import config as C
from .config import DISTILL_BOOKKEEPING, DistillConfig
from .fields import describe


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


def add_config_flags(parser: argparse.ArgumentParser, cls, choices: dict[str, typing.Sequence[str]] | None = None,
                     exclude: typing.Collection[str] = ()) -> None:
    """One ``--flag`` per dataclass field but ``exclude``, with the field's default, help and choices; ``choices``
    adds runtime ones (registries of torch modules: datasets, extractors)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        help = f.metadata.get("help") or f.name
        kw: dict = {"dest": f.name, "default": f.default, "help": help + " (default: %(default)s)"}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            kw["type"] = PARSERS.get(f.name, base)
            kw["metavar"] = f.name.upper()
            field_choices = (choices or {}).get(f.name) or f.metadata.get("choices")
            if field_choices:
                kw["choices"] = field_choices
        parser.add_argument(flag, **kw)


def config_reference() -> str:
    """docs/config.md: every config's fields, as the fields state them (tests/test_choices.py keeps it current)."""
    parts = ["# Config reference\n",
             "Generated from the fields in gandistill/config.py (their types, defaults, ranges, choices and help): "
             "regenerate with\n`.venv/bin/python -c 'from gandistill.cli_args import config_reference as r; "
             "print(r(), end=\"\")' > docs/config.md`. A command's `--help` shows the same text.\n"]
    for cls in (C.TrainConfig, C.DistillConfig, C.DemoConfig, C.EvalConfig, C.ProfileConfig, C.ClassifierTrainConfig,
                C.DCGANConfig, C.StyleGAN2Config, C.StyleGAN2LiteConfig, C.ClassifierConfig):
        parts.append(f"## {cls.__name__}\n\n{(cls.__doc__ or '').strip().splitlines()[0]}\n\n{describe(cls)}\n")
    return "\n".join(parts)


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
        value = tuple(value) if isinstance(value, list) else value  # JSON records tuples (widths) as lists
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
    bad = [v for v in values if v not in C.METRICS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(C.METRICS)}, got {text!r}")
    return values
