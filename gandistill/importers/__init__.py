"""Checkpoints people bring from elsewhere -> our model families. Reads tensors only, never runs code from a file.

Formats (``FORMATS``, auto-detected, ``format=`` overrides):

- ``pytorch-dcgan``: the PyTorch DCGAN tutorial / pytorch/examples ``dcgan`` layout, an ``nn.Sequential``
  named ``main`` (generator ``netG``, optionally discriminator ``netD``), mapped exactly onto ``dcgan``;
- ``rosinality-stylegan2``: rosinality's ``stylegan2-pytorch`` checkpoints (``g_ema``, ``d``, ``args``), mapped
  onto ``stylegan2`` with sizes inferred from the tensors;
- ``nvlabs-pkl``: NVlabs ``stylegan2-ada-pytorch`` / ``stylegan3`` pickles (``G_ema``, ``D``), read by a restricted
  unpickler that builds inert placeholders for the classes they name, mapped onto ``stylegan2``.

Every tensor of the source network is placed or the import is refused in one line; the imported generator draws
the original code's images (docs/importing.md, tests/test_stylegan2.py).
"""
from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_state, load_weights, sha256_file
from ..safety import require_safe_torch
from . import dcgan, stylegan2  # noqa: F401 - registers the formats, in detection order
from .base import FORMATS, Imported, ImportFormat, ImportRefused, is_state_dict
from .unpickle import Placeholder, load_nvlabs_pickle, placeholder_tensors

# --- reading a file without running code from it ----------------------------------------------------------

def read_checkpoint(path: str | os.PathLike) -> Any:
    """The file's contents: torch files through ``weights_only=True`` (plus argparse.Namespace), safetensors as tensors, ``.pkl`` files
    (NVlabs) through the restricted unpickler. Nothing in the file is executed."""
    require_safe_torch()  # weights_only=True (also inside the unpickler, for storages) is safe from torch 2.6
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
    # rosinality's train.py saves its argparse.Namespace beside the tensors: admitted as data (its fields only)
    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_state(path)


# --- the entry point ------------------------------------------------------------------------------------------

def _describe(obj) -> str:
    if is_state_dict(obj):
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


__all__ = ["FORMATS", "Imported", "ImportFormat", "ImportRefused", "Placeholder", "import_checkpoint",
           "load_nvlabs_pickle", "placeholder_tensors", "read_checkpoint"]
