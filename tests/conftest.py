import os

# numpy's BLAS with two threads on a busy 2-core machine turns a 0.03 s eigendecomposition into 1.5 s;
# must be set before numpy is first imported
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

# tiny configs: every family must pass the shared suite at these sizes in seconds on a CPU
TINY = {
    "dcgan": dict(base_channels=8),
    "stylegan2": dict(channel_base=128, channel_max=8, z_dim=16, w_dim=16, mapping_layers=2),
    "stylegan2-lite": dict(base_channels=4, z_dim=16, w_dim=16, mapping_layers=2),
}
FAMILIES = sorted(TINY)
ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, folder: str = "scripts"):
    """<folder>/<name>.py as a module (scripts are recipes and examples programs to copy, not the package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# tiny models gain nothing from a second thread, and on a busy 2-core machine two OpenMP threads per
# process spin against each other (a 5-step StyleGAN2 distill took 30 s instead of 3)
torch.set_num_threads(1)


SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "fmnist-cnn"


def _has_fmnist() -> bool:
    from gandistill.data import find_fashion_mnist

    try:
        find_fashion_mnist(None, "test")
        return True
    except FileNotFoundError:
        return False


needs_shipped = pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file() or not _has_fmnist(),
                                   reason="needs pretrained/fmnist-cnn and Fashion-MNIST")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sizes(family: str, kw: dict) -> dict:
    """TINY[family] with ``kw``; ``base_channels=b`` (the tests' one size knob) means, for stylegan2, b channels
    at 32 px and 2b below (channel_base 32b, channel_max 2b)."""
    kw = dict(kw)
    if family == "stylegan2" and "base_channels" in kw:
        b = kw.pop("base_channels")
        kw.update(channel_base=32 * b, channel_max=2 * b)
    return {**TINY[family], **kw}


def tiny_generator(family: str, **kw):
    from gandistill.models import build_generator

    return build_generator(family, **_sizes(family, kw))


def tiny_discriminator(family: str, **kw):
    from gandistill.models import build_discriminator

    return build_discriminator(family, **_sizes(family, kw))


def trained_looking(generator, mean_std: float = 0.5):
    """Batch-norm running statistics away from their fresh (0, 1), as a trained teacher has them."""
    with torch.no_grad():
        for name, buf in generator.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, mean_std)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return generator


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (unsigned bytes) as Fashion-MNIST ships it, gzip-compressed when path ends in .gz."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> Path:
    """A Fashion-MNIST-shaped dataset: 40 train and 20 test images of 28x28 in IDX gz files."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fmnist"
    root.mkdir()
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    return root


@pytest.fixture
def tiny_gan_dir(tmp_path: Path) -> Path:
    """A GAN directory (generator/ + discriminator/) of a tiny DCGAN, untrained."""
    from gandistill.checkpoint import save_gan

    out = tmp_path / "tiny-gan"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), out)
    return out
