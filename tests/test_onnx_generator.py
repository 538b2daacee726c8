"""Exported ONNX files as generators: evaluate() and the eval CLI score them under the same protocol."""
import json

import numpy as np
import pytest
import torch

from gandistill import metrics as M
from gandistill.cli import main
from gandistill.export import export
from gandistill.onnx_generator import OnnxGenerator
from gandistill.profile import count_macs, count_params
from gandistill.students import make_student

from .test_metrics import cache, tiny_cls, varied_generator  # noqa: F401 - fixtures


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    g = varied_generator().eval()
    return g, export(g, "onnx", tmp_path / "g.onnx", seed=0).path


def test_onnx_generator_draws_what_the_module_draws(exported, tmp_path):
    g, path = exported
    onnx_g = OnnxGenerator(path)
    assert onnx_g.z_dim == g.z_dim and onnx_g.family == "dcgan" and onnx_g.config == g.config
    assert onnx_g.num_params == count_params(g) and onnx_g.macs == count_macs(g) and onnx_g.quantize is None
    z = torch.randn(5, g.z_dim)
    with torch.no_grad():
        assert torch.allclose(onnx_g(z), g(z), atol=1e-4)
    # a --uint8 export comes back as [-1, 1] images whose pixels are exactly the file's
    u8 = OnnxGenerator(export(g, "onnx", tmp_path / "u8.onnx", uint8=True, seed=0).path)
    img = u8(z)
    assert img.shape == (5, 1, 32, 32) and img.dtype == torch.float32
    pixels = u8.session.run(None, {"z": z.numpy()})[0]
    assert np.array_equal(M.to_uint8(img).permute(0, 2, 3, 1).numpy(), pixels)


def test_eval_of_an_onnx_export_gives_the_modules_fid(exported, tiny_cls, cache):  # noqa: F811
    g, path = exported
    kw = dict(dataset="synthetic", metrics=("fid", "kid"), num_samples=200, extractor_weights=tiny_cls, paired=0)
    module_record, onnx_record = M.evaluate([g, str(path)], **kw)
    assert onnx_record["model"] == str(path) and onnx_record["runtime"].startswith("onnxruntime")
    for key in ("fid200[fmnist-cnn]", "kid200[fmnist-cnn]"):
        assert onnx_record["metrics"][key] == pytest.approx(module_record["metrics"][key], rel=1e-4)
    assert (onnx_record["params"], onnx_record["macs"]) == (module_record["params"], module_record["macs"])


def test_eval_cli_scores_float_and_int8_exports_and_pairs_them_with_the_teacher(tmp_path, tiny_cls, cache):  # noqa: F811
    torch.manual_seed(0)
    teacher = varied_generator().eval()
    student = make_student(teacher, 0.5).eval()
    teacher_dir = tmp_path / "teacher"
    export(teacher, "safetensors", teacher_dir, seed=0)
    int8 = export(student, "onnx", tmp_path / "s-int8.onnx", seed=0, quantize="int8", min_psnr=-100).path
    out = tmp_path / "eval.json"
    assert main(["eval", str(teacher_dir), str(int8), "--dataset", "synthetic", "--metrics", "fid",
                 "--num-samples", "64", "--extractor-weights", str(tiny_cls), "--paired", "64",
                 "--out", str(out)]) == 0
    teacher_record, int8_record = json.loads(out.read_text())
    assert int8_record["quantize"] == "int8" and int8_record["width"] == 0.5
    assert int8_record["metrics"]["fid64[fmnist-cnn]"] > 0
    # the lineage in the file's metadata names the evaluated teacher: paired PSNR/SSIM follow
    assert int8_record["paired"]["teacher"] == str(teacher_dir) and int8_record["paired"]["num"] == 64


def test_a_foreign_or_missing_onnx_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        OnnxGenerator(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx: corrupt or not an ONNX file"):
        OnnxGenerator(tmp_path / "bad.onnx")


def test_profile_of_an_int8_export_reports_its_architecture_and_size(tmp_path):
    from gandistill.profile import profile

    torch.manual_seed(0)
    g = varied_generator().eval()
    path = export(g, "onnx", tmp_path / "g-int8.onnx", seed=0, quantize="int8", min_psnr=-100).path
    stats = profile(str(path))
    assert stats["runtime"].startswith("onnxruntime") and stats["throughput_img_s"] > 0
    assert (stats["params"], stats["macs"]) == (count_params(g), count_macs(g))
    assert stats["bytes"] == path.stat().st_size
