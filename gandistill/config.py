"""Frozen dataclasses for every component: the one source of defaults for the API and the CLI.

No torch here: configs are plain data, saved as JSON beside the weights they describe.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

FORMAT_VERSION = 1


def scaled(channels: int, width: float) -> int:
    """Channels of a hidden layer at ``width``: rounded, at least 1."""
    return max(1, int(round(channels * width)))


class ConfigMixin:
    """to_dict / from_dict with a clear error for unknown or mistyped fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _check_type(obj, name: str, typ, *, allow_none: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        object.__setattr__(obj, name, float(value))
        value = float(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ValueError(f"{name} must be {typ.__name__}, got {value!r}")


def _check(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{name} {message}")


def _check_width(obj) -> None:
    _check_type(obj, "width", float)
    w = obj.width
    _check(math.isfinite(w) and 0.0 < w <= 1.0, "width", f"must be in (0, 1], got {w!r}")


@dataclass(frozen=True)
class DCGANConfig(ConfigMixin):
    """DCGAN generator/discriminator. ``width`` multiplies every hidden layer's channels."""

    family: ClassVar[str] = "dcgan"
    resolution: int = 32
    channels: int = 1
    z_dim: int = 100
    base_channels: int = 64
    width: float = 1.0
    spectral_norm: bool = True  # discriminator only

    def __post_init__(self):
        for name in ("resolution", "channels", "z_dim", "base_channels"):
            _check_type(self, name, int)
        _check_type(self, "spectral_norm", bool)
        _check(self.resolution in (32, 64), "resolution", f"must be 32 or 64, got {self.resolution}")
        _check(self.channels in (1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        _check(self.z_dim >= 1, "z_dim", f"must be >= 1, got {self.z_dim}")
        _check(self.base_channels >= 1, "base_channels", f"must be >= 1, got {self.base_channels}")
        _check_width(self)


@dataclass(frozen=True)
class StyleGAN2Config(ConfigMixin):
    """Small StyleGAN2-like generator and residual discriminator."""

    family: ClassVar[str] = "stylegan2"
    resolution: int = 32
    channels: int = 1
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    base_channels: int = 32
    width: float = 1.0
    mbstd_group: int = 4  # discriminator only

    def __post_init__(self):
        for name in ("resolution", "channels", "z_dim", "w_dim", "mapping_layers", "base_channels", "mbstd_group"):
            _check_type(self, name, int)
        _check(self.resolution in (32, 64), "resolution", f"must be 32 or 64, got {self.resolution}")
        _check(self.channels in (1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        _check(self.z_dim >= 1, "z_dim", f"must be >= 1, got {self.z_dim}")
        _check(self.w_dim >= 1, "w_dim", f"must be >= 1, got {self.w_dim}")
        _check(self.mapping_layers >= 1, "mapping_layers", f"must be >= 1, got {self.mapping_layers}")
        _check(self.base_channels >= 1, "base_channels", f"must be >= 1, got {self.base_channels}")
        _check(self.mbstd_group >= 1, "mbstd_group", f"must be >= 1, got {self.mbstd_group}")
        _check_width(self)


MODEL_CONFIGS: dict[str, type] = {"dcgan": DCGANConfig, "stylegan2": StyleGAN2Config}
GAN_FAMILIES = ("dcgan", "stylegan2")


def model_config(family: str, **kwargs):
    """The config dataclass of ``family`` built from keyword arguments."""
    if family not in MODEL_CONFIGS:
        raise ValueError(f"unknown family {family!r}; choose one of: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[family].from_dict(kwargs)


def _check_positive(obj, names: tuple[str, ...], allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = value >= 0 if allow_zero else value > 0
        _check(ok and math.isfinite(value), name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


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

    def __post_init__(self):
        _check(self.family in GAN_FAMILIES, "family", f"must be one of {', '.join(GAN_FAMILIES)}, got {self.family!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "max_bad_steps", "r1_every",
                     "sample_every", "snapshot_every", "holdout", "seed"):
            _check_type(self, name, int)
        for name in ("g_lr", "d_lr", "beta1", "beta2", "r1_gamma", "ema_decay", "width", "d_width"):
            _check_type(self, name, float)
        _check_positive(self, ("batch_size", "g_lr", "d_lr", "log_every", "checkpoint_every", "r1_every",
                               "max_bad_steps"))
        _check_positive(self, ("steps", "holdout", "r1_gamma", "sample_every", "snapshot_every", "seed"),
                        allow_zero=True)
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2", "must be in [0, 1)")
        _check(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        _check(self.loss in ("hinge", "nonsat", "lsgan"), "loss", f"must be hinge, nonsat or lsgan, got {self.loss!r}")
        _check(self.split in ("train", "test"), "split", f"must be train or test, got {self.split!r}")
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")
        for name in ("width", "d_width"):
            value = getattr(self, name)
            _check(math.isfinite(value) and 0.0 < value <= 1.0, name, f"must be in (0, 1], got {value!r}")
        # the model config validates its own fields (resolution, channels)
        self.model_config()
        self.model_config(discriminator=True)

    def model_config(self, discriminator: bool = False):
        width = self.d_width if discriminator else self.width
        return MODEL_CONFIGS[self.family](resolution=self.resolution, channels=self.channels,
                                          base_channels=self.base_channels, width=width)


@dataclass(frozen=True)
class DistillConfig(ConfigMixin):
    """``distill()``: teacher -> student. A loss weight of 0 turns that term off."""

    teacher: str = "pretrained/dcgan-fmnist"
    out: str = "runs/distill"
    width: float = 0.25
    init: str = "l1"  # l1 | prefix | random
    data: str = "fashion-mnist"  # a dataset name, or "none" for data-free distillation
    data_root: str | None = None
    split: str = "train"
    steps: int = 3000
    batch_size: int = 64
    g_lr: float = 2e-4
    d_lr: float = 2e-4
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

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "sample_every", "log_every", "max_bad_steps", "seed"):
            _check_type(self, name, int)
        for name in ("width", "g_lr", "d_lr", "beta1", "beta2", "pixel", "feature", "disc_feature", "perceptual",
                     "disc_kl", "kl_temperature", "class_kl", "class_alpha", "class_temperature", "adversarial",
                     "ema_decay"):
            _check_type(self, name, float)
        _check_width(self)
        _check_positive(self, ("batch_size", "g_lr", "d_lr", "log_every", "checkpoint_every", "max_bad_steps",
                               "kl_temperature", "class_temperature"))
        _check_positive(self, ("steps", "sample_every", "seed", "pixel", "feature", "disc_feature", "perceptual",
                               "disc_kl", "class_kl", "adversarial"), allow_zero=True)
        _check(0 <= self.class_alpha <= 1, "class_alpha", f"must be in [0, 1], got {self.class_alpha}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2", "must be in [0, 1)")
        _check(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        _check(self.init in ("l1", "prefix", "random"), "init", f"must be l1, prefix or random, got {self.init!r}")
        _check(self.pixel_kind in ("l1", "mse", "l1+mse"), "pixel_kind", f"must be l1, mse or l1+mse, got {self.pixel_kind!r}")
        _check(self.adv_loss in ("hinge", "nonsat", "lsgan"), "adv_loss",
               f"must be hinge, nonsat or lsgan, got {self.adv_loss!r}")
        _check(self.split in ("train", "test"), "split", f"must be train or test, got {self.split!r}")
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")
        _check(bool(self.teacher), "teacher", "must name a GAN or generator directory")
        _check(not ((self.perceptual or self.class_kl) and not self.classifier), "classifier",
               "is needed when perceptual or class_kl > 0 (e.g. --classifier pretrained/fmnist-cnn)")


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
        for name in ("resolution", "channels", "num_classes", "width", "feature_dim"):
            _check_type(self, name, int)
        _check(self.resolution in (32, 64), "resolution", f"must be 32 or 64, got {self.resolution}")
        _check(self.channels in (1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        for name in ("num_classes", "width", "feature_dim"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")


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
        for name in ("width", "feature_dim", "epochs", "batch_size", "seed", "num_threads"):
            _check_type(self, name, int)
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            _check_type(self, name, float)
        _check_type(self, "augment", bool)
        _check_positive(self, ("width", "feature_dim", "epochs", "batch_size", "lr"))
        _check_positive(self, ("weight_decay", "seed", "num_threads"), allow_zero=True)
        _check(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")


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
        if isinstance(self.metrics, (list, str)):
            object.__setattr__(self, "metrics", tuple([self.metrics] if isinstance(self.metrics, str)
                                                      else self.metrics))
        for name in ("num_samples", "seed", "batch_size", "paired"):
            _check_type(self, name, int)
        _check_positive(self, ("num_samples", "batch_size"))
        _check(self.num_samples >= 2, "num_samples", f"must be >= 2 (a covariance needs two samples), got "
                                                     f"{self.num_samples}")
        _check_positive(self, ("seed", "paired"), allow_zero=True)
        bad = [m for m in self.metrics if m not in ("fid", "kid", "is")]
        _check(not bad and len(self.metrics) > 0, "metrics", f"must be a non-empty subset of fid, kid, is; got {bad}")
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class ProfileConfig(ConfigMixin):
    """``profile()``: latency at batch 1 and throughput at a large batch, warm-up runs excluded."""

    device: str = "cpu"
    latency_runs: int = 50
    throughput_batch: int = 64
    throughput_runs: int = 10
    warmup: int = 5

    def __post_init__(self):
        for name in ("latency_runs", "throughput_batch", "throughput_runs", "warmup"):
            _check_type(self, name, int)
        _check_positive(self, ("latency_runs", "throughput_batch", "throughput_runs"))
        _check_positive(self, ("warmup",), allow_zero=True)
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class DemoConfig(ConfigMixin):
    """``gandistill demo``: distill the shipped teacher, evaluate both, profile, export, report."""

    teacher: str = "pretrained/dcgan-fmnist"
    out: str = "runs/demo"
    width: float = 0.25
    steps: int = 1500  # the short preset: about 5 minutes of distillation on a 2-core CPU
    batch_size: int = 64
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

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_samples", "paired", "seed"):
            _check_type(self, name, int)
        _check_type(self, "width", float)
        _check_width(self)
        _check_positive(self, ("steps", "batch_size", "num_samples"))
        _check_positive(self, ("paired", "seed"), allow_zero=True)
        _check(self.export_format in ("onnx", "torchscript", "safetensors"), "export_format",
               f"must be onnx, torchscript or safetensors, got {self.export_format!r}")
        _check(self.device.split(":")[0] in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")
