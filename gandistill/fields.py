"""Config fields and the one validator that reads them (no torch).

A config dataclass states each field once: its type in the annotation, and its help, range and choices in
``field(...)``. ``ConfigMixin.__post_init__`` checks every field from those alone, then calls the class's
``_validate`` for the rules that join several fields. The CLI (``cli_args.add_config_flags``) reads the same help
and choices. Every failure is one ValueError line that starts with the field's name:
``"<field> <rule>, got <value>"``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import re
import sys
import typing
from typing import Any

# the largest channel count, latent size or batch a config accepts: far above any model or batch that fits a
# machine, and low enough that no product of sizes overflows before the model is built (a config.json or flag
# of 1e9 channels is refused here, not by an allocation of terabytes)
MAX_SIZE = 2**16
MAX_JSON_DEPTH = 64  # nesting of a config.json (a student's lineage nests a few levels per generation)
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
_INTERVAL = re.compile(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])")


def field(default: Any = dataclasses.MISSING, *, help: str = "", range: str | tuple[str, ...] = (),
          choices: tuple = (), check: typing.Callable | None = None, path: bool = False, **kwargs):
    """A dataclass field with what the validator and the CLI read: ``help``; ``range``, one interval or several
    checked in turn, written as the error states it (``"(0, 1]"``, ``"[0, inf)"``); ``choices``; ``check``, a
    rule of its own run after the type check (``check(obj, name)``); ``path``: a str or os.PathLike, stored as str."""
    ranges = (range,) if isinstance(range, str) else tuple(range)
    for r in ranges:
        _interval(r)  # a malformed interval fails where the field is written
    metadata = {"help": help, "range": ranges, "choices": tuple(choices), "check": check, "path": path}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


@functools.cache
def _interval(text: str) -> tuple:
    match = _INTERVAL.fullmatch(text)
    if not match:
        raise ValueError(f"bad interval {text!r}: write it as [lo, hi], (lo, hi], [lo, inf) ...")
    left, low, high, right = match.groups()
    number = lambda s: None if s in ("inf", "-inf") else float(s) if re.search(r"[.e]", s) else int(s)  # noqa: E731
    return number(low), number(high), left == "(", right == ")"


def field_help(cls, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def describe(cls) -> str:
    """A markdown table of ``cls``'s fields, read from the fields themselves (docs/config.md)."""
    rows = ["| field | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        meta = f.metadata
        choices = [str(c) for c in meta.get("choices", ())]
        allowed = (f"{', '.join(choices[:-1])} or {choices[-1]}" if choices else " and ".join(meta.get("range", ()))
                   or ("a path" if meta.get("path") else ""))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        cells = [f"`{f.name}`", f"`{f.type}`", f"`{default!r}`", allowed, meta.get("help", "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(hint) -> tuple[Any, bool]:
    """``(type, optional)`` of an annotation: ``str | None`` -> ``(str, True)``; ``object`` for a union of types."""
    args = typing.get_args(hint)
    if type(None) not in args:
        return hint, False
    rest = [t for t in args if t is not type(None)]
    return (rest[0] if len(rest) == 1 else object), True


class ConfigMixin:
    """to_dict / from_dict with a clear error for unknown or mistyped fields; every field checked on construction."""

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_field(self, f, hints[f.name])
        self._validate()

    def _validate(self) -> None:
        """Rules joining several fields (a class's own)."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[arg-type]
        # per-block counts: a list as JSON reads it back, and left out when not used, so that a uniform model's
        # config.json (and every lineage that copies it) reads as it did before the field existed
        if "layer_channels" in data:
            if data["layer_channels"]:
                data["layer_channels"] = list(data["layer_channels"])
            else:
                del data["layer_channels"]
        return data

    def to_json_dict(self) -> dict[str, Any]:
        """``to_dict`` as a JSON file reads it back (tuples as lists): a record kept both in state.pt and in a
        config.json then compares equal."""
        return json.loads(json.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(_show(k) if not isinstance(k, str) else k for k in set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def check_field(obj, f: dataclasses.Field, hint) -> None:
    """One field against its annotation and metadata: type (plain int, float, bool, str; others are left to
    ``_validate``), its own check, choices, then each range; None passes where the annotation allows it."""
    meta = f.metadata
    typ, optional = base_type(hint)
    if meta.get("path"):
        _check_path(obj, f.name, allow_none=optional)
    elif typ in (int, float, bool, str):
        _check_type(obj, f.name, typ, allow_none=optional)
    if getattr(obj, f.name) is None and optional:
        return
    if meta.get("check"):
        meta["check"](obj, f.name)
    if meta.get("choices"):
        _check_choice(obj, f.name, meta["choices"])
    for low, high, low_open, high_open in map(_interval, meta.get("range", ())):
        _check_range(obj, (f.name,), low, high, low_open=low_open, high_open=high_open)


# --- the rules: each raises ValueError("<field> <rule>, got <value>") ---------------------------------

def _show(value) -> str:
    """A short repr for error messages, even for huge integers, long strings or odd objects."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a message must not fail while describing a bad value
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(name: str, rule: str, value) -> None:
    raise ValueError(f"{name} {rule}, got {_show(value)}")


def _check(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{name} {message}")


def _check_type(obj, name: str, typ, *, allow_none: bool = False) -> None:
    """``typ`` is int, float, bool or str; other integers and reals (numpy's) are converted."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if not isinstance(value, bool) and not isinstance(value, typ):
        converted = None
        if typ is float and isinstance(value, numbers.Real):
            try:
                converted = float(value)
            except OverflowError:
                _fail(name, "is too large for a float", value)
        elif typ is int and isinstance(value, numbers.Integral):
            converted = int(value)
        if converted is not None:
            object.__setattr__(obj, name, converted)
            value = converted
    if isinstance(value, bool) != (typ is bool) or not isinstance(value, typ):
        _fail(name, f"must be {typ.__name__}", value)
    if typ is int and not -2**63 <= value < 2**63:  # kept to int64: torch and JSON readers take it
        _fail(name, "is out of the 64-bit integer range", value)


def _check_types(obj, typ, names: tuple[str, ...], *, allow_none: bool = False) -> None:
    for name in names:
        _check_type(obj, name, typ, allow_none=allow_none)


def _check_path(obj, name: str, *, allow_none: bool = False) -> None:
    """A non-empty path given as str or os.PathLike (stored as str, so that it saves as JSON)."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
        object.__setattr__(obj, name, value)
    if not isinstance(value, str) or not value or "\0" in value:
        _fail(name, "must be a non-empty path" + (" or None" if allow_none else ""), value)


def _check_name(obj, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or not value.strip():
        _fail(name, "must be a non-empty name", value)


def _check_choice(obj, name: str, options: tuple) -> None:
    value = getattr(obj, name)  # already type-checked, so ``in`` compares like with like
    if value not in options:
        names = [str(o) for o in options]
        _fail(name, f"must be {', '.join(names[:-1])} or {names[-1]}", value)


def _check_range(obj, names: tuple[str, ...], low=None, high=None, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """low <= value <= high (strict where open); floats must also be finite."""
    for name in names:
        value = getattr(obj, name)
        ok = not (isinstance(value, float) and not math.isfinite(value))
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            if high is None:
                rule = f"must be {'>' if low_open else '>='} {low}"
            else:
                rule = f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            _fail(name, rule, value)


def _check_layer_channels(obj, blocks: int) -> None:
    """``layer_channels``: empty (every block at base channels x width) or one channel count per block, lowest
    resolution first; a JSON list is stored as a tuple. With counts, ``width`` must stay 1.0: the counts are
    absolute, and a width beside them would say something the model does not do."""
    value = obj.layer_channels
    if isinstance(value, list):
        value = tuple(value)
        object.__setattr__(obj, "layer_channels", value)
    if not isinstance(value, tuple) or any(isinstance(c, bool) or not isinstance(c, numbers.Integral)
                                           for c in value):
        _fail("layer_channels", "must be a list of channel counts (integers)", value)
    if not value:
        return
    object.__setattr__(obj, "layer_channels", tuple(int(c) for c in value))
    _check(len(value) == blocks, "layer_channels", f"must give one channel count per block ({blocks} at "
           f"resolution {obj.resolution}, lowest resolution first), got {len(value)}: {_show(value)}")
    if not all(1 <= c <= MAX_SIZE for c in obj.layer_channels):
        _fail("layer_channels", f"must be counts in [1, {MAX_SIZE}]", value)
    _check(obj.width == 1.0, "width", f"must be 1.0 when layer_channels is given (the counts are absolute), "
           f"got {_show(obj.width)}")


def parse_macs_spec(spec) -> tuple[str, float]:
    """``("count", MACs)`` for 1500000, 250k, 1.5M or 2G; ``("reduction", factor)`` for 10x (ten times fewer
    MACs than the teacher). ValueError on anything else."""
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        value, kind = float(spec), "count"
    elif isinstance(spec, str):
        match = _MACS_SPEC.fullmatch(spec.strip())
        if not match:
            _fail("macs", "must be a count like 1500000, 250k or 1.5M, or a reduction like 10x", spec)
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "x": 1}[match.group(2).lower()]
        kind = "reduction" if match.group(2).lower() == "x" else "count"
    else:
        _fail("macs", "must be a count like 1500000, 250k or 1.5M, or a reduction like 10x", spec)
    if not math.isfinite(value) or value < 1:
        _fail("macs", "must be at least 1 (a count) or 1x (a reduction)", spec)
    return kind, value


_MACS_SPEC = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGxX]?)")


def _check_student_size(obj) -> None:
    """widths (per-block factors or counts) or macs (a budget) instead of one width: at most one of the three."""
    if isinstance(obj.widths, list):
        object.__setattr__(obj, "widths", tuple(obj.widths))
    if not isinstance(obj.widths, tuple) or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) for w in obj.widths):
        _fail("widths", "must be a list of per-block factors (floats) or channel counts (ints)", obj.widths)
    for w in obj.widths:
        if isinstance(w, int) and not 1 <= w <= MAX_SIZE:
            _fail("widths", f"counts must be in [1, {MAX_SIZE}]", obj.widths)
        if isinstance(w, float) and not (math.isfinite(w) and 0 < w <= 1):
            _fail("widths", "factors must be in (0, 1]", obj.widths)
    if obj.macs is not None:
        parse_macs_spec(obj.macs)
    _check(not (obj.widths and obj.macs is not None), "widths", "and macs exclude each other: give per-block "
           "widths or a budget to pick them for")
    default_width = next(f.default for f in dataclasses.fields(obj) if f.name == "width")
    _check(not ((obj.widths or obj.macs is not None) and obj.width != default_width), "width",
           f"and {'widths' if obj.widths else 'macs'} exclude each other: give one width, per-block widths or a "
           f"MACs budget, got width {_show(obj.width)}")


def _check_device(obj, name: str = "device") -> None:
    _check_type(obj, name, str)
    if not _DEVICE.fullmatch(getattr(obj, name)):
        _fail(name, "must be cpu, cuda or cuda:N", getattr(obj, name))


def load_json_text(text: str | bytes, where) -> Any:
    """``json.loads`` whose every failure is one ValueError line naming ``where``: malformed JSON, undecodable
    bytes, an integer of more than 4300 digits (Python refuses to convert it) and nesting deep enough to
    exhaust the parser's recursion or anything that walks the result."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError and the integer-digits limit are ValueErrors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "integer string conversion" in reason:
            reason = f"an integer of more than {sys.get_int_max_str_digits() or 4300} digits"
        raise ValueError(f"{where}: not valid JSON ({reason[:200]})") from None
    stack = [(data, 1)]  # iterative: a recursive walk is what deep nesting would break
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"{where}: not valid JSON for gandistill (nested too deeply: more than "
                             f"{MAX_JSON_DEPTH} levels)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return data
