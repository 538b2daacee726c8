"""train_classifier(), its augmentation, the CLI, and the shipped pretrained/fmnist-cnn."""
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from gandistill.checkpoint import from_pretrained
from gandistill.cli import main
from gandistill.data import load_dataset
from gandistill.metrics import make_extractor, resolve_extractor
from gandistill.train_classifier import _augment, accuracy, train_classifier

from .conftest import SHIPPED, needs_shipped


def test_augment_is_a_flip_and_a_shift_of_at_most_two_pixels():
    x = torch.rand(32, 1, 8, 8) * 2 - 1
    out = _augment(x, torch.Generator().manual_seed(1))
    padded = [F.pad(v, (2, 2, 2, 2), value=-1.0) for v in (x, x.flip(3))]
    for i in range(x.shape[0]):
        candidates = [p[i, :, dy:dy + 8, dx:dx + 8] for p in padded for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) for c in candidates), f"sample {i} is not a flipped/shifted copy"
    assert not torch.equal(out, x)
    assert torch.equal(_augment(x, torch.Generator().manual_seed(1)), out)


def test_train_classifier_learns_and_saves(tmp_path):
    # no augmentation: a horizontal flip moves the synthetic blob to the other quadrant, i.e. changes its label
    result = train_classifier(out=str(tmp_path / "cls"), data="synthetic", width=8, feature_dim=32, epochs=3,
                              batch_size=64, lr=0.05, augment=False, num_threads=1)
    # four quadrant classes: chance is 0.25
    assert result.test_accuracy > 0.6
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    model = from_pretrained(tmp_path / "cls", kind="classifier")
    meta = json.loads((tmp_path / "cls" / "config.json").read_text())
    assert meta["extra"]["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-5)
    assert meta["extra"]["train_config"]["epochs"] == 3 and model.config.num_classes == 4
    assert accuracy(model, load_dataset("synthetic", "test")) == pytest.approx(result.test_accuracy)


def test_cli_train_classifier(tmp_path, capsys):
    rc = main(["train-classifier", "--data", "synthetic", "--epochs", "1", "--width", "4", "--feature-dim", "8",
               "--batch-size", "128", "--out", str(tmp_path / "c"), "--num-threads", "1"])
    assert rc == 0 and "test accuracy" in capsys.readouterr().out
    assert (tmp_path / "c" / "model.safetensors").is_file()
    assert main(["train-classifier", "--data", "synthetic", "--epochs", "0", "--out", str(tmp_path / "d")]) == 2
    assert "epochs" in capsys.readouterr().err


def test_fmnist_extractor_reads_grayscale_exactly(tmp_path):
    train_classifier(out=str(tmp_path / "cls"), data="synthetic", width=4, feature_dim=8, epochs=1, batch_size=128)
    _, weights = resolve_extractor("fmnist-cnn", tmp_path / "cls")
    ext = make_extractor("fmnist-cnn", weights, ["feat", "logits"])
    data = load_dataset("synthetic", "test")
    gray = data.images[:16]  # uint8 [16, 1, 32, 32]
    feat, logits = ext(gray.repeat(1, 3, 1, 1))
    model = from_pretrained(tmp_path / "cls", kind="classifier")
    with torch.no_grad():
        nchw_logits, nchw = model.forward_features(data.batch(torch.arange(16)))
        model.to(memory_format=torch.channels_last)  # as the extractor runs it (faster on CPU)
        ref_logits, ref = model.forward_features(data.batch(torch.arange(16)).contiguous(
            memory_format=torch.channels_last))
    assert torch.equal(feat, ref["feat"]) and torch.equal(logits, ref_logits)
    assert torch.allclose(feat, nchw["feat"], atol=1e-5) and torch.allclose(logits, nchw_logits, atol=1e-5)


@needs_shipped
def test_shipped_classifier_card_and_accuracy():
    meta = json.loads((SHIPPED / "config.json").read_text())
    assert meta["kind"] == "classifier" and meta["extra"]["test_accuracy"] >= 0.93
    card = (SHIPPED / "README.md").read_text()
    digest = hashlib.sha256((SHIPPED / "model.safetensors").read_bytes()).hexdigest()
    assert digest in card and "MIT" in card and "gandistill train-classifier" in card
    model = from_pretrained(SHIPPED, kind="classifier")
    test = load_dataset("fashion-mnist", "test").subset(0, 1000)
    assert accuracy(model, test) >= 0.9


@needs_shipped
@pytest.mark.slow
def test_shipped_classifier_full_test_accuracy_matches_its_card():
    meta = json.loads((SHIPPED / "config.json").read_text())
    acc = accuracy(from_pretrained(SHIPPED, kind="classifier"), load_dataset("fashion-mnist", "test"))
    assert acc >= 0.93 and acc == pytest.approx(meta["extra"]["test_accuracy"], abs=1e-4)
