"""Frozen dataclasses for every component: the one source of defaults for the API and the CLI.

No torch here: configs are plain data, saved as JSON beside the weights they describe. Every field is
checked on construction; anything wrong raises one ValueError that starts with the field's name.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

# 2: "stylegan2" is StyleGAN2 as published; in format 1 files it named today's "stylegan2-lite" (upgrade_format)
FORMAT_VERSION = 2
# train() and distill() seed numpy with seed * 1000 + rank, and numpy takes seeds below 2**32
MAX_SEED = (2**32 - 1) // 1000 - 1
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
# the largest channel count, latent size or batch a config accepts: far above any model or batch that fits a
# machine, and low enough that no product of sizes overflows before the model is built (a config.json or flag
# of 1e9 channels is refused here, not by an allocation of terabytes)
MAX_SIZE = 2**16
MAX_CHANNEL_BASE = 2**20  # StyleGAN2's channel_base: channels at resolution r are channel_base // r
MAX_LAYERS = 64  # mapping network layers (StyleGAN2 uses 8)
MAX_JSON_DEPTH = 64  # nesting of a config.json (a student's lineage nests a few levels per generation)


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


def scaled(channels: int, width: float) -> int:
    """Channels of a hidden layer at ``width``: rounded, at least 1."""
    return max(1, int(round(channels * width)))


class ConfigMixin:
    """to_dict / from_dict with a clear error for unknown or mistyped fields."""

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


# --- validation helpers: each raises ValueError("<field> <rule>, got <value>") -------------------------

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


def _check_seed(obj, name: str = "seed") -> None:
    _check_range(obj, (name,), 0, MAX_SEED)


def _check_device(obj) -> None:
    _check_type(obj, "device", str)
    if not _DEVICE.fullmatch(obj.device):
        _fail("device", "must be cpu, cuda or cuda:N", obj.device)


def _check_disc_batch(obj) -> None:
    # a part of each batch goes through the discriminators: more than the batch would silently mean all of it
    _check(obj.disc_batch <= obj.batch_size, "disc_batch",
           f"must be <= batch_size ({obj.batch_size}; 0 = the whole batch), got {_show(obj.disc_batch)}")


def _check_width(obj) -> None:
    _check_type(obj, "width", float)
    _check_range(obj, ("width",), 0, 1, low_open=True)


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
    _check_type(obj, "balance", float)
    _check_range(obj, ("balance",), -1, 1)
    _check(not (obj.widths and obj.macs is not None), "widths", "and macs exclude each other: give per-block "
           "widths or a budget to pick them for")
    default_width = next(f.default for f in dataclasses.fields(obj) if f.name == "width")
    _check(not ((obj.widths or obj.macs is not None) and obj.width != default_width), "width",
           f"and {'widths' if obj.widths else 'macs'} exclude each other: give one width, per-block widths or a "
           f"MACs budget, got width {_show(obj.width)}")


def width_tag(config) -> str:
    """A short name for a generator's size: ``w0.25`` for a uniform width, ``c64-16-32`` for per-block counts."""
    counts = getattr(config, "layer_channels", ())
    return "c" + "-".join(str(c) for c in counts) if counts else f"w{config.width:g}"


@dataclass(frozen=True)
class DCGANConfig(ConfigMixin):
    """DCGAN generator/discriminator. ``width`` multiplies every hidden layer's channels."""

    family: ClassVar[str] = "dcgan"
    resolution: int = 32
    channels: int = 1
    z_dim: int = 100
    base_channels: int = 64
    width: float = 1.0
    # per-block channel counts, lowest resolution first (4x4, 8x8, ...); empty: base_channels x multiplier x width
    layer_channels: tuple[int, ...] = ()
    spectral_norm: bool = True  # discriminator only
    # generator only: a bias on the image layer (the PyTorch DCGAN example's generator has none)
    image_bias: bool = True
    # discriminator only: batch norm after every strided convolution but the first, and no convolution biases
    # (the PyTorch DCGAN example's discriminator)
    disc_batch_norm: bool = False

    def __post_init__(self):
        _check_types(self, int, ("resolution", "channels", "z_dim", "base_channels"))
        _check_types(self, bool, ("spectral_norm", "image_bias", "disc_batch_norm"))
        _check_choice(self, "resolution", (32, 64))
        _check_choice(self, "channels", (1, 3))
        _check_range(self, ("z_dim", "base_channels"), 1, MAX_SIZE)
        _check_width(self)
        _check_layer_channels(self, 3 if self.resolution == 32 else 4)


@dataclass(frozen=True)
class StyleGAN2LiteConfig(ConfigMixin):
    """gandistill's earlier small StyleGAN2-like family (bilinear resampling, one w, tanh): see models/stylegan2_lite.py."""

    family: ClassVar[str] = "stylegan2-lite"
    resolution: int = 32
    channels: int = 1
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    base_channels: int = 32
    width: float = 1.0
    mbstd_group: int = 4  # discriminator only

    def __post_init__(self):
        _check_types(self, int, ("resolution", "channels", "z_dim", "w_dim", "mapping_layers", "base_channels",
                                 "mbstd_group"))
        _check_choice(self, "resolution", (32, 64))
        _check_choice(self, "channels", (1, 3))
        _check_range(self, ("z_dim", "w_dim", "base_channels", "mbstd_group"), 1, MAX_SIZE)
        _check_range(self, ("mapping_layers",), 1, MAX_LAYERS)
        _check_width(self)


STYLEGAN2_RESOLUTIONS = tuple(2**i for i in range(3, 11))  # 8, 16, ..., 1024


@dataclass(frozen=True)
class StyleGAN2Config(ConfigMixin):
    """StyleGAN2 as published (NVlabs stylegan2-ada-pytorch / rosinality stylegan2-pytorch draw the same images).

    Channels at resolution r: ``min(channel_base // r, channel_max)`` times ``width`` (NVlabs' rule; rosinality's
    table is channel_base 16384 x channel_multiplier, channel_max 512).
    """

    family: ClassVar[str] = "stylegan2"
    resolution: int = 32  # 8, 16, ..., 1024
    channels: int = 1
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01
    channel_base: int = 4096
    channel_max: int = 256
    width: float = 1.0
    # per-block synthesis channels, 4 px first (each block's convolutions share its count); empty: the rule above
    layer_channels: tuple[int, ...] = ()
    conv_clamp: float | None = None  # clamp of every activation (NVlabs sets 256 for mixed-precision configs)
    w_avg_beta: float = 0.995  # decay of the tracked mean w; 1 stops tracking
    mbstd_group: int = 4  # discriminator only
    mbstd_channels: int = 1  # discriminator only

    def __post_init__(self):
        _check_types(self, int, ("resolution", "channels", "z_dim", "w_dim", "mapping_layers", "channel_base",
                                 "channel_max", "mbstd_group", "mbstd_channels"))
        _check_types(self, float, ("mapping_lr_mul", "w_avg_beta"))
        _check_type(self, "conv_clamp", float, allow_none=True)
        _check_choice(self, "resolution", STYLEGAN2_RESOLUTIONS)
        _check_choice(self, "channels", (1, 3))
        _check_range(self, ("z_dim", "w_dim", "channel_max", "mbstd_group", "mbstd_channels"), 1, MAX_SIZE)
        _check_range(self, ("mapping_layers",), 1, MAX_LAYERS)
        # divided by the resolution (NVlabs' 1024 px configs use 32768): channels stay <= channel_max anyway
        _check_range(self, ("channel_base",), 1, MAX_CHANNEL_BASE)
        _check_range(self, ("mapping_lr_mul",), 0, low_open=True)
        _check_range(self, ("w_avg_beta",), 0, 1)
        if self.conv_clamp is not None:
            _check_range(self, ("conv_clamp",), 0, low_open=True)
        _check_width(self)
        _check_layer_channels(self, int(math.log2(self.resolution)) - 1)
        _check(min(self.channel_base // self.resolution, self.channel_max) >= 1, "channel_base",
               f"must be >= resolution ({self.resolution}) so that every block has a channel, got {self.channel_base}")


MODEL_CONFIGS: dict[str, type] = {"dcgan": DCGANConfig, "stylegan2": StyleGAN2Config,
                                  "stylegan2-lite": StyleGAN2LiteConfig}
GAN_FAMILIES = ("dcgan", "stylegan2", "stylegan2-lite")
ADVERSARIAL_LOSSES = ("hinge", "nonsat", "lsgan")
SPLITS = ("train", "test")
FEATURE_KINDS = ("mse", "relative")
LR_SCHEDULES = ("constant", "cosine", "linear")


def upgrade_format(meta: dict) -> dict:
    """A config.json / export metadata dict of an older ``gandistill_format`` in today's names (a copy).

    Format 1 called the StyleGAN2-like family "stylegan2"; since format 2 that name is StyleGAN2 as published and
    the old family is "stylegan2-lite". The family names inside the lineage (teachers) are renamed the same way.
    """
    if not isinstance(meta, dict) or meta.get("gandistill_format") != 1:
        return meta

    def rename(node):
        if isinstance(node, dict):
            out = {k: rename(v) for k, v in node.items()}
            if out.get("family") == "stylegan2":
                out["family"] = "stylegan2-lite"
            return out
        return [rename(v) for v in node] if isinstance(node, list) else node

    upgraded = dict(meta)
    if upgraded.get("family") == "stylegan2":
        upgraded["family"] = "stylegan2-lite"
    if isinstance(upgraded.get("lineage"), dict):
        upgraded["lineage"] = rename(upgraded["lineage"])
    return upgraded


def model_config(family: str, **kwargs):
    """The config dataclass of ``family`` built from keyword arguments."""
    if not isinstance(family, str) or family not in MODEL_CONFIGS:
        raise ValueError(f"unknown family {_show(family)}; choose one of: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[family].from_dict(kwargs)


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """``train()``: a GAN from scratch (teachers, and the same-size-from-scratch baseline)."""

    out: str = "runs/train"
    family: str = "dcgan"
    resolution: int = 32
    channels: int = 1
    base_channels: int = 64
    width: float = 1.0
    d_width: float = 1.0  # the discriminator's own width multiplier
    data: str = "fashion-mnist"
    data_root: str | None = None
    split: str = "train"
    holdout: int = 0  # last N images of the split kept out of training (for checkpoint selection)
    steps: int = 10_000
    batch_size: int = 64
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "hinge"  # hinge | nonsat | lsgan
    r1_gamma: float = 0.0  # lazy R1 weight (StyleGAN2 default 0.1 is set by the CLI preset when 0 is kept)
    r1_every: int = 16
    ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast, CUDA only
    checkpoint_every: int = 500
    snapshot_every: int = 0  # keep a copy of the EMA generator every N steps (for checkpoint selection)
    sample_every: int = 500
    log_every: int = 50
    max_bad_steps: int = 5
    resume: bool = False
    overwrite: bool = False  # start over in an --out that holds other files (never with resume)
    init_from: str | None = None  # a GAN directory whose G and D weights the run starts from (fresh optimizers)

    def __post_init__(self):
        _check_path(self, "out")
        _check_path(self, "data_root", allow_none=True)
        _check_path(self, "init_from", allow_none=True)
        _check_types(self, str, ("family", "data", "split", "loss"))
        _check_types(self, int, ("resolution", "channels", "base_channels", "steps", "batch_size",
                                 "checkpoint_every", "log_every", "max_bad_steps", "r1_every", "sample_every",
                                 "snapshot_every", "holdout", "seed"))
        _check_types(self, float, ("g_lr", "d_lr", "beta1", "beta2", "r1_gamma", "ema_decay", "width", "d_width"))
        _check_types(self, bool, ("ema", "amp", "resume", "overwrite"))
        _check(not (self.resume and self.overwrite), "overwrite", "and resume exclude each other: resume continues "
               "the run in out, overwrite starts it over")
        _check_choice(self, "family", GAN_FAMILIES)
        _check_name(self, "data")
        _check_range(self, ("batch_size", "log_every", "checkpoint_every", "r1_every", "max_bad_steps"), 0,
                     low_open=True)
        _check_range(self, ("base_channels", "batch_size"), 1, MAX_SIZE)
        _check_range(self, ("g_lr", "d_lr"), 0, low_open=True)
        _check_range(self, ("steps", "holdout", "r1_gamma", "sample_every", "snapshot_every"), 0)
        _check_seed(self)
        _check_range(self, ("beta1", "beta2", "ema_decay"), 0, 1, high_open=True)
        _check_choice(self, "loss", ADVERSARIAL_LOSSES)
        _check_choice(self, "split", SPLITS)
        _check_device(self)
        for name in ("width", "d_width"):
            _check_range(self, (name,), 0, 1, low_open=True)
        _check(self.family != "stylegan2" or self.resolution not in STYLEGAN2_RESOLUTIONS
               or self.base_channels * self.resolution <= MAX_CHANNEL_BASE,
               "base_channels", f"times resolution is StyleGAN2's channel_base and must be <= {MAX_CHANNEL_BASE}, "
               f"got {_show(self.base_channels)} x {_show(self.resolution)}")
        # the model config validates its own fields (resolution, channels, base_channels)
        self.model_config()
        self.model_config(discriminator=True)

    def model_config(self, discriminator: bool = False):
        width = self.d_width if discriminator else self.width
        sizes = {"base_channels": self.base_channels}
        if self.family == "stylegan2":  # base_channels at the output resolution, doubling below it up to 4x
            sizes = {"channel_base": self.base_channels * self.resolution, "channel_max": 4 * self.base_channels}
        return MODEL_CONFIGS[self.family](resolution=self.resolution, channels=self.channels, width=width, **sizes)


# Settings DistillConfig gained after runs and students were made with it, each with the value a record made before
# it existed had (the behaviour of that time, which today's default need not be). Read an older run's recorded
# settings with DistillConfig.made_with, never by falling back to today's defaults.
DISTILL_ADDED: dict[str, Any] = {"lr_schedule": "constant", "feature_kind": "mse", "disc_batch": 0,
                                 "overwrite": False, "widths": (), "macs": None,
                                 "balance": 0.25}  # moot without macs: today's default, so that older runs resume
# Settings that decide nothing about the weights a distillation ends with: where it writes, how often it saves or logs.
DISTILL_BOOKKEEPING = frozenset({"out", "resume", "overwrite", "checkpoint_every", "sample_every", "log_every"})


@dataclass(frozen=True)
class DistillConfig(ConfigMixin):
    """``distill()``: teacher -> student. A loss weight of 0 turns that term off."""

    teacher: str = "pretrained/dcgan-fmnist"
    out: str = "runs/distill"
    width: float = 0.25  # every hidden layer's channels times this; left at 0.25 when widths or macs is given
    # per-block widths, lowest resolution first: floats are factors of the teacher's channels, ints counts
    widths: tuple = ()
    # a MACs budget per image (1.5M, 250k, 1500000, or 10x = ten times fewer than the teacher): the per-block
    # widths are picked for it by budget.pick_widths with `balance`, printed and recorded in the student's config
    macs: str | None = None
    # with macs: 0 = the uniform width, 1 = cheap blocks whole (budget.py). 0.25 ranked first of six balances at the
    # w0.25 DCGAN student's MACs (fid5k[fmnist-cnn] on train 24.3 vs 25.3 uniform, 28.3 at 0.5, 43.9 at 1; 2,000
    # steps, `gandistill search`, docs/results.md)
    balance: float = 0.25
    # l1 | prefix | random | svs. prefix (the first k channels) since 2026-12-05: the w0.25 DCGAN student at 6,000
    # steps with --disc-batch 8 reaches fid10k[fmnist-cnn] 16.8 +- 0.5 and fid1k[inception] 44.9 +- 0.6 over three
    # seeds against 20.9 +- 1.3 and 47.8 +- 0.4 with l1, and at 13,000 steps 12.78 / 41.27 against 15.60 / 42.35
    # (docs/recipe.md)
    init: str = "prefix"
    data: str = "fashion-mnist"  # a dataset name, or "none" for data-free distillation
    data_root: str | None = None
    split: str = "train"
    steps: int = 3000
    batch_size: int = 64
    # lr 1e-3 with cosine decay: fid10k[fmnist-cnn] 31.2 +- 1.6 (3 seeds) against 46.0 at a constant 2e-4 for the
    # w0.25 DCGAN student at 1500 steps (docs/recipe.md)
    g_lr: float = 1e-3
    d_lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    pixel: float = 1.0
    pixel_kind: str = "l1"  # l1 | mse | l1+mse
    feature: float = 1.0
    disc_feature: float = 1.0
    perceptual: float = 0.0
    disc_kl: float = 1.0
    kl_temperature: float = 1.0
    class_kl: float = 0.0
    class_alpha: float = 0.5
    class_temperature: float = 4.0
    adversarial: float = 0.1
    adv_loss: str = "hinge"  # hinge | nonsat | lsgan
    disc_batch: int = 0  # images per step through the discriminators (disc_feature, disc_kl, adversarial); 0 = all
    feature_kind: str = "mse"  # mse | relative (each tap's MSE divided by the teacher tap's mean square)
    lr_schedule: str = "cosine"  # constant | cosine | linear: both learning rates decay to 0 over `steps`
    classifier: str | None = None  # directory of a classifier for perceptual / class_kl
    ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 50
    max_bad_steps: int = 5
    resume: bool = False
    overwrite: bool = False  # start over in an --out that holds other files (never with resume)

    @staticmethod
    def made_with(record: dict[str, Any]) -> dict[str, Any]:
        """The settings a run was made with, from what it recorded (a student's ``extra.distill``, a state.pt's
        ``config``): settings added since (``DISTILL_ADDED``) filled in with the value they had then."""
        return {**DISTILL_ADDED, **record}

    def __post_init__(self):
        _check_path(self, "teacher")
        _check_path(self, "out")
        _check_path(self, "data_root", allow_none=True)
        _check_path(self, "classifier", allow_none=True)
        _check_types(self, str, ("init", "data", "split", "pixel_kind", "adv_loss", "feature_kind", "lr_schedule"))
        _check_types(self, int, ("steps", "batch_size", "checkpoint_every", "sample_every", "log_every",
                                 "max_bad_steps", "seed", "disc_batch"))
        _check_types(self, float, ("width", "g_lr", "d_lr", "beta1", "beta2", "pixel", "feature", "disc_feature",
                                   "perceptual", "disc_kl", "kl_temperature", "class_kl", "class_alpha",
                                   "class_temperature", "adversarial", "ema_decay"))
        _check_types(self, bool, ("ema", "amp", "channels_last", "resume", "overwrite"))
        _check(not (self.resume and self.overwrite), "overwrite", "and resume exclude each other: resume continues "
               "the run in out, overwrite starts it over")
        _check_width(self)
        _check_student_size(self)
        _check_name(self, "data")
        _check_range(self, ("batch_size", "log_every", "checkpoint_every", "max_bad_steps"), 0, low_open=True)
        _check_range(self, ("batch_size",), 1, MAX_SIZE)
        _check_range(self, ("disc_batch",), 0, MAX_SIZE)
        _check_disc_batch(self)
        _check_range(self, ("g_lr", "d_lr", "kl_temperature", "class_temperature"), 0, low_open=True)
        _check_range(self, ("steps", "sample_every", "pixel", "feature", "disc_feature", "perceptual", "disc_kl",
                            "class_kl", "adversarial", "disc_batch"), 0)
        _check_seed(self)
        _check_range(self, ("class_alpha",), 0, 1)
        _check_range(self, ("beta1", "beta2", "ema_decay"), 0, 1, high_open=True)
        _check_choice(self, "init", ("l1", "prefix", "random", "svs"))
        _check_choice(self, "pixel_kind", ("l1", "mse", "l1+mse"))
        _check_choice(self, "feature_kind", FEATURE_KINDS)
        _check_choice(self, "lr_schedule", LR_SCHEDULES)
        _check_choice(self, "adv_loss", ADVERSARIAL_LOSSES)
        _check_choice(self, "split", SPLITS)
        _check_device(self)
        _check(any((self.pixel, self.feature, self.disc_feature, self.perceptual, self.disc_kl, self.class_kl,
                    self.adversarial)), "pixel", "feature, disc_feature, perceptual, disc_kl, class_kl and "
               "adversarial are all 0: nothing would train the student; give at least one loss a weight")
        _check(not ((self.perceptual or self.class_kl) and not self.classifier), "classifier",
               "is needed when perceptual or class_kl > 0 (e.g. --classifier pretrained/fmnist-cnn-b)")


@dataclass(frozen=True)
class ClassifierConfig(ConfigMixin):
    """The small CNN used for FID/KID/IS features on Fashion-MNIST and for perceptual/class losses."""

    family: ClassVar[str] = "fmnist-cnn"
    resolution: int = 32
    channels: int = 1
    num_classes: int = 10
    width: int = 32  # channels of the first stage; later stages double it
    feature_dim: int = 256

    def __post_init__(self):
        _check_types(self, int, ("resolution", "channels", "num_classes", "width", "feature_dim"))
        _check_choice(self, "resolution", (32, 64))
        _check_choice(self, "channels", (1, 3))
        _check_range(self, ("num_classes", "width", "feature_dim"), 1, MAX_SIZE)


MODEL_CONFIGS["fmnist-cnn"] = ClassifierConfig


@dataclass(frozen=True)
class ClassifierTrainConfig(ConfigMixin):
    """``train_classifier()``: the Fashion-MNIST CNN behind the ``fmnist-cnn`` feature extractor."""

    out: str = "runs/fmnist-cnn"
    data: str = "fashion-mnist"
    data_root: str | None = None
    width: int = 32
    feature_dim: int = 256
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05  # SGD with Nesterov momentum; cosine decay after one warm-up epoch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True  # random horizontal flips and shifts of up to 2 pixels
    seed: int = 0
    device: str = "cpu"
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self):
        _check_path(self, "out")
        _check_path(self, "data_root", allow_none=True)
        _check_type(self, "data", str)
        _check_types(self, int, ("width", "feature_dim", "epochs", "batch_size", "seed", "num_threads"))
        _check_types(self, float, ("lr", "momentum", "weight_decay", "label_smoothing"))
        _check_type(self, "augment", bool)
        _check_name(self, "data")
        _check_range(self, ("width", "feature_dim", "epochs", "batch_size"), 0, low_open=True)
        _check_range(self, ("width", "feature_dim", "batch_size"), 1, MAX_SIZE)
        _check_range(self, ("lr",), 0, low_open=True)
        _check_range(self, ("weight_decay", "num_threads"), 0)
        _check_seed(self)
        _check_range(self, ("momentum", "label_smoothing"), 0, 1, high_open=True)
        _check_device(self)


@dataclass(frozen=True)
class EvalConfig(ConfigMixin):
    """``evaluate()``: one protocol shared by every generator evaluated together."""

    dataset: str = "fashion-mnist"
    split: str = "test"
    metrics: tuple[str, ...] = ("fid", "kid", "is")
    extractor: str = "fmnist-cnn"
    num_samples: int = 10_000
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 200
    data_root: str | None = None
    paired: int = 1000  # latents for PSNR/SSIM/feature distance of a student against its teacher (0 = off)

    def __post_init__(self):
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = (metrics,)
        elif isinstance(metrics, (list, tuple)):
            metrics = tuple(metrics)
        else:
            _fail("metrics", "must be a non-empty subset of fid, kid, is", metrics)
        object.__setattr__(self, "metrics", metrics)
        bad = [m for m in metrics if not isinstance(m, str) or m not in ("fid", "kid", "is")]
        _check(not bad and len(metrics) > 0, "metrics", f"must be a non-empty subset of fid, kid, is; got "
                                                        f"{_show(bad or list(metrics))}")
        _check_path(self, "data_root", allow_none=True)
        _check_types(self, str, ("dataset", "split", "extractor"))
        _check_types(self, int, ("num_samples", "seed", "batch_size", "paired"))
        _check_name(self, "dataset")
        _check_name(self, "extractor")
        _check_choice(self, "split", SPLITS)
        _check_range(self, ("batch_size",), 1, MAX_SIZE)
        _check(self.num_samples >= 2, "num_samples", f"must be >= 2 (a covariance needs two samples), got "
                                                     f"{_show(self.num_samples)}")
        _check_range(self, ("paired",), 0)
        _check_seed(self)
        _check_device(self)


@dataclass(frozen=True)
class ProfileConfig(ConfigMixin):
    """``profile()``: latency at batch 1 and throughput at a large batch, warm-up runs excluded."""

    device: str = "cpu"
    latency_runs: int = 50
    throughput_batch: int = 64
    throughput_runs: int = 10
    warmup: int = 5
    rounds: int = 5  # the runs are split into rounds in which the models take turns; spread is across rounds

    def __post_init__(self):
        _check_types(self, int, ("latency_runs", "throughput_batch", "throughput_runs", "warmup", "rounds"))
        _check_range(self, ("latency_runs", "throughput_batch", "throughput_runs", "rounds"), 0, low_open=True)
        _check_range(self, ("throughput_batch",), 1, MAX_SIZE)
        _check_range(self, ("warmup",), 0)
        _check_device(self)


@dataclass(frozen=True)
class DemoConfig(ConfigMixin):
    """``gandistill demo``: distill the shipped teacher, evaluate both, profile, export, report."""

    teacher: str = "pretrained/dcgan-fmnist"
    out: str = "runs/demo"
    width: float = 0.25
    # the short preset, ~7 min of distillation on a 2-core CPU: with 8 images a step through the discriminators
    # (--disc-batch) a step costs a third of one with all 64, and the student is better at the same wall time
    # (docs/recipe.md, "Where a step's time goes")
    steps: int = 6000
    batch_size: int = 64
    disc_batch: int = 8
    data: str = "fashion-mnist"
    data_root: str | None = None
    dataset: str = "fashion-mnist"  # evaluation: real-image statistics
    split: str = "test"
    extractor: str = "fmnist-cnn"
    num_samples: int = 10_000
    paired: int = 1000
    export_format: str = "onnx"  # onnx | torchscript | safetensors
    device: str = "cpu"
    seed: int = 0
    verbose: bool = True
    overwrite: bool = False  # write into an --out holding files a demo does not make; start distill/ over

    def __post_init__(self):
        _check_path(self, "teacher")
        _check_path(self, "out")
        _check_path(self, "data_root", allow_none=True)
        _check_types(self, str, ("data", "dataset", "split", "extractor", "export_format"))
        _check_types(self, int, ("steps", "batch_size", "disc_batch", "num_samples", "paired", "seed"))
        _check_type(self, "verbose", bool)
        _check_type(self, "overwrite", bool)
        _check_width(self)
        for name in ("data", "dataset", "extractor"):
            _check_name(self, name)
        _check_range(self, ("steps", "batch_size"), 0, low_open=True)
        _check_range(self, ("batch_size",), 1, MAX_SIZE)
        _check(self.num_samples >= 2, "num_samples", f"must be >= 2 (a covariance needs two samples), got "
                                                     f"{_show(self.num_samples)}")
        _check_range(self, ("paired", "disc_batch"), 0)
        _check_range(self, ("disc_batch",), 0, MAX_SIZE)
        _check_disc_batch(self)
        _check_seed(self)
        _check_choice(self, "split", SPLITS)
        _check_choice(self, "export_format", ("onnx", "torchscript", "safetensors"))
        _check_device(self)
