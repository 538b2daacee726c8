import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gandistill.checkpoint import from_pretrained, save_pretrained
from gandistill.cli import build_parser, main
from gandistill.data import to_uint8
from gandistill.export import FORMATS, ExportError, MissingExtraError, export, read_metadata
from gandistill.export import _uint8_distance as uint8_distance
from gandistill.onnx_runtime import profile_onnx
from gandistill.samples import grid_array
from gandistill.students import make_student

from .conftest import FAMILIES, tiny_generator, trained_looking

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "sample_onnx.py"
SUFFIX = {"safetensors": "", "torchscript": ".pt", "onnx": ".onnx"}
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
slow_onnx = pytest.mark.slow  # torch's ONNX exporter needs 5-20 s per model on a loaded 2-core CPU


def spread(generator):
    """Untrained DCGANs output ~1e-4 (N(0, 0.02) weights): far too flat for a 1e-4 parity check to mean
    anything. Give BatchNorm real statistics and the convolutions He-like scales so images span [-1, 1]."""
    trained_looking(generator, mean_std=0.1)
    with torch.no_grad():
        for m in generator.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.mul_(2.0 * (1.0 / (m.weight.shape[0] * 4)) ** 0.5 / 0.02)
    return generator


def make(family: str, width: float):
    torch.manual_seed(0)
    teacher = spread(tiny_generator(family)).eval()
    return teacher if width == 1.0 else make_student(teacher, width).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(family, width, format, uint8) -> (model, ExportResult), each exported once per test module."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("exports")

    def get(family: str, width: float, fmt: str, uint8: bool = False):
        key = (family, width, fmt, uint8)
        if key not in cache:
            model = make(family, width)
            out = root / f"{family}-w{width}{'-u8' if uint8 else ''}{SUFFIX[fmt]}"
            cache[key] = model, export(model, fmt, out, uint8=uint8, seed=1)
        return cache[key]

    return get


def run_plain(fmt: str, path: Path, z: torch.Tensor) -> np.ndarray:
    """Run an export the way a deployment would, without gandistill's loaders."""
    if fmt == "safetensors":
        with torch.no_grad():
            return from_pretrained(path)(z).numpy()
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(z).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["img"], {"z": z.numpy()})[0]


def test_formats_come_from_the_registry_and_feed_the_cli():
    assert FORMATS.names() == ["onnx", "safetensors", "torchscript"]
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    fmt_action = next(a for a in sub.choices["export"]._actions if a.dest == "format")
    assert list(fmt_action.choices) == FORMATS.names() and fmt_action.default == "safetensors"


PARITY = [pytest.param(family, width, fmt, marks=[slow_onnx] if fmt == "onnx" and family == "stylegan2" else [],
                       id=f"{family}-{width}-{fmt}")
          for family in FAMILIES for width in (1.0, 0.25) for fmt in ("safetensors", "torchscript", "onnx")]


@pytest.mark.parametrize("family,width,fmt", PARITY)
def test_export_matches_pytorch(exported, family, width, fmt):
    model, result = exported(family, width, fmt)
    check = result.record["check"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4
    assert 1 in check["batch_sizes"] and len(check["batch_sizes"]) >= 3
    assert json.loads(result.report.read_text())[result.path.name]["check"]["max_abs_diff"] == check["max_abs_diff"]
    # independent of export()'s own check: fresh z, other batch sizes, the deployment's plain loader
    for n in (1, 5):
        z = torch.randn(n, model.z_dim)
        with torch.no_grad():
            expected = model(z).numpy()
        got = run_plain(fmt, result.path, z)
        assert got.shape == expected.shape == (n, 1, 32, 32)
        assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(expected).max() > 0.2  # images with contrast, so the tolerance is meaningful
    meta = read_metadata(result.path)
    assert meta["family"] == family and meta["width"] == width and meta["gandistill_version"]
    if width == 1.0:
        assert meta["lineage"] is None
    else:
        assert meta["lineage"]["teacher"]["family"] == family and meta["lineage"]["width"] == width
        assert meta["lineage"]["kept_channels"] == model.lineage["kept_channels"]


@pytest.mark.parametrize("family", [pytest.param(f, marks=[slow_onnx] if f == "stylegan2" else []) for f in FAMILIES])
def test_onnx_graph_contract(exported, family):
    import onnx

    model, result = exported(family, 0.25, "onnx")
    proto = onnx.load(str(result.path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["z"] and [o.name for o in proto.graph.output] == ["img"]
    z_dims = proto.graph.input[0].type.tensor_type.shape.dim
    img_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert z_dims[0].dim_param and not z_dims[0].dim_value  # symbolic batch
    assert z_dims[1].dim_value == model.z_dim
    assert img_dims[0].dim_param == z_dims[0].dim_param
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["gandistill.family"] == family and json.loads(props["gandistill.width"]) == 0.25
    assert json.loads(props["gandistill.lineage"])["teacher"]["family"] == family
    assert not list(result.path.parent.glob("*.data"))  # weights inside the one file
    ops = {node.op_type for node in proto.graph.node}
    if family == "dcgan":  # the inference form was written: batch norm folded, the first layer a product
        assert "BatchNormalization" not in ops and ops & {"Gemm", "MatMul"} and "ConvTranspose" in ops


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_uint8_wrapper_gives_ready_to_save_images(exported, fmt):
    model, result = exported("dcgan", 0.25, fmt, uint8=True)
    assert result.record["check"]["passed"] and read_metadata(result.path)["output"].startswith("img uint8")
    z = torch.randn(6, model.z_dim)
    got = run_plain(fmt, result.path, z)
    with torch.no_grad():
        expected = to_uint8(model(z)).permute(0, 2, 3, 1).numpy()
    assert got.dtype == np.uint8 and got.shape == (6, 32, 32, 1)
    assert np.abs(got.astype(int) - expected).max() <= 1  # one level only at a rounding boundary
    assert (got == expected).mean() > 0.999
    assert len(np.unique(got)) > 50


def test_uint8_distance_is_the_float_error_the_pixels_imply():
    expected = np.array([-1.0, 0.0, 1.0, 2 * 10.5 / 255 - 1]).reshape(1, 1, 1, 4)  # last one: on a boundary
    exact = np.array([0, 128, 255, 11], dtype=np.uint8).reshape(1, 1, 4, 1)  # NHWC
    assert uint8_distance(exact, expected) == pytest.approx(0.0, abs=1e-9)
    # on the boundary both neighbours are consistent with a tiny float error
    assert uint8_distance(np.array([0, 128, 255, 10], np.uint8).reshape(1, 1, 4, 1), expected) < 1e-9
    one_off = np.array([0, 129, 255, 11], dtype=np.uint8).reshape(1, 1, 4, 1)  # 127.5 -> 129: 1 level past
    assert uint8_distance(one_off, expected) == pytest.approx(1.0 / 127.5)
    black = np.zeros((1, 1, 4, 1), np.uint8)  # the classic broken export
    assert uint8_distance(black, expected) > 0.9


def test_a_mismatching_export_fails_and_leaves_nothing(tmp_path, monkeypatch):
    fmt = FORMATS.get("torchscript")

    def off_by_a_little(path):
        run = fmt.load(path)
        return lambda z: run(z) + 3e-4

    monkeypatch.setitem(FORMATS._items, "torchscript", dataclasses.replace(fmt, load=off_by_a_little))
    out = tmp_path / "g.pt"
    with pytest.raises(ExportError, match=r"max abs difference 3\.\d+e-04 > atol 1e-04 .*nothing written"):
        export(make("dcgan", 0.25), "torchscript", out)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary, no export.json


def test_a_mismatching_directory_export_fails_and_keeps_the_previous_one(tmp_path, monkeypatch):
    model, out = make("dcgan", 0.25), tmp_path / "student"
    export(model, "safetensors", out, seed=0)
    before = (out / "model.safetensors").read_bytes()
    fmt = FORMATS.get("safetensors")
    monkeypatch.setitem(FORMATS._items, "safetensors",
                        dataclasses.replace(fmt, load=lambda path: (lambda z: np.zeros((len(z), 1, 32, 32), "f4"))))
    spread(model.blocks[0])  # different weights: a new export would differ from the old one
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export(model, "safetensors", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "student"]  # no temporaries
    assert (out / "model.safetensors").read_bytes() == before


def test_safetensors_export_replaces_a_model_directory_but_nothing_else(tmp_path):
    out = tmp_path / "student"
    export(make("dcgan", 0.25), "safetensors", out)
    result = export(make("stylegan2", 0.25), "safetensors", out)
    assert from_pretrained(out).family == "stylegan2" and result.record["sha256"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not an earlier export"):
        export(make("dcgan", 0.25), "safetensors", tmp_path / "notes")
    with pytest.raises(ValueError, match="not a model directory; refusing"):  # not even with overwrite
        export(make("dcgan", 0.25), "safetensors", tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_exports_in_eval_mode_without_touching_the_model(tmp_path):
    model = make("dcgan", 1.0).train()  # BatchNorm in training mode uses batch statistics
    result = export(model, "torchscript", tmp_path / "g.pt")
    assert model.training and result.record["check"]["passed"]
    z = torch.randn(4, model.z_dim)
    with torch.no_grad():
        traced = torch.jit.load(str(tmp_path / "g.pt"))(z)
        eval_mode = model.eval()(z)
        train_mode = model.train()(z)  # (last: a training-mode pass updates the running statistics)
    # 1e-5: the export is the inference form (batch norm folded), equal to float32 rounding
    assert torch.allclose(traced, eval_mode, atol=1e-5) and not torch.allclose(traced, train_mode, atol=1e-2)


def test_random_noise_and_bad_arguments_are_refused(tmp_path):
    model = make("stylegan2", 0.25)
    model.set_noise_mode("random")
    with pytest.raises(ValueError, match="noise mode 'random'"):
        export(model, "torchscript", tmp_path / "g.pt")
    with pytest.raises(ValueError, match="uint8 applies to torchscript and onnx"):
        export(make("dcgan", 1.0), "safetensors", tmp_path / "d", uint8=True)
    with pytest.raises(ValueError, match="must include 1"):
        export(make("dcgan", 1.0), "torchscript", tmp_path / "g.pt", batch_sizes=(2, 4))
    with pytest.raises(ValueError, match="unknown export format 'tflite'; choose one of: onnx, safetensors"):
        export(make("dcgan", 1.0), "tflite", tmp_path / "g")
    with pytest.raises(ValueError, match="only generators"):
        from gandistill.models import build_discriminator

        export(build_discriminator("dcgan", base_channels=8), "torchscript", tmp_path / "d.pt")
    assert list(tmp_path.iterdir()) == []


def test_torchscript_loads_without_gandistill(exported, tmp_path):
    model, result = exported("stylegan2", 0.25, "torchscript")
    z = torch.randn(3, model.z_dim)
    torch.save(z, tmp_path / "z.pt")
    code = ("import sys, torch; sys.modules['gandistill'] = None\n"  # importing gandistill now raises
            f"m = torch.jit.load({str(result.path)!r}); z = torch.load({str(tmp_path / 'z.pt')!r})\n"
            f"torch.save(m(z).detach(), {str(tmp_path / 'img.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "img.pt"), model(z), atol=1e-6)


@pytest.fixture
def no_torch(tmp_path):
    """A PYTHONPATH entry whose ``torch`` fails on import, shadowing the real one."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch was imported by a script that must not need it')\n")
    return {**os.environ, "PYTHONPATH": str(fake.parent), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("uint8", [False, True], ids=["float", "uint8"])
def test_sample_onnx_script_stands_alone(exported, tmp_path, no_torch, uint8):
    from PIL import Image

    model, result = exported("dcgan", 0.25, "onnx", uint8=uint8)
    out = tmp_path / "grid.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(result.path), "--num", "10", "--seed", "3",
                           "--out", str(out), "--batch-size", "4"],
                          capture_output=True, text=True, env=no_torch, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "10 images of 32x32x1" in proc.stdout
    # the documented protocol: numpy's generator with the seed, the same grid layout as gandistill
    z = np.random.default_rng(3).standard_normal((10, model.z_dim), dtype=np.float32)
    with torch.no_grad():
        expected = grid_array(model(torch.from_numpy(z)))[..., 0]
    got = np.asarray(Image.open(out))
    assert got.shape == expected.shape == (3 * 34 + 2, 4 * 34 + 2)  # 10 images: 3 rows of 4
    assert np.abs(got.astype(int) - expected).max() <= 1 and (got == expected).mean() > 0.999


def test_the_fake_torch_does_block_torch(no_torch):
    proc = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=no_torch)
    assert proc.returncode != 0 and "must not need it" in proc.stderr


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_a_corrupted_export_gives_a_clear_error(exported, tmp_path, damage):
    for fmt, uint8 in (("onnx", False), ("torchscript", False)):
        _, result = exported("dcgan", 0.25, fmt, uint8)
        data = result.path.read_bytes()
        bad = tmp_path / f"bad{SUFFIX[fmt]}"
        bad.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x07" * 300}[damage])
        pattern = "empty file" if damage == "empty" else "corrupt or not"
        with pytest.raises(ValueError, match=f"bad{SUFFIX[fmt]}: {pattern}"):
            FORMATS.get(fmt).load(str(bad))
        with pytest.raises(ValueError, match=pattern):
            read_metadata(bad)
    with pytest.raises(ValueError, match=f"bad.onnx: {pattern}"):
        profile_onnx(tmp_path / "bad.onnx", repeats=1)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "bad.onnx"), "--out", str(tmp_path / "g.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and not (tmp_path / "g.png").exists()
    assert proc.stderr.count("\n") == 1 and f"bad.onnx: {pattern}" in proc.stderr


def test_missing_export_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    with pytest.raises(MissingExtraError, match=r"'onnxscript'.*pip install gandistill\[export\]"):
        export(make("dcgan", 0.25), "onnx", tmp_path / "g.onnx")
    save_pretrained(make("dcgan", 0.25), tmp_path / "student")
    assert main(["export", str(tmp_path / "student"), "--format", "onnx", "--out", str(tmp_path / "s.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install gandistill[export]" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install gandistill\[export\]"):
        profile_onnx(tmp_path / "s.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_profile_onnx(exported):
    model, result = exported("dcgan", 0.25, "onnx")
    stats = profile_onnx(result.path, batch_sizes=(1, 4), repeats=3, warmup=1, threads=1)
    assert stats["runtime"].startswith("onnxruntime") and stats["threads"] == 1
    assert set(stats["per_batch"]) == {1, 4} and stats["latency_batch"] == 1 and stats["throughput_batch"] == 4
    assert 0 < stats["latency_ms_p50"] == stats["per_batch"][1]["latency_ms_p50"] <= stats["latency_ms_p90"]
    assert stats["throughput_img_s"] == pytest.approx(4 / (stats["per_batch"][4]["latency_ms_p50"] / 1e3))
    # the metadata lets profile.attach_speedups pair an exported student with its exported teacher
    assert stats["family"] == "dcgan" and stats["width"] == 0.25
    assert stats["lineage"]["teacher"]["config"] == model.lineage["teacher"]["config"]


def test_cli_export_end_to_end(tiny_gan_dir, tmp_path, capsys):
    out = tmp_path / "deploy" / "g.pt"
    assert main(["export", str(tiny_gan_dir), "--format", "torchscript", "--out", str(out), "--seed", "5",
                 "--batch-sizes", "1", "3", "4"]) == 0
    printed = capsys.readouterr().out
    assert "exported torchscript" in printed and "check passed" in printed and "seed 5" in printed
    record = json.loads((out.parent / "export.json").read_text())["g.pt"]
    assert record["check"]["batch_sizes"] == [1, 3, 4] and record["check"]["seed"] == 5
    assert record["metadata"]["family"] == "dcgan" and record["bytes"] == out.stat().st_size
    teacher = from_pretrained(tiny_gan_dir)
    z = torch.randn(2, teacher.z_dim)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(out))(z), teacher(z), atol=1e-6)

    assert main(["export", str(tiny_gan_dir), "--out", str(tmp_path / "st")]) == 0  # safetensors by default
    assert from_pretrained(tmp_path / "st").config == teacher.config
    assert oct((tmp_path / "st" / "model.safetensors").stat().st_mode & 0o044) == oct(0o044 & ~_umask())

    assert main(["export", str(tiny_gan_dir), "--out", str(tmp_path / "x"), "--uint8"]) == 2
    assert main(["export", str(tmp_path / "nowhere"), "--format", "torchscript", "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "uint8 applies to torchscript and onnx" in err and "nowhere: no such directory" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@pytest.mark.parametrize("format,name", [("safetensors", "s"), ("torchscript", "g.pt"), ("onnx", "g.onnx")])
def test_a_failed_export_leaves_no_folder_or_temporary_behind(tmp_path, monkeypatch, format, name):
    fmt = FORMATS.get(format)
    monkeypatch.setitem(FORMATS._items, format,
                        dataclasses.replace(fmt, load=lambda path: (lambda z: np.zeros((len(z), 1, 32, 32), "f4"))))
    (tmp_path / "kept").mkdir()
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export(make("dcgan", 0.25), format, tmp_path / "kept" / "new" / "deeper" / name)
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


def test_long_runtime_errors_are_shortened_at_a_word():
    from gandistill.export import _first_line

    words = "onnxruntime could not load the graph because a node " * 10
    short = _first_line(RuntimeError(words + "\nsecond line"))
    assert short.endswith(" ...") and len(short) <= 204 and words.startswith(short[:-4])
    assert short[:-4].split(" ")[-1] in words.split(" ")  # the last word is whole
    assert _first_line(RuntimeError("short")) == "short" and _first_line(RuntimeError("")) == "RuntimeError"
