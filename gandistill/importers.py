"""Checkpoints people bring from elsewhere -> our model families. Reads tensors only, never runs code from a file.

Formats (``FORMATS``, auto-detected, ``format=`` overrides):

- ``pytorch-dcgan``: the PyTorch DCGAN tutorial / pytorch/examples ``dcgan`` layout, an ``nn.Sequential``
  named ``main`` (generator ``netG``, optionally discriminator ``netD``), mapped exactly onto ``dcgan``;
- ``rosinality-stylegan2``: rosinality's ``stylegan2-pytorch`` checkpoints (``g_ema``): recognised, refused;
- ``nvlabs-pkl``: NVlabs ``stylegan2-ada-pytorch`` / ``stylegan3`` pickles, read by a restricted unpickler
  that builds inert placeholders for the classes they name: recognised, refused.

The two StyleGAN layouts are refused in one line rather than loaded into our smaller stylegan2 family,
which would draw different images (docs/importing.md says what matches and what does not).
"""
from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_state, load_weights, sha256_file
from .config import DCGANConfig
from .models import build_discriminator, build_generator
from .registry import Registry


class ImportRefused(ValueError):
    """A checkpoint gandistill recognises but will not load: the message says why, on one line."""


@dataclass
class Imported:
    """What an importer made of a file: our modules and the mapping it used, for the report."""

    format: str
    path: Path
    generator: nn.Module
    discriminator: nn.Module | None = None
    sources: dict[str, str] = field(default_factory=dict)  # "generator"/"discriminator" -> where in the file
    mapping: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # kind -> (theirs, ours, what)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """One screen: format, where each network was found, its inferred config, and the layer mapping."""
        lines = [f"format:  {self.format} ({FORMATS.get(self.format).description})", f"file:    {self.path}"]
        for kind, model in (("generator", self.generator), ("discriminator", self.discriminator)):
            if model is None:
                continue
            cfg = model.config
            where = self.sources.get(kind) or "top level"
            if kind == "generator":
                shape = (f"{cfg.resolution}x{cfg.resolution} px, {cfg.channels} channel(s), z_dim {cfg.z_dim}, "
                         f"base_channels {cfg.base_channels}, image layer {'with' if cfg.image_bias else 'without'} "
                         f"bias")
            else:
                shape = (f"{cfg.resolution}x{cfg.resolution} px, {cfg.channels} channel(s), base_channels "
                         f"{cfg.base_channels}, {'batch norm' if cfg.disc_batch_norm else 'no batch norm'}, "
                         f"no spectral norm")
            lines.append(f"{kind}: {model.family} from {where}: {shape}")
            rows = self.mapping.get(kind, [])
            width = max((len(theirs) for theirs, _, _ in rows), default=0)
            what_width = max((len(what) for _, _, what in rows), default=0)
            lines += [f"  {theirs:<{width}}  {what:<{what_width}}  -> {ours}" for theirs, ours, what in rows]
            lines.append(f"  {len(model.state_dict())} tensors loaded; every tensor of that state dict placed")
        if self.discriminator is None:
            lines.append("discriminator: none in the file (distill will train a fresh one)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportFormat:
    """One checkpoint format: ``detect(obj)`` says what it found (None: not this format); ``convert`` maps it."""

    name: str
    description: str
    detect: Callable[[Any], str | None]
    convert: Callable[[Any, Path], Imported]


FORMATS: Registry[ImportFormat] = Registry("import format")


# --- reading a file without running code from it ----------------------------------------------------------

def read_checkpoint(path: str | os.PathLike) -> Any:
    """The file's contents: torch files through ``weights_only=True``, safetensors as tensors, ``.pkl`` files
    (NVlabs) through the restricted unpickler. Nothing in the file is executed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing")
    if not path.is_file():
        raise ValueError(f"{path}: expected a checkpoint file, got a directory")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors":
        return load_weights(path)
    if path.suffix == ".pkl" and not zipfile.is_zipfile(path) and head[:1] == b"\x80":
        return load_nvlabs_pickle(path)
    return load_state(path)


# --- pytorch-dcgan: an nn.Sequential named "main" -------------------------------------------------------

_G_KEYS = ("netG_state_dict", "netG", "generator_state_dict", "generator", "G_state_dict", "G", "state_dict",
           "model")
_D_KEYS = ("netD_state_dict", "netD", "discriminator_state_dict", "discriminator", "D_state_dict", "D")
_MAIN_KEY = re.compile(r"main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _main_layers(state: dict) -> list[tuple[int, str, dict[str, torch.Tensor]]] | None:
    """[(index, "conv" | "bn", params)] of a ``main.<i>.<param>`` state dict in index order, else None."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in _strip(state).items():
        m = _MAIN_KEY.fullmatch(key)
        if m is None:
            return None
        layers.setdefault(int(m[1]), {})[m[2]] = tensor
    out = []
    for index in sorted(layers):
        params = layers[index]
        if "running_mean" in params:
            out.append((index, "bn", params))
        elif "weight" in params and params["weight"].ndim == 4:
            out.append((index, "conv", params))
        else:
            return None
    return out or None


def _layout(layers) -> str:
    """'generator', 'discriminator' or 'unknown', by where the batch norms sit (netG: after every conv but
    the last, at i+1; netD: none after the first conv, and the last conv maps to 1 channel)."""
    kinds = [k for _, k, _ in layers]
    if len(kinds) >= 3 and kinds[-1] == "conv" and kinds[:-1] == ["conv", "bn"] * ((len(kinds) - 1) // 2):
        return "generator"
    if len(kinds) >= 3 and kinds[0] == "conv" and kinds[-1] == "conv" and layers[-1][2]["weight"].shape[0] == 1:
        return "discriminator"
    return "unknown"


def _find_main(obj) -> dict[str, tuple[str | None, dict]]:
    """{"generator"/"discriminator": (wrapper key, state dict)} of the ``main.*`` state dicts in ``obj``."""
    found: dict[str, tuple[str | None, dict]] = {}
    candidates = [(None, obj)] if _is_state_dict(obj) else []
    if isinstance(obj, dict):
        candidates += [(k, obj[k]) for k in (*_G_KEYS, *_D_KEYS) if k in obj and _is_state_dict(obj[k])]
    for key, state in candidates:
        layers = _main_layers(state)
        if layers is None:
            continue
        kind = _layout(layers)
        if kind != "unknown" and kind not in found:
            found[kind] = (key, state)
        elif kind == "unknown" and "unknown" not in found:
            found["unknown"] = (key, state)
    return found


def _detect_dcgan(obj) -> str | None:
    found = _find_main(obj)
    if not found:
        return None
    return ", ".join(f"{kind} ({key or 'top level'})" for kind, (key, _) in found.items())


def _halving(channels: list[int]) -> bool:
    return all(a == 2 * b for a, b in zip(channels, channels[1:], strict=False))


def _dcgan_generator(layers, where: str) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    convs = [p for _, k, p in layers if k == "conv"]
    bns = [p for _, k, p in layers if k == "bn"]
    idx = [i for i, k, _ in layers if k == "conv"]
    shapes = [list(c["weight"].shape) for c in convs]
    hidden = [s[1] for s in shapes[:-1]]
    expected = "4 or 5 transposed convolutions with 4x4 kernels, hidden channels halving (8b,4b,2b,b at 64 px; " \
               "4b,2b,b at 32 px), 1 or 3 image channels"
    ok = (len(convs) in (4, 5) and all(s[2:] == [4, 4] for s in shapes) and _halving(hidden)
          and all(a[1] == b[0] for a, b in zip(shapes, shapes[1:], strict=False)) and shapes[-1][1] in (1, 3)
          and all(bn["running_mean"].shape[0] == h for bn, h in zip(bns, hidden, strict=True)))
    if not ok:
        raise ValueError(f"{where}: a DCGAN generator layout whose shapes fit no known size: found transposed "
                         f"convolutions {shapes}; expected {expected}")
    config = DCGANConfig(resolution=64 if len(convs) == 5 else 32, channels=shapes[-1][1], z_dim=shapes[0][0],
                         base_channels=hidden[-1], image_bias="bias" in convs[-1])
    model = build_generator("dcgan", config)
    state, rows = {}, []
    for b, (conv, bn) in enumerate(zip(convs[:-1], bns, strict=True)):
        state[f"blocks.{b}.conv.weight"] = conv["weight"]
        rows.append((f"main.{idx[b]}", f"blocks.{b}.conv", f"ConvTranspose2d {list(conv['weight'].shape)}"))
        for name in _BN_PARAMS:
            state[f"blocks.{b}.bn.{name}"] = bn.get(name, model.state_dict()[f"blocks.{b}.bn.{name}"])
        rows.append((f"main.{idx[b] + 1}", f"blocks.{b}.bn", f"BatchNorm2d {bn['running_mean'].shape[0]}"))
    state["to_img.weight"] = convs[-1]["weight"]
    if "bias" in convs[-1]:
        state["to_img.bias"] = convs[-1]["bias"]
    rows.append((f"main.{idx[-1]}", "to_img", f"ConvTranspose2d {shapes[-1]}"
                 + (" + bias" if "bias" in convs[-1] else "")))
    _load_exactly(model, state, where)
    return model, rows


def _dcgan_discriminator(layers, where: str) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    kinds = [k for _, k, _ in layers]
    convs = [p for _, k, p in layers if k == "conv"]
    bns = [p for _, k, p in layers if k == "bn"]
    idx = [i for i, k, _ in layers if k == "conv"]
    shapes = [list(c["weight"].shape) for c in convs]  # Conv2d weight: [out, in, k, k]
    hidden = [s[0] for s in shapes[:-1]]
    batch_norm = bool(bns)
    with_bias = ["bias" in c for c in convs]
    expected = ("a Conv2d then (Conv2d, BatchNorm2d) pairs, 4x4 kernels, channels doubling (b,2b,4b,8b at 64 px; "
                "b,2b,4b at 32 px) to one logit, no convolution biases with batch norm (all biases without)")
    ok = (len(convs) in (4, 5) and all(s[2:] == [4, 4] for s in shapes) and _halving(hidden[::-1])
          and all(a[0] == b[1] for a, b in zip(shapes, shapes[1:], strict=False)) and shapes[0][1] in (1, 3)
          and shapes[-1][0] == 1 and all(b != batch_norm for b in with_bias)
          and (not batch_norm or kinds == ["conv"] + ["conv", "bn"] * (len(convs) - 2) + ["conv"])
          and all(bn["running_mean"].shape[0] == h for bn, h in zip(bns, hidden[1:], strict=False)))
    if not ok:
        raise ValueError(f"{where}: a DCGAN discriminator layout whose shapes fit no known size: found "
                         f"convolutions {shapes}{' with batch norm' if batch_norm else ''}; expected {expected}")
    config = DCGANConfig(resolution=64 if len(convs) == 5 else 32, channels=shapes[0][1], base_channels=hidden[0],
                         spectral_norm=False, disc_batch_norm=batch_norm)
    model = build_discriminator("dcgan", config)
    state, rows = {}, []
    defaults = model.state_dict()
    for c, conv in enumerate(convs[:-1]):
        state[f"convs.{c}.weight"] = conv["weight"]
        if not batch_norm:
            state[f"convs.{c}.bias"] = conv["bias"]
        rows.append((f"main.{idx[c]}", f"convs.{c}", f"Conv2d {shapes[c]}"))
        if batch_norm and c > 0:
            bn = bns[c - 1]
            for name in _BN_PARAMS:
                state[f"norms.{c - 1}.{name}"] = bn.get(name, defaults[f"norms.{c - 1}.{name}"])
            rows.append((f"main.{idx[c] + 1}", f"norms.{c - 1}", f"BatchNorm2d {bn['running_mean'].shape[0]}"))
    state["out.weight"] = convs[-1]["weight"]
    if not batch_norm:
        state["out.bias"] = convs[-1]["bias"]
    rows.append((f"main.{idx[-1]}", "out", f"Conv2d {shapes[-1]}"))
    _load_exactly(model, state, where)
    return model, rows


def _load_exactly(model: nn.Module, state: dict, where: str) -> None:
    expected = model.state_dict()
    wrong = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if wrong or extra:  # the checks above should make this unreachable; never load half a model
        raise ValueError(f"{where}: mapping does not fit ({', '.join((wrong + extra)[:4])})")
    model.load_state_dict({k: v.detach().to(expected[k].dtype).clone() for k, v in state.items()})
    model.eval()


def _convert_dcgan(obj, path: Path) -> Imported:
    found = _find_main(obj)
    if "generator" not in found:
        if "discriminator" in found:
            key = found["discriminator"][0]
            raise ValueError(f"{path}: holds a DCGAN discriminator ({key or 'top level'}: Conv2d layers down to "
                             f"one logit), expected a generator (netG: ConvTranspose2d layers up to an image)")
        key, state = found.get("unknown", (None, {}))
        kinds = [k for _, k, _ in (_main_layers(state) or [])]
        raise ValueError(f"{path}: an nn.Sequential 'main' ({key or 'top level'}) whose layers {kinds} are "
                         f"neither the DCGAN generator (conv, bn, ..., conv) nor its discriminator")
    g_key, g_state = found["generator"]
    generator, g_rows = _dcgan_generator(_main_layers(g_state), f"{path} ({g_key or 'top level'})")
    imported = Imported("pytorch-dcgan", path, generator, sources={"generator": g_key or "top level"},
                        mapping={"generator": g_rows})
    if "discriminator" in found:
        d_key, d_state = found["discriminator"]
        disc, d_rows = _dcgan_discriminator(_main_layers(d_state), f"{path} ({d_key})")
        if (disc.config.resolution, disc.config.channels) != (generator.config.resolution, generator.config.channels):
            raise ValueError(f"{path}: the discriminator ({d_key}) takes {disc.config.resolution} px, "
                             f"{disc.config.channels} channel(s), the generator draws {generator.config.resolution}"
                             f" px, {generator.config.channels} channel(s)")
        imported.discriminator, imported.sources["discriminator"] = disc, d_key
        imported.mapping["discriminator"] = d_rows
        imported.notes.append("the discriminator returns logits: the original's final Sigmoid is left out")
    imported.notes.append(f"z is [N, {generator.z_dim}] here; the original takes it as [N, {generator.z_dim}, 1, 1]")
    return imported


FORMATS.register("pytorch-dcgan", ImportFormat(
    "pytorch-dcgan", "PyTorch DCGAN tutorial / pytorch/examples dcgan: nn.Sequential 'main', netG and netD",
    _detect_dcgan, _convert_dcgan))


# --- rosinality stylegan2-pytorch: recognised, refused -----------------------------------------------------

STYLEGAN_GAP = ("our stylegan2 family is a smaller variant (32/64 px, bilinear up-sampling without the FIR "
                "blur filter, one w for every layer, tanh on the output) and would draw different images")


def _detect_rosinality(obj) -> str | None:
    if not isinstance(obj, dict) or not _is_state_dict(obj.get("g_ema")):
        return None
    keys = obj["g_ema"]
    if not any(k.startswith(("style.", "convs.", "to_rgbs.")) for k in keys):
        return None
    return "g_ema (rosinality stylegan2-pytorch Generator)"


def _convert_rosinality(obj, path: Path) -> Imported:
    g = obj["g_ema"]
    size = 2 ** (2 + sum(1 for k in g if re.fullmatch(r"to_rgbs\.\d+\.bias", k)))  # one ToRGB per doubling from 8
    style_dim = g["style.1.weight"].shape[0] if "style.1.weight" in g else "?"
    n_mlp = sum(1 for k in g if re.fullmatch(r"style\.\d+\.weight", k))
    raise ImportRefused(f"{path}: rosinality stylegan2-pytorch checkpoint (g_ema: {size} px, style_dim {style_dim}, "
                        f"{n_mlp} mapping layers) recognised but not imported: {STYLEGAN_GAP}; see docs/importing.md")


FORMATS.register("rosinality-stylegan2", ImportFormat(
    "rosinality-stylegan2", "rosinality stylegan2-pytorch checkpoint with g_ema (recognised, refused)",
    _detect_rosinality, _convert_rosinality))


# --- NVlabs stylegan2-ada-pytorch / stylegan3 pickles: a restricted unpickler -------------------------------

class Placeholder:
    """An inert stand-in for a class an NVlabs pickle names: it keeps the pickled state and has no behaviour."""

    class_name = "?"
    state: Any = None

    def __init__(self, class_name: str, state: Any = None):
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state):  # pickle's BUILD: keep the data, run nothing
        self.state = state

    def __repr__(self) -> str:
        return f"Placeholder({self.class_name})"


def _persistent_obj(meta) -> Placeholder:
    # NVlabs' own reconstructor executes meta["module_src"]; here it is only kept as text, never run
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object without the expected class metadata")
    return Placeholder(str(meta.get("class_name")), meta.get("state"))


class _EasyDict(dict):
    """dnnlib.util.EasyDict as data: a plain dict."""


def _storage_from_bytes(data: bytes):
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("tensor storage is not bytes")
    return torch.load(io.BytesIO(data), weights_only=True)  # the storage's own bytes: tensors only


def _rebuild_parameter(data, requires_grad, backward_hooks, *args):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
}
try:  # stylegan3 layers keep sizes and cut-offs as numpy arrays: rebuilt as data, as torch's own allowlist does
    import numpy as np

    _multiarray = (getattr(np, "_core", None) or np.core).multiarray
    for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        _ALLOWED[(_module, "_reconstruct")] = _multiarray._reconstruct
        _ALLOWED[(_module, "scalar")] = _multiarray.scalar
    _ALLOWED.update({("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype})
except ImportError:  # pragma: no cover - numpy ships with torch
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in ``_ALLOWED`` (data builders) and ``torch.nn.modules`` classes (as inert
    placeholders); anything else, ``os.system`` or ``builtins.eval`` included, stops the load."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.startswith("torch.nn.modules.") and name.isidentifier() and name[:1].isupper():
            return _placeholder_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (not a tensor or a known data container)")


def _placeholder_class(qualname: str) -> type:
    # pickle makes these with cls.__new__(cls, ...) and then hands the state to __setstate__
    return type("Placeholder", (Placeholder,), {"class_name": qualname,
                                                "__init__": lambda self, *a, **k: None,
                                                "__new__": lambda cls, *a, **k: object.__new__(cls)})


def load_nvlabs_pickle(path: str | os.PathLike) -> Any:
    """An NVlabs pickle's contents with every network as a ``Placeholder`` holding its state; runs no code."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds; one clear line for all
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: unreadable or unsafe pickle ({first})") from None


def placeholder_tensors(obj: Placeholder, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict a placeholder for an ``nn.Module`` would have had: parameters, buffers, submodules."""
    state = obj.state if isinstance(obj.state, dict) else {}
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t
    for name, sub in (state.get("_modules") or {}).items():
        if isinstance(sub, Placeholder):
            out.update(placeholder_tensors(sub, f"{prefix}{name}."))
    return out


def _detect_nvlabs(obj) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("G_ema"), Placeholder):
        return f"G_ema ({obj['G_ema'].class_name}, NVlabs pickle)"
    return None


def _convert_nvlabs(obj, path: Path) -> Imported:
    g = obj["G_ema"]
    state = g.state if isinstance(g.state, dict) else {}
    tensors = placeholder_tensors(g)
    size = state.get("img_resolution", "?")
    raise ImportRefused(f"{path}: NVlabs {g.class_name} pickle (G_ema: {size} px, z_dim {state.get('z_dim', '?')}, "
                        f"w_dim {state.get('w_dim', '?')}, {len(tensors)} tensors read without running its code) "
                        f"recognised but not imported: {STYLEGAN_GAP}; see docs/importing.md")


FORMATS.register("nvlabs-pkl", ImportFormat(
    "nvlabs-pkl", "NVlabs stylegan2-ada-pytorch / stylegan3 .pkl with G_ema (read safely; recognised, refused)",
    _detect_nvlabs, _convert_nvlabs))


# --- the entry point ------------------------------------------------------------------------------------------

def _describe(obj) -> str:
    if _is_state_dict(obj):
        keys = list(obj)
        return f"a state dict of {len(keys)} tensors ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        return f"a dict with keys {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"
    return f"a {type(obj).__name__}"


def import_checkpoint(path: str | os.PathLike, format: str = "auto") -> Imported:
    """Read a checkpoint trained elsewhere and map it onto our families (config inferred from the shapes).

    ``format``: one of ``FORMATS`` or "auto" (detected). Raises ValueError (one line) for a file no importer
    accepts, and ``ImportRefused`` for a recognised layout that would not draw the same images here.
    """
    path = Path(path)
    if format != "auto":
        FORMATS.get(format)
    obj = read_checkpoint(path)
    names = [format] if format != "auto" else FORMATS.names()
    for name in names:
        if FORMATS.get(name).detect(obj) is not None:
            imported = FORMATS.get(name).convert(obj, path)
            imported.notes.append(f"source sha256 {sha256_file(path)}")
            return imported
    if format != "auto":
        raise ValueError(f"{path}: not a {format} checkpoint: found {_describe(obj)}; expected "
                         f"{FORMATS.get(format).description}")
    expected = "; ".join(f"{n}: {FORMATS.get(n).description}" for n in FORMATS)
    raise ValueError(f"{path}: unknown checkpoint layout: found {_describe(obj)}; expected one of: {expected}")
