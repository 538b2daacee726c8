import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from gandistill import data as data_mod
from gandistill.data import DATASETS, BatchSampler, find_fashion_mnist, load_dataset

from .conftest import write_idx


@pytest.fixture(autouse=True)
def _no_system_dataset(monkeypatch, tmp_path):
    # tests must not depend on whether this machine has the Debian package installed
    monkeypatch.setattr(data_mod, "SYSTEM_FMNIST", tmp_path / "no-system-dataset")
    monkeypatch.delenv("GANDISTILL_DATA", raising=False)


def test_registry():
    assert DATASETS.names() == ["fashion-mnist", "image-folder", "synthetic"]


def test_fashion_mnist_from_idx_files(tiny_fmnist):
    train = load_dataset("fashion-mnist", "train", root=tiny_fmnist)
    assert train.images.shape == (40, 1, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.shape == (40,)
    raw = data_mod._read_idx(tiny_fmnist / "train-images-idx3-ubyte.gz")
    # padded 28 -> 32 with a 2-pixel black border, pixels unchanged inside
    assert torch.equal(train.images[:, 0, 2:30, 2:30], torch.from_numpy(raw.copy()))
    assert train.images[:, :, :2].max() == 0
    x = train.batch(torch.arange(5))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    test = load_dataset("fashion-mnist", "test", root=tiny_fmnist, resolution=64, channels=3)
    assert test.images.shape == (20, 3, 64, 64)


def test_search_order(tiny_fmnist, tmp_path, monkeypatch):
    monkeypatch.setenv("GANDISTILL_DATA", str(tiny_fmnist))
    assert find_fashion_mnist(None, "train")[0].parent == tiny_fmnist
    # torchvision's layout: <root>/FashionMNIST/raw/
    tv = tmp_path / "tv" / "FashionMNIST" / "raw"
    tv.mkdir(parents=True)
    for f in tiny_fmnist.iterdir():
        (tv / f.name).write_bytes(f.read_bytes())
    assert find_fashion_mnist(tmp_path / "tv", "train")[0].parent == tv  # explicit root wins over the env


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*download"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_truncated_idx_file(tiny_fmnist):
    path = tiny_fmnist / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:1000]))
    with pytest.raises(ValueError, match="truncated IDX"):
        load_dataset("fashion-mnist", root=tiny_fmnist)


def test_mismatched_labels(tiny_fmnist):
    write_idx(tiny_fmnist / "train-labels-idx1-ubyte.gz", np.zeros(7))
    with pytest.raises(ValueError, match="do not match"):
        load_dataset("fashion-mnist", root=tiny_fmnist)


def test_image_folder_reads_nested_images_and_refuses_corrupt_ones(tmp_path, capsys):
    (tmp_path / "imgs" / "nested").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "imgs" / "a.png")
    Image.new("L", (20, 20), 128).save(tmp_path / "imgs" / "nested" / "b.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    data = load_dataset("image-folder", root=tmp_path / "imgs", resolution=32, channels=3)
    assert data.images.shape == (2, 3, 32, 32)
    err = capsys.readouterr().err
    assert "ignored 1 file(s)" in err and "notes.txt" in err
    assert "upsampled 2 image(s)" in err  # 40x30 and 20x20: shorter side < 32, above the 16 px floor
    red = data.images[0]  # a.png sorts first: pure red after crop and resize
    assert red[0].min() == 255 and red[1].max() == 0
    gray = load_dataset("image-folder", root=tmp_path / "imgs", channels=1)
    assert gray.images.shape == (2, 1, 32, 32)
    # one corrupt file fails the whole load, naming it (no silently smaller dataset)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"1 of 3 image file\(s\) cannot be used: .*broken.png: not an image"):
        load_dataset("image-folder", root=tmp_path / "imgs")


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_dataset("image-folder", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        load_dataset("image-folder", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="needs --data-root"):
        load_dataset("image-folder")


def test_synthetic_is_deterministic():
    a, b = load_dataset("synthetic", num=32), load_dataset("synthetic", num=32)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, load_dataset("synthetic", "test", num=32).images)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_batch_sampler_resumes_and_shards():
    s = BatchSampler(10, 4, seed=0)
    first = [s.next() for _ in range(3)]
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.state_dict().items()}
    after = [s.next() for _ in range(4)]
    s2 = BatchSampler(10, 4, seed=99)
    s2.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(after, [s2.next() for _ in range(4)], strict=False))
    # each epoch covers every index once
    s3 = BatchSampler(8, 4, seed=1)
    assert sorted(torch.cat([s3.next(), s3.next()]).tolist()) == list(range(8))
    assert len(first[0]) == 4
    # two ranks draw disjoint halves of one global batch
    r0, r1 = BatchSampler(100, 5, 3, rank=0, world_size=2), BatchSampler(100, 5, 3, rank=1, world_size=2)
    a, b = r0.next(), r1.next()
    assert not set(a.tolist()) & set(b.tolist())
