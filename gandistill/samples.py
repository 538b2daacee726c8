"""Sample grids: PNG files people look at."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

from .checkpoint import atomic_write
from .data import to_uint8
from .outputs import OutputRefused, check_file_target, check_not_input

PNG_SOFTWARE = "gandistill"
MAX_SAMPLE_NUM = 65_536  # images in one grid: more is not a picture anyone looks at (and runs for minutes)
MAX_GRID_PIXELS = 64 * 2**20  # pixels of a written grid, upscaling included: 64 megapixels, ~200 MB of RGB


def grid_array(img: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [rows*(H+p)+p, nrow*(W+p)+p, C] grid with dark padding."""
    n, c, h, w = img.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
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
    info = PngInfo()
    info.add_text("Software", PNG_SOFTWARE)  # how sample() knows a grid it may replace
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG", pnginfo=info))
    return Path(path)


def is_grid_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG that save_grid wrote (it carries gandistill's Software text chunk)."""
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.info.get("Software") == PNG_SOFTWARE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def side_by_side(left: torch.Tensor, right: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """Interleave rows so that each row of ``left`` is followed by the same latents' row of ``right``.

    Returns images [2N, C, H, W] to be gridded with ``nrow`` columns: teacher row, student row, ...
    """
    assert left.shape == right.shape, f"shapes differ: {list(left.shape)} vs {list(right.shape)}"
    rows = []
    for i in range(0, left.shape[0], nrow):
        rows += [left[i:i + nrow], right[i:i + nrow]]
    return torch.cat(rows)


def latents(num: int, z_dim: int, seed: int) -> torch.Tensor:
    """z [num, z_dim] for ``seed``: the same draws evaluate() feeds every generator (numpy RandomState normal)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(num, z_dim)).float()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows of a, b [N, D] at fractions t [S] -> [N, S, D] (norms interpolated linearly)."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # [N, 1]
    t = t.view(1, -1, 1)
    so = torch.sin(omega)[:, None]  # [N, 1, 1]
    direction = (torch.sin((1 - t) * omega[:, None]) * ua[:, None] + torch.sin(t * omega[:, None]) * ub[:, None]) / so
    return direction * ((1 - t) * na[:, None] + t * nb[:, None])


def _load_generator(generator) -> nn.Module:
    if isinstance(generator, (str, os.PathLike)):
        from .checkpoint import from_pretrained

        return from_pretrained(generator, "generator")
    if not isinstance(generator, nn.Module):
        raise TypeError(f"expected a generator module or directory, got {type(generator).__name__}")
    return generator


@torch.no_grad()
def _generate(generator: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    was_training = generator.training
    generator.eval()  # StyleGAN2: constant noise, so the same z gives the same image
    device = next(generator.parameters()).device
    try:
        out = [generator(z[i:i + batch_size].to(device)).cpu() for i in range(0, z.shape[0], batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(out)


def _check_grid_size(num: int, nrow: int, scale: int, resolution: int, interpolate: bool, compare: bool) -> None:
    """Refuse a grid above MAX_GRID_PIXELS before anything is drawn (it would be allocated whole)."""
    images = max(1, num // nrow) * nrow if interpolate else num
    rows = math.ceil(images / nrow) * (2 if compare else 1)
    pixels = (rows * (resolution + 2) + 2) * (nrow * (resolution + 2) + 2) * scale * scale
    if pixels > MAX_GRID_PIXELS:
        raise ValueError(f"a grid of {images} images, {nrow} per row, at --scale {scale} would have "
                         f"{pixels / 2**20:,.0f} megapixels; at most {MAX_GRID_PIXELS // 2**20} megapixels: lower "
                         f"--num, --nrow or --scale")


def sample(generator, num: int = 64, seed: int = 0, compare=None, interpolate: bool = False, nrow: int = 8,
           out: str | os.PathLike | None = None, scale: int = 1, overwrite: bool = False) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1], laid out for a grid of ``nrow`` columns; written as PNG to ``out`` if given.

    compare: a second generator (module or directory) drawn from the same z, its rows interleaved with the
    first's (row of ``generator``, row of ``compare``, ...). interpolate: ``num // nrow`` rows, each a
    spherical interpolation between two latents in ``nrow`` steps. overwrite: replace an ``out`` that is not a
    grid gandistill wrote (never one inside the models it draws).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if num > MAX_SAMPLE_NUM:
        raise ValueError(f"--num {num}: at most {MAX_SAMPLE_NUM} images in one grid; draw several grids")
    if out is not None:
        check_not_input(out, {name: g for name, g in (("model", generator), ("--compare", compare))
                              if isinstance(g, (str, os.PathLike))})
        if Path(out).suffix.lower() != ".png":  # a .jpg holding PNG bytes misleads every viewer
            raise OutputRefused(f"--out {out}: sample writes PNG grids; name the file with .png")
        check_file_target(out, overwrite=overwrite, made_here=is_grid_png)
    first = _load_generator(generator)
    second = _load_generator(compare) if compare is not None else None
    if second is not None and second.z_dim != first.z_dim:
        raise ValueError(f"--compare generator has z_dim {second.z_dim}, the first has {first.z_dim}")
    _check_grid_size(num, nrow, scale, first.config.resolution, interpolate, second is not None)
    if interpolate:
        rows = max(1, num // nrow)
        ends = latents(2 * rows, first.z_dim, seed)
        z = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, nrow)).reshape(rows * nrow, first.z_dim)
    else:
        z = latents(num, first.z_dim, seed)
    images = _generate(first, z)
    if second is not None:
        other = _generate(second, z)
        if other.shape[1:] != images.shape[1:]:
            raise ValueError(f"--compare generator makes {list(other.shape[1:])} images, the first "
                             f"{list(images.shape[1:])}")
        images = side_by_side(images, other, nrow)
    if out is not None:
        save_grid(images, out, nrow=nrow, scale=scale)
    return images
