"""Frozen dataclasses for every component: the one source of defaults for the API and the CLI.

No torch here: configs are plain data, saved as JSON beside the weights they describe. Each field states its type
(the annotation), help, range and choices once, in ``field(...)`` (gandistill/fields.py); the one validator reads
them on construction, the CLI reads them for its flags. Anything wrong raises one ValueError that starts with the
field's name. Choice lists that name registered things are written here once, torch-free, and tests keep them
equal to their registries.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .fields import (  # noqa: F401 - re-exported: search.py, checkpoint.py and others take them from here
    MAX_SIZE,
    ConfigMixin,
    _check,
    _check_device,
    _check_layer_channels,
    _check_name,
    _check_path,
    _check_range,
    _check_student_size,
    _check_type,
    _check_types,
    _fail,
    _show,
    field,
    load_json_text,
    parse_macs_spec,
)

# 2: "stylegan2" is StyleGAN2 as published; in format 1 files it named today's "stylegan2-lite" (upgrade_format)
FORMAT_VERSION = 2
# train() and distill() seed numpy with seed * 1000 + rank, and numpy takes seeds below 2**32
MAX_SEED = (2**32 - 1) // 1000 - 1
MAX_CHANNEL_BASE = 2**20  # StyleGAN2's channel_base: channels at resolution r are channel_base // r
MAX_LAYERS = 64  # mapping network layers (StyleGAN2 uses 8)

# choices that name registered things (tests/test_choices.py keeps each equal to its registry)
ADVERSARIAL_LOSSES = ("hinge", "nonsat", "lsgan")  # losses.ADVERSARIAL
INITS = ("l1", "prefix", "random", "svs")  # students.INITS
PIXEL_KINDS = ("l1", "mse", "l1+mse")  # losses.pixel_loss
FEATURE_KINDS = ("mse", "relative")  # losses.feature_loss
LR_SCHEDULES = ("constant", "cosine", "linear")  # engine.lr_at
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")  # export.FORMATS
SPLITS = ("train", "test")
METRICS = ("fid", "kid", "is")  # evaluate()'s image metrics
IMAGE_CHANNELS = (1, 3)
STYLEGAN2_RESOLUTIONS = tuple(2**i for i in range(3, 11))  # 8, 16, ..., 1024


def scaled(channels: int, width: float) -> int:
    """Channels of a hidden layer at ``width``: rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _check_seed(obj, name: str = "seed") -> None:
    _check_range(obj, (name,), 0, MAX_SEED)


# --- fields several configs share, each stated once ---------------------------------------------------

def _out(default: str, help: str = "output run directory"):
    return field(default, help=help, path=True)


def _size(default: int, help: str = ""):
    """A channel count or latent size."""
    return field(default, help=help, range=f"[1, {MAX_SIZE}]")


_BATCH_RANGE = ("(0, inf)", f"[1, {MAX_SIZE}]")  # "> 0" first: the message a batch of 0 has always had


def _batch(default: int, help: str = "images per step (per process under torchrun)"):
    return field(default, help=help, range=_BATCH_RANGE)


def _width(default: float = 1.0, help: str = "width multiplier of every hidden layer, in (0, 1]"):
    return field(default, help=help, range="(0, 1]")


def _resolution(choices=(32, 64)):
    return field(32, help="image size (32 or 64)", choices=choices)


def _positive(default, help: str):
    return field(default, help=help, range="(0, inf)")


def _at_least_0(default, help: str):
    return field(default, help=help, range="[0, inf)")


def _unit_open(default: float, help: str):
    return field(default, help=help, range="[0, 1)")


def _num_samples(default: int = 10_000):
    return field(default, help="generated images per model for FID/KID/IS", check=_check_covariance)


def _check_covariance(obj, name: str) -> None:
    _check(getattr(obj, name) >= 2, name, f"must be >= 2 (a covariance needs two samples), got "
                                          f"{_show(getattr(obj, name))}")


def _check_disc_batch(obj) -> None:
    # a part of each batch goes through the discriminators: more than the batch would silently mean all of it
    _check(obj.disc_batch <= obj.batch_size, "disc_batch",
           f"must be <= batch_size ({obj.batch_size}; 0 = the whole batch), got {_show(obj.disc_batch)}")


def _check_resume(obj) -> None:
    _check(not (obj.resume and obj.overwrite), "overwrite", "and resume exclude each other: resume continues "
           "the run in out, overwrite starts it over")


def width_tag(config) -> str:
    """A short name for a generator's size: ``w0.25`` for a uniform width, ``c64-16-32`` for per-block counts."""
    counts = getattr(config, "layer_channels", ())
    return "c" + "-".join(str(c) for c in counts) if counts else f"w{config.width:g}"


_LAYER_CHANNELS = "per-block channel counts, lowest resolution first (4x4, 8x8, ...); empty: the family's rule x width"


@dataclass(frozen=True)
class DCGANConfig(ConfigMixin):
    """DCGAN generator/discriminator. ``width`` multiplies every hidden layer's channels."""

    family: ClassVar[str] = "dcgan"
    resolution: int = _resolution()
    channels: int = field(1, help="image channels (1 or 3)", choices=IMAGE_CHANNELS)
    z_dim: int = _size(100, "latent size")
    base_channels: int = _size(64, "channels of the narrowest hidden layer at width 1")
    width: float = _width()
    layer_channels: tuple[int, ...] = field((), help=_LAYER_CHANNELS)
    spectral_norm: bool = field(True, help="discriminator only: spectral normalization")
    image_bias: bool = field(True, help="generator only: a bias on the image layer (the PyTorch DCGAN example's "
                                        "generator has none)")
    disc_batch_norm: bool = field(False, help="discriminator only: batch norm after every strided convolution but "
                                              "the first, and no convolution biases (the PyTorch DCGAN example's)")

    def _validate(self):
        _check_layer_channels(self, 3 if self.resolution == 32 else 4)


@dataclass(frozen=True)
class StyleGAN2LiteConfig(ConfigMixin):
    """gandistill's earlier small StyleGAN2-like family (bilinear resampling, one w, tanh): see models/stylegan2_lite.py."""

    family: ClassVar[str] = "stylegan2-lite"
    resolution: int = _resolution()
    channels: int = field(1, help="image channels (1 or 3)", choices=IMAGE_CHANNELS)
    z_dim: int = _size(128, "latent size")
    w_dim: int = _size(128, "intermediate latent size")
    mapping_layers: int = field(4, help="mapping network layers", range=f"[1, {MAX_LAYERS}]")
    base_channels: int = _size(32, "channels at the output resolution at width 1")
    width: float = _width()
    mbstd_group: int = _size(4, "discriminator only: minibatch-stddev group size")


@dataclass(frozen=True)
class StyleGAN2Config(ConfigMixin):
    """StyleGAN2 as published (NVlabs stylegan2-ada-pytorch / rosinality stylegan2-pytorch draw the same images).

    Channels at resolution r: ``min(channel_base // r, channel_max)`` times ``width`` (NVlabs' rule; rosinality's
    table is channel_base 16384 x channel_multiplier, channel_max 512).
    """

    family: ClassVar[str] = "stylegan2"
    resolution: int = field(32, help="image size: 8, 16, ..., 1024", choices=STYLEGAN2_RESOLUTIONS)
    channels: int = field(1, help="image channels (1 or 3)", choices=IMAGE_CHANNELS)
    z_dim: int = _size(128, "latent size")
    w_dim: int = _size(128, "intermediate latent size")
    mapping_layers: int = field(4, help="mapping network layers", range=f"[1, {MAX_LAYERS}]")
    mapping_lr_mul: float = _positive(0.01, "the mapping network's learning-rate multiplier")
    # divided by the resolution (NVlabs' 1024 px configs use 32768): channels stay <= channel_max anyway
    channel_base: int = field(4096, help="channels at resolution r: channel_base // r",
                              range=f"[1, {MAX_CHANNEL_BASE}]")
    channel_max: int = _size(256, "the most channels of any block")
    width: float = _width()
    layer_channels: tuple[int, ...] = field((), help=_LAYER_CHANNELS + " (a block's convolutions share its count)")
    conv_clamp: float | None = _positive(None, "clamp of every activation (NVlabs sets 256 for mixed-precision "
                                               "configs)")
    w_avg_beta: float = field(0.995, help="decay of the tracked mean w; 1 stops tracking", range="[0, 1]")
    mbstd_group: int = _size(4, "discriminator only: minibatch-stddev group size")
    mbstd_channels: int = _size(1, "discriminator only: minibatch-stddev channels")

    def _validate(self):
        _check_layer_channels(self, int(math.log2(self.resolution)) - 1)
        _check(min(self.channel_base // self.resolution, self.channel_max) >= 1, "channel_base",
               f"must be >= resolution ({self.resolution}) so that every block has a channel, got {self.channel_base}")


MODEL_CONFIGS: dict[str, type] = {"dcgan": DCGANConfig, "stylegan2": StyleGAN2Config,
                                  "stylegan2-lite": StyleGAN2LiteConfig}
GAN_FAMILIES = tuple(MODEL_CONFIGS)  # models.GENERATORS; the classifier's config joins MODEL_CONFIGS below


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


# fields several configs share (most of them how a run steps, logs and saves), each stated once: _run(name)
_DATA = "dataset name (for distill also 'none': data-free, teacher images count as real)"
_RUN_FIELDS: dict[str, dict] = {
    "data": dict(default="fashion-mnist", help=_DATA, check=_check_name),
    "split": dict(default="train", help="dataset split to train on", choices=SPLITS),
    "data_root": dict(default=None, path=True, help="folder holding the dataset (default: search $GANDISTILL_DATA, "
                                                    "then system folders)"),
    "seed": dict(default=0, help="random seed", check=_check_seed),
    "device": dict(default="cpu", help="cpu or cuda", check=_check_device),
    "steps": dict(help="optimizer steps in total (a resumed run continues up to this)", range="[0, inf)"),
    "batch_size": dict(default=64, help="images per step (per process under torchrun)", range=_BATCH_RANGE),
    "g_lr": dict(help="generator/student learning rate", range="(0, inf)"),
    "d_lr": dict(help="discriminator learning rate", range="(0, inf)"),
    "beta1": dict(default=0.5, help="Adam beta1", range="[0, 1)"),
    "beta2": dict(default=0.999, help="Adam beta2", range="[0, 1)"),
    "ema": dict(default=True, help="keep an exponential moving average of the generator and save it"),
    "ema_decay": dict(default=0.999, help="EMA decay per step", range="[0, 1)"),
    "amp": dict(default=False, help="bf16 autocast (CUDA only)"),
    "checkpoint_every": dict(default=500, help="write the resumable state every N steps", range="(0, inf)"),
    "sample_every": dict(default=500, help="write a sample grid every N steps (0 = never)", range="[0, inf)"),
    "log_every": dict(default=50, help="write a log.jsonl record every N steps", range="(0, inf)"),
    "max_bad_steps": dict(default=5, range="(0, inf)", help="non-finite steps in a row before reloading the last "
                                                            "good state with halved learning rates"),
    "resume": dict(default=False, help="continue the run in --out from its state.pt"),
    # never with resume
    "overwrite": dict(default=False, help="write into an --out that holds files this command did not make (a run "
                                          "there starts over)"),
}


def _run(name: str, default=dataclasses.MISSING):
    return field(**{**_RUN_FIELDS[name], **({} if default is dataclasses.MISSING else {"default": default})})



@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """``train()``: a GAN from scratch (teachers, and the same-size-from-scratch baseline)."""

    out: str = _out("runs/train")
    family: str = field("dcgan", help="model family", choices=GAN_FAMILIES)
    resolution: int = field(32, help="image size (32 or 64)")  # the model config checks it
    channels: int = field(1, help="image channels (1 or 3)")
    base_channels: int = _size(64, "channels of the narrowest hidden layer at width 1 (stylegan2: at the output "
                                   "resolution, doubling below it up to 4x)")
    width: float = _width()
    d_width: float = _width(help="the discriminator's width multiplier")
    data: str = _run("data")
    data_root: str | None = _run("data_root")
    split: str = _run("split")
    holdout: int = _at_least_0(0, "keep the last N images of the split out of training (for checkpoint selection)")
    steps: int = _run("steps", 10_000)
    batch_size: int = _run("batch_size")
    g_lr: float = _run("g_lr", 2e-4)
    d_lr: float = _run("d_lr", 2e-4)
    beta1: float = _run("beta1")
    beta2: float = _run("beta2")
    loss: str = field("hinge", help="adversarial loss", choices=ADVERSARIAL_LOSSES)
    # StyleGAN2's default 0.1 is set by the CLI preset when 0 is kept
    r1_gamma: float = _at_least_0(0.0, "lazy R1 penalty weight on real images (0 = off)")
    r1_every: int = _positive(16, "apply R1 every N steps")
    ema: bool = _run("ema")
    ema_decay: float = _run("ema_decay")
    seed: int = _run("seed")
    device: str = _run("device")
    amp: bool = _run("amp")
    checkpoint_every: int = _run("checkpoint_every")
    snapshot_every: int = _at_least_0(0, "save a copy of the generator every N steps (0 = never)")
    sample_every: int = _run("sample_every")
    log_every: int = _run("log_every")
    max_bad_steps: int = _run("max_bad_steps")
    resume: bool = _run("resume")
    overwrite: bool = _run("overwrite")
    init_from: str | None = field(None, path=True, help="GAN directory to start from: its generator and "
                                  "discriminator weights (the EMA starts from the generator; optimizers and the step "
                                  "count start fresh), e.g. to train a shipped teacher further")

    def _validate(self):
        _check_resume(self)
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
_DISC_BATCH = ("how many of each batch's images go through the discriminators (disc_feature, disc_kl, adversarial "
               "and the discriminator's own update); 0 = all. The discriminators cost most of a step on a small "
               "student, so fewer buys more steps per second")


@dataclass(frozen=True)
class DistillConfig(ConfigMixin):
    """``distill()``: teacher -> student. A loss weight of 0 turns that term off."""

    teacher: str = field("pretrained/dcgan-fmnist", path=True,
                         help="teacher: a GAN directory (generator/ + discriminator/) or a generator directory")
    out: str = _out("runs/distill")
    # left at 0.25 when widths or macs is given
    width: float = _width(0.25)
    widths: tuple = field((), help="per-block widths instead of one width, lowest resolution first, comma-separated: "
                          "factors of the teacher's channels (0.5) or channel counts (16), e.g. 0.5,16,0.5 "
                          "(`gandistill info TEACHER` lists the blocks)")
    # picked by budget.pick_widths with `balance`, printed and recorded in the student's config
    macs: str | float | None = field(None, help="a MACs-per-image budget instead of a width: 1.5M, 250k, 1500000, "
                                     "or 10x (ten times fewer than the teacher); the per-block widths are picked for "
                                     "it and printed")
    # 0.25 ranked first of six balances at the w0.25 DCGAN student's MACs (fid5k[fmnist-cnn] on train 24.3 vs 25.3
    # uniform, 28.3 at 0.5, 43.9 at 1; 2,000 steps, `gandistill search`, docs/results.md)
    balance: float = field(0.25, range="[-1, 1]", help="with --macs: how the budget is shared, 0 = one uniform "
                           "width, 1 = cheap blocks kept whole and the dear ones narrowed, negative = the other way "
                           "(gandistill search measures which distils best)")
    # prefix (the first k channels) since 2026-12-05: the w0.25 DCGAN student at 6,000 steps with --disc-batch 8
    # reaches fid10k[fmnist-cnn] 16.8 +- 0.5 and fid1k[inception] 44.9 +- 0.6 over three seeds against 20.9 +- 1.3
    # and 47.8 +- 0.4 with l1, and at 13,000 steps 12.78 / 41.27 against 15.60 / 42.35 (docs/recipe.md)
    init: str = field("prefix", choices=INITS, help="how the student inherits the teacher: l1 (largest filters), "
                      "prefix (first k), random, or svs (l1 with each weight's singular values evened out)")
    data: str = _run("data")
    data_root: str | None = _run("data_root")
    split: str = _run("split")
    steps: int = _run("steps", 3000)
    batch_size: int = _run("batch_size")
    # lr 1e-3 with cosine decay: fid10k[fmnist-cnn] 31.2 +- 1.6 (3 seeds) against 46.0 at a constant 2e-4 for the
    # w0.25 DCGAN student at 1500 steps (docs/recipe.md)
    g_lr: float = _run("g_lr", 1e-3)
    d_lr: float = _run("d_lr", 1e-3)
    beta1: float = _run("beta1")
    beta2: float = _run("beta2")
    pixel: float = _at_least_0(1.0, "weight of the pixel loss (student vs teacher image)")
    pixel_kind: str = field("l1", help="pixel loss: l1, mse or l1+mse", choices=PIXEL_KINDS)
    feature: float = _at_least_0(1.0, "weight of the generator-feature loss (1x1 adapters)")
    disc_feature: float = _at_least_0(1.0, "weight of the discriminator-feature L1 loss")
    perceptual: float = _at_least_0(0.0, "weight of the perceptual loss (needs --classifier)")
    disc_kl: float = _at_least_0(1.0, "weight of the discriminator-logit KL")
    kl_temperature: float = _positive(1.0, "temperature of the discriminator-logit KL")
    class_kl: float = _at_least_0(0.0, "weight of the class-logit KL (needs --classifier)")
    class_alpha: float = field(0.5, help="class_kl: weight of the hard-label cross-entropy", range="[0, 1]")
    class_temperature: float = _positive(4.0, "class_kl: softmax temperature")
    adversarial: float = _at_least_0(0.1, "weight of the adversarial term")
    adv_loss: str = field("hinge", help="adversarial loss", choices=ADVERSARIAL_LOSSES)
    disc_batch: int = field(0, help=_DISC_BATCH, range=(f"[0, {MAX_SIZE}]", "[0, inf)"))
    feature_kind: str = field("mse", choices=FEATURE_KINDS, help="feature loss per tap: mse, or relative (MSE over "
                              "the teacher tap's mean square, so every tap weighs alike whatever its scale)")
    lr_schedule: str = field("cosine", choices=LR_SCHEDULES, help="learning rates over the run: constant, or cosine "
                             "/ linear decay to 0 at --steps (a --resume with another --steps continues on the new "
                             "schedule)")
    classifier: str | None = field(None, path=True, help="classifier directory for perceptual / class_kl (e.g. "
                                   "pretrained/fmnist-cnn-b; not the network you will judge the student with: its FID "
                                   "would then be meaningless, docs/evaluation.md)")
    ema: bool = _run("ema")
    ema_decay: float = _run("ema_decay")
    seed: int = _run("seed")
    device: str = _run("device")
    amp: bool = _run("amp")
    channels_last: bool = field(False, help="channels_last memory format")
    checkpoint_every: int = _run("checkpoint_every")
    sample_every: int = _run("sample_every")
    log_every: int = _run("log_every")
    max_bad_steps: int = _run("max_bad_steps")
    resume: bool = _run("resume")
    overwrite: bool = _run("overwrite")

    @staticmethod
    def made_with(record: dict[str, Any]) -> dict[str, Any]:
        """The settings a run was made with, from what it recorded (a student's ``extra.distill``, a state.pt's
        ``config``): settings added since (``DISTILL_ADDED``) filled in with the value they had then."""
        return {**DISTILL_ADDED, **record}

    def _validate(self):
        _check_resume(self)
        _check_student_size(self)
        _check_disc_batch(self)
        _check(any((self.pixel, self.feature, self.disc_feature, self.perceptual, self.disc_kl, self.class_kl,
                    self.adversarial)), "pixel", "feature, disc_feature, perceptual, disc_kl, class_kl and "
               "adversarial are all 0: nothing would train the student; give at least one loss a weight")
        _check(not ((self.perceptual or self.class_kl) and not self.classifier), "classifier",
               "is needed when perceptual or class_kl > 0 (e.g. --classifier pretrained/fmnist-cnn-b)")


@dataclass(frozen=True)
class ClassifierConfig(ConfigMixin):
    """The small CNN used for FID/KID/IS features on Fashion-MNIST and for perceptual/class losses."""

    family: ClassVar[str] = "fmnist-cnn"
    resolution: int = _resolution()
    channels: int = field(1, help="image channels (1 or 3)", choices=IMAGE_CHANNELS)
    num_classes: int = _size(10, "classes")
    width: int = _size(32, "channels of the first stage; later stages double it")
    feature_dim: int = _size(256, "classifier: size of the feature layer (the FID/KID tap)")


MODEL_CONFIGS["fmnist-cnn"] = ClassifierConfig


@dataclass(frozen=True)
class ClassifierTrainConfig(ConfigMixin):
    """``train_classifier()``: the Fashion-MNIST CNN behind the ``fmnist-cnn`` feature extractor."""

    out: str = _out("runs/fmnist-cnn")
    data: str = field("fashion-mnist", help="labelled dataset to train on", check=_check_name)
    data_root: str | None = _run("data_root")
    width: int = field(32, help="channels of the first stage; later stages double it",
                       range=_BATCH_RANGE)
    feature_dim: int = field(256, help="classifier: size of the feature layer (the FID/KID tap)",
                             range=_BATCH_RANGE)
    epochs: int = _positive(15, "passes over the training split")
    batch_size: int = _batch(128)
    lr: float = _positive(0.05, "peak learning rate (SGD, Nesterov momentum, cosine decay)")  # one warm-up epoch
    momentum: float = _unit_open(0.9, "SGD momentum")
    weight_decay: float = _at_least_0(5e-4, "weight decay of conv/linear weights")
    label_smoothing: float = _unit_open(0.0, "cross-entropy label smoothing")
    augment: bool = field(True, help="random horizontal flips and 2-pixel shifts")
    seed: int = _run("seed")
    device: str = _run("device")
    num_threads: int = _at_least_0(0, "torch CPU threads (0 = torch's default)")


def _check_metrics(obj, name: str = "metrics") -> None:
    metrics = obj.metrics
    if isinstance(metrics, str):
        metrics = (metrics,)
    elif isinstance(metrics, (list, tuple)):
        metrics = tuple(metrics)
    else:
        _fail("metrics", f"must be a non-empty subset of {', '.join(METRICS)}", metrics)
    object.__setattr__(obj, "metrics", metrics)
    bad = [m for m in metrics if not isinstance(m, str) or m not in METRICS]
    _check(not bad and len(metrics) > 0, "metrics", f"must be a non-empty subset of {', '.join(METRICS)}; got "
                                                    f"{_show(bad or list(metrics))}")


_PAIRED = "latents for PSNR/SSIM/feature distance of the student against its teacher (0 = off)"


@dataclass(frozen=True)
class EvalConfig(ConfigMixin):
    """``evaluate()``: one protocol shared by every generator evaluated together."""

    dataset: str = field("fashion-mnist", help="dataset whose real images give the evaluation statistics",
                         check=_check_name)
    split: str = field("test", help="dataset split whose real images are compared against", choices=SPLITS)
    metrics: tuple[str, ...] = field(METRICS, help="metrics to compute", check=_check_metrics)
    extractor: str = field("fmnist-cnn", help="feature extractor for FID/KID/IS", check=_check_name)
    num_samples: int = _num_samples()
    seed: int = _run("seed")
    device: str = _run("device")
    batch_size: int = _size(200, "images per forward pass")
    data_root: str | None = _run("data_root")
    paired: int = _at_least_0(1000, _PAIRED)


@dataclass(frozen=True)
class ProfileConfig(ConfigMixin):
    """``profile()``: latency at batch 1 and throughput at a large batch, warm-up runs excluded."""

    device: str = _run("device")
    latency_runs: int = _positive(50, "timed runs at batch 1")
    throughput_batch: int = _batch(64, "batch of the throughput runs")
    throughput_runs: int = _positive(10, "timed runs at the throughput batch")
    warmup: int = _at_least_0(5, "untimed runs first")
    rounds: int = _positive(5, "the runs are split into rounds in which the models take turns; spread is across "
                               "rounds")


@dataclass(frozen=True)
class DemoConfig(ConfigMixin):
    """``gandistill demo``: distill the shipped teacher, evaluate both, profile, export, report."""

    teacher: str = field("pretrained/dcgan-fmnist", path=True,
                         help="teacher: a GAN directory (generator/ + discriminator/) or a generator directory")
    out: str = _out("runs/demo", "demo output directory (report, plot, grids, export, distill/)")
    width: float = _width(0.25)
    # the short preset, ~7 min of distillation on a 2-core CPU: with 8 images a step through the discriminators
    # (--disc-batch) a step costs a third of one with all 64, and the student is better at the same wall time
    # (docs/recipe.md, "Where a step's time goes")
    steps: int = _positive(6000, "distillation steps (the short preset)")
    batch_size: int = _run("batch_size")
    disc_batch: int = field(8, help=_DISC_BATCH, range=("[0, inf)", f"[0, {MAX_SIZE}]"))
    data: str = field("fashion-mnist", help="dataset the distillation's discriminator sees as real",
                      check=_check_name)
    data_root: str | None = _run("data_root")
    dataset: str = field("fashion-mnist", help="dataset whose real images give the evaluation statistics",
                         check=_check_name)
    split: str = field("test", help="split of --dataset whose real images are compared against", choices=SPLITS)
    extractor: str = field("fmnist-cnn", help="feature extractor for FID/KID/IS", check=_check_name)
    num_samples: int = _num_samples()
    paired: int = _at_least_0(1000, _PAIRED)
    export_format: str = field("onnx", help="format of the exported student", choices=EXPORT_FORMATS)
    device: str = _run("device")
    seed: int = _run("seed")
    verbose: bool = field(True, help="print what each phase does")
    overwrite: bool = _run("overwrite")  # for a demo: files it does not make; distill/ starts over

    def _validate(self):
        _check_disc_batch(self)
