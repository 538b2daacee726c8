"""Datasets held in memory as uint8 and served as [-1, 1] float batches.

Registry: ``fashion-mnist`` (IDX files), ``image-folder`` (png/jpg, nested), ``synthetic`` (for tests).
"""
from __future__ import annotations

import gzip
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Registry

DATASETS: Registry = Registry("dataset")
SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FMNIST_HOWTO = ("install it with `apt-get install dataset-fashion-mnist` (Debian), or download it with "
                "`python -c \"import torchvision; torchvision.datasets.FashionMNIST('data', download=True)\"` "
                "and pass --data-root data")


@dataclass
class ImageData:
    """Images [N, C, H, W] uint8 and labels [N] int64 (-1 when unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def batch(self, index: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
        """Images at ``index`` as float in [-1, 1] on ``device``."""
        x = self.images[index].to(device, non_blocking=True)
        return x.float().div_(127.5).sub_(1.0)

    def subset(self, start: int, stop: int) -> ImageData:
        return ImageData(self.images[start:stop], self.labels[start:stop], f"{self.name}[{start}:{stop}]")


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 255] uint8, same shape."""
    return img.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def _fit(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """uint8 [N, c, h, w] -> uint8 [N, channels, resolution, resolution]."""
    n, c, h, w = images.shape
    if (h, w) == (28, 28):  # Fashion-MNIST: pad to 32 like the usual 32x32 GAN setups
        images = F.pad(images, (2, 2, 2, 2))
        h = w = 32
    if (h, w) != (resolution, resolution):
        images = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear",
                               align_corners=False, antialias=resolution < h).round().clamp(0, 255).to(torch.uint8)
    if channels != images.shape[1]:
        if channels == 3 and images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        elif channels == 1 and images.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise ValueError(f"channels must be 1 or 3, got {channels}")
    return images.contiguous()


# --- Fashion-MNIST --------------------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: unreadable IDX file ({e})") from None
    if len(data) < 8:
        raise ValueError(f"{path}: truncated IDX file")
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} of {int(np.prod(dims))} values)")
    return body.reshape(dims)


def fashion_mnist_candidates(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched in order: root and its FashionMNIST/raw, fashion-mnist; without a root the same under
    $GANDISTILL_DATA, then the Debian package's. A root given is the only place looked: a mistyped one must
    not silently fall back to another copy."""
    if root is not None:
        base = Path(root)
        return [base, base / "FashionMNIST" / "raw", base / "fashion-mnist"]
    out = []
    if os.environ.get("GANDISTILL_DATA"):
        base = Path(os.environ["GANDISTILL_DATA"])
        out += [base, base / "FashionMNIST" / "raw", base / "fashion-mnist"]
    out.append(SYSTEM_FMNIST)
    return out


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[Path, Path]:
    if root is not None and not Path(root).is_dir():
        raise FileNotFoundError(f"data root {root}: no such folder (Fashion-MNIST is looked for only there when "
                                f"a root is given)")
    for folder in fashion_mnist_candidates(root):
        images, labels = (_find(folder, stem) for stem in _FMNIST_FILES[split])
        if images and labels:
            return images, labels
    searched = ", ".join(str(p) for p in fashion_mnist_candidates(root))
    raise FileNotFoundError(f"Fashion-MNIST ({split}) not found in {searched}; {FMNIST_HOWTO}")


def download_fashion_mnist(root: str | os.PathLike = "data") -> Path:
    """Fetch Fashion-MNIST with torchvision's downloader (needs internet) into ``root/FashionMNIST/raw``."""
    import torchvision

    torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
    return Path(root) / "FashionMNIST" / "raw"


@DATASETS.register("fashion-mnist")
def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, resolution: int = 32,
                  channels: int = 1) -> ImageData:
    """Fashion-MNIST (Xiao et al. 2017, MIT licence): 60k train / 10k test, 10 classes, 28x28 padded to 32."""
    if split not in _FMNIST_FILES:
        raise ValueError(f"split must be train or test, got {split!r}")
    images_path, labels_path = find_fashion_mnist(root, split)
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path}: images {images.shape} and labels {labels.shape} do not match")
    x = torch.from_numpy(images.copy())[:, None]  # [N, 1, 28, 28]
    return ImageData(_fit(x, resolution, channels), torch.from_numpy(labels.astype(np.int64)),
                     f"fashion-mnist/{split}")


# --- image folder ---------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


class _Unusable(Exception):
    """Why one file of an image folder cannot be used (collected, then reported together)."""


def min_image_side(resolution: int) -> int:
    """The smallest shorter side an image-folder image may have: half the target resolution (at most 2x upsampling)."""
    return (resolution + 1) // 2


def _read_image(path: Path, resolution: int, channels: int):
    """uint8 [resolution, resolution, channels] and whether it was upsampled; _Unusable says why not."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise _Unusable("empty file (0 bytes)")
    try:
        with Image.open(path) as im:  # verify() checks the structure (and PNG checksums) without decoding
            im.verify()
        with Image.open(path) as im:  # verify() leaves the image unusable: open again and decode every pixel
            im.load()
            im = ImageOps.exif_transpose(im)  # camera JPEGs: apply the orientation tag
    except Image.DecompressionBombError as e:
        raise _Unusable(f"too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise _Unusable("not an image Pillow can identify (corrupt, or not an image despite its suffix)") from None
    except Exception as e:  # noqa: BLE001 - decoders raise many kinds on bad input; report which file, not crash
        message = " ".join(str(e).split()).replace(repr(str(path)), "").replace(str(path), "")
        raise _Unusable(f"corrupt or truncated image ({type(e).__name__}: {message})") from None
    w, h = im.size
    if min(w, h) < min_image_side(resolution):
        raise _Unusable(f"{w}x{h} is too small: the shorter side must be at least {min_image_side(resolution)} "
                        f"px (half of --resolution {resolution}) to be upsampled")

    # --- to 8-bit L or RGB: 16-bit scaled (Pillow would clip it), transparency composited over black ---
    mode = "L" if channels == 1 else "RGB"
    if im.mode == "F":
        raise _Unusable("32-bit float pixels (mode F) have no fixed range; save it as 8- or 16-bit")
    if im.mode in _SIXTEEN_BIT:
        values = np.asarray(im, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        im = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
    if im.mode in _WITH_ALPHA or "transparency" in im.info:
        rgba = im.convert("RGBA") if im.mode != "La" else im.convert("LA").convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), rgba)
    try:
        im = im.convert(mode)
    except ValueError as e:
        raise _Unusable(f"mode {im.mode} cannot be converted to {mode} ({e})") from None

    # --- centre square, resized to resolution (bicubic; antialiased when shrinking) ---
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    im = im.resize((resolution, resolution), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8).reshape(resolution, resolution, channels), s < resolution


def _listing(items: list[str], limit: int = 5) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


@DATASETS.register("image-folder")
def image_folder(split: str = "train", root: str | os.PathLike | None = None, resolution: int = 32,
                 channels: int = 3) -> ImageData:
    """Every image under ``root`` (nested allowed), centre-cropped to a square and resized to ``resolution``.

    Files ending in .png .jpg .jpeg .bmp .webp .tif .tiff are read; other files (and hidden ones) are
    ignored. Every image is decoded in full first: one that is empty, corrupt, truncated, a 32-bit float
    image or smaller than ``min_image_side(resolution)`` makes the whole load fail with one line naming it.
    Conversions, all deterministic: 16-bit grayscale scaled to 8 bits, transparency (RGBA, LA, palette)
    composited over black, CMYK/palette/bilevel converted by Pillow, grayscale repeated to RGB or RGB to
    luma for ``channels=1``, EXIF orientation applied, multi-frame files read at their first frame, and
    images up to 2x smaller than ``resolution`` upsampled (bicubic) with a note on stderr.
    ``split`` is accepted for symmetry and ignored (a folder is one split).
    """
    if root is None:
        raise ValueError("image-folder needs --data-root pointing at a folder of images")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: is a file; image-folder needs a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    ignored = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    suffixes = " ".join(IMAGE_SUFFIXES)
    if not paths:
        found = f" (found only {len(ignored)} other file(s), e.g. {ignored[0].relative_to(root)})" if ignored else ""
        raise ValueError(f"{root}: no readable images: no {suffixes} file here or in subfolders{found}")
    arrays, problems, upsampled = [], [], []
    for path in paths:
        try:
            array, small = _read_image(path, resolution, channels)
        except _Unusable as e:
            problems.append(f"{path}: {e}")
            continue
        except OSError as e:  # unreadable file (permissions, I/O error)
            problems.append(f"{path}: cannot be read ({e.strerror or e})")
            continue
        arrays.append(array)
        if small:
            upsampled.append(path)
    if problems:
        raise ValueError(f"image-folder {root}: {len(problems)} of {len(paths)} image file(s) cannot be used: "
                         f"{_listing(problems)}. Fix or remove them")
    notes = []
    if upsampled:
        notes.append(f"upsampled {len(upsampled)} image(s) smaller than {resolution}x{resolution} "
                     f"(e.g. {upsampled[0]})")
    if ignored:
        notes.append(f"ignored {len(ignored)} file(s) that are not {suffixes} (e.g. {ignored[0]})")
    for note in notes:
        print(f"image-folder: {note}", file=sys.stderr)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # [N, C, R, R]
    data = ImageData(x, torch.full((len(arrays),), -1, dtype=torch.int64), f"image-folder:{root}")
    data.notes = notes  # type: ignore[attr-defined]
    return data


# --- synthetic ------------------------------------------------------------------------------------------

@DATASETS.register("synthetic")
def synthetic(split: str = "train", root: str | os.PathLike | None = None, resolution: int = 32,
              channels: int = 1, num: int = 512, seed: int = 0) -> ImageData:
    """Deterministic blobs: label k in 0..3 puts a bright Gaussian blob in quadrant k (for tests)."""
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    labels = torch.randint(0, 4, (num,), generator=g)
    coords = torch.linspace(0, 1, resolution)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cy = 0.25 + 0.5 * (labels // 2).float() + 0.08 * torch.randn(num, generator=g)
    cx = 0.25 + 0.5 * (labels % 2).float() + 0.08 * torch.randn(num, generator=g)
    sigma = 0.08 + 0.04 * torch.rand(num, generator=g)
    d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    img = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))  # [N, H, W] in [0, 1]
    x = (img * 255).round().to(torch.uint8)[:, None].repeat(1, channels, 1, 1)
    return ImageData(x.contiguous(), labels, f"synthetic/{split}")


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, resolution: int = 32,
                 channels: int = 1, **kwargs) -> ImageData:
    """Load a registered dataset fully into memory."""
    return DATASETS.get(name)(split=split, root=root, resolution=resolution, channels=channels, **kwargs)


class BatchSampler:
    """Endless shuffled batches from a torch.Generator whose state is saved with training state."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n < 1:
            raise ValueError("dataset is empty")
        self.n, self.batch_size = n, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.int64)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Indices of this rank's next batch (ranks take disjoint slices of one global batch)."""
        need = self.batch_size * self.world_size
        parts, got = [], 0
        while got < need:
            if self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
            take = self.perm[self.pos:self.pos + need - got]
            self.pos += len(take)
            got += len(take)
            parts.append(take)
        batch = torch.cat(parts)
        return batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        # CPU tensors, also from a state loaded with map_location="cuda"
        self.generator.set_state(state["generator"].cpu())
        self.perm, self.pos = state["perm"].cpu(), int(state["pos"])
