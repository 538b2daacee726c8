"""Checks that stand between a file someone hands us and our code: the torch that reads it, the tensors it holds.

Imports torch only, so every loader (checkpoint, importers, metrics) can use it.
"""
from __future__ import annotations

import re

import torch

# torch.load(weights_only=True) could run code from a crafted file before torch 2.6 (CVE-2025-32434)
SAFE_TORCH = (2, 6)

# the float dtypes a weight may have; float8 and other exotic kinds have no isfinite and no use here
WEIGHT_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def require_safe_torch() -> None:
    """Refuse, in one line, to read an untrusted file with a torch whose ``weights_only=True`` can run code."""
    found = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    if found is None or (int(found[1]), int(found[2])) < SAFE_TORCH:
        raise RuntimeError(f"torch {torch.__version__} can run code from a crafted file even with "
                           f"weights_only=True (CVE-2025-32434); gandistill reads untrusted files only with "
                           f"torch >= {SAFE_TORCH[0]}.{SAFE_TORCH[1]}: upgrade torch")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_tensor(name: str, tensor: torch.Tensor, want: torch.dtype, where) -> None:
    """``tensor`` fits where a ``want`` tensor belongs: a float16/bfloat16/float32/float64 weight, all finite,
    where a float belongs, an integer (not bool) where an integer counter belongs; else one line naming it.
    The dtype is checked first: float8 and other exotic dtypes have no ``isfinite``."""
    if want.is_floating_point:
        if tensor.dtype not in WEIGHT_FLOATS:
            raise ValueError(f"{where}: {name} is {_dtype_name(tensor.dtype)}, expected floating-point weights "
                             f"(float16, bfloat16, float32 or float64)")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{where}: {name} holds non-finite values (NaN or inf); the weights are damaged")
    elif tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{where}: {name} is {_dtype_name(tensor.dtype)}, expected {_dtype_name(want)}")


def check_weights(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where) -> None:
    """Every tensor of ``state`` fits its namesake in ``expected`` (``check_tensor``): ``load_state_dict``
    would cast an int64 or bool tensor silently, and NaN weights draw black images with plausible scores."""
    for name, tensor in state.items():
        check_tensor(name, tensor, expected[name].dtype, where)
