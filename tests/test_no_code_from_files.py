"""Nothing from a file a user hands us runs: formats are told by content, and a TorchScript archive is read as a
zip (its gandistill metadata straight from the archive), never loaded by torch.jit."""
from pathlib import Path

import pytest
import torch

from gandistill.export import export, read_metadata
from gandistill.onnx_generator import OnnxGenerator

from .conftest import tiny_generator
from .test_inputs import cli, one_line


class _Planted(torch.nn.Module):
    """A TorchScript module whose __setstate__ (run by torch.jit.load) writes a file."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.save(torch.zeros(1), state[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path, Path]:
    """(marker, archive named x.onnx, the same archive named x.pt), with gandistill-looking metadata inside."""
    import json
    import warnings

    marker = tmp_path / "ran.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.script(_Planted(str(marker)))
        meta = {"gandistill_version": "0", "family": "dcgan", "z_dim": 100, "config": {"base_channels": 4}}
        for name in ("x.onnx", "x.pt"):
            torch.jit.save(module, str(tmp_path / name), _extra_files={"gandistill.json": json.dumps(meta)})
    assert not marker.exists()
    return marker, tmp_path / "x.onnx", tmp_path / "x.pt"


def test_a_torchscript_archive_named_onnx_is_refused_without_running_it(planted, capsys):
    marker, as_onnx, as_pt = planted
    for path in (as_onnx, as_pt):
        with pytest.raises(ValueError, match="TorchScript.*not an ONNX model"):
            OnnxGenerator(path)
        assert not marker.exists()
    code, err = cli(["eval", as_onnx, "--dataset", "synthetic", "--num-samples", "8", "--paired", "0"], capsys)
    assert code != 0 and "not an ONNX model" in one_line(err) and not marker.exists()
    model = tiny_generator("dcgan", base_channels=4)
    from gandistill.checkpoint import save_pretrained

    save_pretrained(model, as_onnx.parent / "g")
    code, err = cli(["eval", as_onnx.parent / "g", "--teacher", as_onnx, "--dataset", "synthetic",
                     "--num-samples", "8", "--paired", "0"], capsys)
    assert code != 0 and "not an ONNX model" in one_line(err) and not marker.exists()
    code, err = cli(["profile", as_onnx, "--device", "cpu"], capsys)
    assert code != 0 and "not an ONNX model" in one_line(err) and not marker.exists()


def test_read_metadata_reads_an_archive_as_a_zip(planted, tmp_path):
    marker, as_onnx, as_pt = planted
    for path in (as_onnx, as_pt):
        assert read_metadata(path)["family"] == "dcgan"  # read from the zip member, nothing loaded
    assert not marker.exists()
    # a gandistill TorchScript export still reads back
    g = tiny_generator("dcgan", base_channels=4)
    meta = read_metadata(export(g, "torchscript", tmp_path / "e" / "g.pt", seed=0).path)
    assert meta["family"] == "dcgan" and meta["config"] == g.config.to_dict()
    (tmp_path / "plain.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(ValueError, match="corrupt"):
        read_metadata(tmp_path / "plain.zip")
