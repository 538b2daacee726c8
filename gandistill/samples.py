"""Sample grids: PNG files people look at."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import atomic_write
from .data import to_uint8


def grid_array(img: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [rows*(H+p)+p, nrow*(W+p)+p, C] grid with dark padding."""
    n, c, h, w = img.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    pixels = to_uint8(img.cpu()).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y:y + h, x:x + w] = pixels[i]
    return grid


def save_grid(img: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int = 1) -> Path:
    """Write ``img`` [N, C, H, W] in [-1, 1] as one PNG grid (atomically)."""
    arr = grid_array(img, nrow)
    pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))
    return Path(path)


def side_by_side(left: torch.Tensor, right: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """Interleave rows so that each row of ``left`` is followed by the same latents' row of ``right``.

    Returns images [2N, C, H, W] to be gridded with ``nrow`` columns: teacher row, student row, ...
    """
    assert left.shape == right.shape, f"shapes differ: {list(left.shape)} vs {list(right.shape)}"
    rows = []
    for i in range(0, left.shape[0], nrow):
        rows += [left[i:i + nrow], right[i:i + nrow]]
    return torch.cat(rows)
