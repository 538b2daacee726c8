"""NVlabs pickles read by a restricted unpickler: tensors and plain data come back, every class they name becomes
an inert ``Placeholder`` holding its pickled state, and nothing from the file is executed."""
from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch


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


