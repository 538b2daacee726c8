"""What an input may make a command do is bounded: an ONNX file's metadata cannot make eval/profile build a model
the graph does not hold; sample's --num and --scale have documented maxima; profile times .onnx files with the
settings it was given."""
import json

import onnx
import pytest

from gandistill.export import export
from gandistill.onnx_generator import OnnxGenerator
from gandistill.profile import profile
from gandistill.samples import MAX_GRID_PIXELS, MAX_SAMPLE_NUM, sample

from .conftest import tiny_generator
from .test_inputs import cli, one_line


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "g.onnx"
    return export(tiny_generator("dcgan", base_channels=4), "onnx", out, seed=0).path


def _with_config(path, tmp_path, **config):
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == "gandistill.config":
            prop.value = json.dumps({**json.loads(prop.value), **config})
    forged = tmp_path / "forged.onnx"
    onnx.save_model(proto, str(forged))
    return forged


@pytest.mark.parametrize("base_channels", [5000, 10**9, 8])
def test_onnx_metadata_that_does_not_describe_the_graph_is_refused(exported, tmp_path, base_channels, capsys):
    forged = _with_config(exported, tmp_path, base_channels=base_channels)
    with pytest.raises(ValueError, match="forged.onnx: its metadata"):
        OnnxGenerator(forged)
    code, err = cli(["profile", forged, "--device", "cpu", "--latency-runs", "1", "--throughput-runs", "1",
                     "--warmup", "0"], capsys)
    assert code == 1 and "its metadata" in one_line(err)


def test_profile_times_an_onnx_file_with_the_settings_it_was_given(exported, capsys):
    r = profile(str(exported), device="cpu", latency_runs=2, throughput_batch=3, throughput_runs=1, warmup=1)
    assert (r["throughput_batch"], r["latency_runs"], r["warmup"]) == (3, 2, 1)
    assert r["params"] > 0 and r["macs"] > 0


@pytest.fixture
def model_dir(tmp_path):
    from gandistill.checkpoint import save_pretrained

    return save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")


def test_sample_refuses_counts_and_scales_above_its_maxima(model_dir, tmp_path, capsys):
    for argv, says in ((["--num", str(MAX_SAMPLE_NUM + 1)], "--num"), (["--scale", "100000"], "megapixels"),
                       (["--nrow", "100000000", "--num", "1"], "megapixels")):
        code, err = cli(["sample", model_dir, *argv, "--out", tmp_path / "g.png"], capsys)
        assert code in (1, 2) and says in one_line(err), err
    assert not (tmp_path / "g.png").exists()
    assert MAX_GRID_PIXELS <= 64 * 2**20


def test_sample_writes_png_only(model_dir, tmp_path, capsys):
    code, err = cli(["sample", model_dir, "--num", "4", "--out", tmp_path / "g.jpg"], capsys)
    assert code in (1, 2) and ".png" in one_line(err) and not (tmp_path / "g.jpg").exists()
    sample(str(model_dir), num=4, out=tmp_path / "g.PNG")
    assert (tmp_path / "g.PNG").read_bytes()[:4] == b"\x89PNG"
