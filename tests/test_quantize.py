"""int8 ONNX exports: the registry, the quality check that replaces parity, refusal below the bound."""
import json

import numpy as np
import onnx
import pytest

from gandistill.cli import build_parser, main
from gandistill.export import QUANTIZATIONS, ExportError, export, read_metadata
from gandistill.quantize import image_layer_nodes

from .test_export import SCRIPT, make, no_torch  # noqa: F401 - no_torch is a fixture


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny DCGAN (images spread over [-1, 1]) exported as float ONNX and as int8 ONNX side by side."""
    root = tmp_path_factory.mktemp("q")
    model = make("dcgan", 1.0)
    float_result = export(model, "onnx", root / "g.onnx", seed=3)
    int8_result = export(model, "onnx", root / "g-int8.onnx", seed=3, quantize="int8")
    return model, float_result, int8_result


def test_quantizations_come_from_the_registry_and_feed_the_cli():
    assert QUANTIZATIONS.names() == ["int8"]
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in sub.choices["export"]._actions if a.dest == "quantize")
    assert list(action.choices) == QUANTIZATIONS.names() and action.default is None


def test_int8_export_is_checked_for_quality_and_records_its_measured_speed(pair):
    model, float_result, int8_result = pair
    record = int8_result.record
    check = record["check"]
    assert record["quantize"] == "int8" and check["kind"] == "quality" and check["passed"]
    assert check["psnr_db"] >= check["min_psnr_db"] == 30.0 and 0.9 < check["ssim"] <= 1.0
    assert 0 < check["max_abs_diff"] < 1.0 and check["seed"] == 4  # fresh z: not the float check's seed 3
    assert record["float_check"]["passed"] and record["float_check"]["max_abs_diff"] <= 1e-4
    assert int8_result.path.stat().st_size == record["bytes"] < record["float_bytes"]
    # both land in one export.json, keyed by file name
    report = json.loads(int8_result.report.read_text())
    assert set(report) == {"g.onnx", "g-int8.onnx"} and report["g-int8.onnx"]["check"] == check
    assert read_metadata(int8_result.path)["quantize"] == "int8"
    q = record["quantization"]
    # measured against the float file, interleaved, at batch 1 and 64; said in one line
    assert set(q["speed_vs_float"]) == {"1", "64"} and all(v > 0 for v in q["speed_vs_float"].values())
    assert q["speed_verdict"].startswith("int8 runs at") and int8_result.speed_verdict == q["speed_verdict"]
    assert ("buys size here, not speed" in q["speed_verdict"]) != all(v > 1 for v in q["speed_vs_float"].values())
    # the calibration method is the one that drew closest to the float graph
    psnr = q["calibration"]["psnr_db_by_method"]
    assert set(psnr) == {"MinMax", "Percentile", "Entropy"} and q["calibration"]["method"] == max(psnr, key=psnr.get)
    # one step per unit that could be int8: the dense first layer and every upsampling layer but the image layer
    units = [step["layer"] for step in q["layer_steps"]]
    assert units[0] == "dense" and len(set(units)) == 3 and set(q["int8_layers"]) <= set(units)
    graph = onnx.load(str(int8_result.path)).graph
    stored = weight_storage(graph)  # the image layer reads float32 weights; int8 layers int8 ones, others float
    image_layer = stored.pop(q["float_nodes"][0])
    assert image_layer and all(kind == "float32 initializer" for kind in image_layer), image_layer
    int8_nodes = [name for name, kinds in stored.items() if kinds[0] == "int8 via DequantizeLinear"]
    assert len(int8_nodes) == len(q["int8_layers"]) >= 1
    assert all(kinds[0] == "float32 initializer" for name, kinds in stored.items() if name not in int8_nodes)
    assert "summary" not in record and "PSNR" in int8_result.summary()


def _fake_times(cost):
    """A stand-in for onnx_forms.time_graphs: each graph's seconds per run = cost(its ONNX graph), the same at
    every batch size (tests must not depend on this machine's speed)."""
    def time_graphs(graphs, z_dim, threads, batch_sizes=(1, 64), *a, **k):
        out = {}
        for name, g in graphs.items():
            graph = (onnx.load(str(g)) if isinstance(g, (str, type(SCRIPT))) else g).graph
            out[name] = {n: cost(graph) for n in batch_sizes}
        return out
    return time_graphs


def _int8_weighted(graph, op_types) -> int:
    """How many nodes of ``op_types`` read a dequantised int8 weight."""
    stored = weight_storage(graph)
    ops = {n.name: n.op_type for n in graph.node}
    return sum(1 for name, kinds in stored.items() if ops[name] in op_types and kinds[0].startswith("int8"))


def test_int8_only_where_it_pays(tmp_path, monkeypatch):
    import gandistill.onnx_forms as forms

    # int8 convolutions pay, an int8 Gemm costs: the export keeps the Gemm float, the convolutions int8
    monkeypatch.setattr(forms, "time_graphs", _fake_times(
        lambda g: 1.0 - 0.1 * _int8_weighted(g, ("Conv",)) + 0.2 * _int8_weighted(g, ("Gemm", "MatMul"))))
    result = export(make("dcgan", 1.0), "onnx", tmp_path / "g.onnx", seed=3, quantize="int8", min_psnr=0.0,
                    layer_forms="convtranspose")
    q = result.record["quantization"]
    steps = {step["layer"]: step["int8_speed_vs_float_layer"] for step in q["layer_steps"]}
    assert steps["dense"] < 1 and all(v > 1 for k, v in steps.items() if k != "dense")
    assert "dense" not in q["int8_layers"] and len(q["int8_layers"]) == 2 and q["int8_pays"]
    graph = onnx.load(str(result.path)).graph
    convs_per_layer = {"subpixel3": 1, "phase2": 1, "phase4": 4}[q["int8_form"]]
    assert _int8_weighted(graph, ("Gemm", "MatMul")) == 0 and _int8_weighted(graph, ("Conv",)) == 2 * convs_per_layer
    assert "QLinearConv" not in [n.op_type for n in graph.node]  # QDQ in the file; onnxruntime fuses on load
    assert "not speed" not in q["speed_verdict"] and float(q["speed_vs_float"]["64"]) > 1


def test_int8_that_never_pays_is_said_plainly(tiny_gan_dir, tmp_path, monkeypatch, capsys):
    import gandistill.onnx_forms as forms

    # every int8 layer costs: none pays, all are quantised for the size, and the export says so on stderr
    monkeypatch.setattr(forms, "time_graphs", _fake_times(
        lambda g: 1.0 + 0.1 * _int8_weighted(g, ("Conv", "Gemm", "MatMul"))))
    out = tmp_path / "g-int8.onnx"
    assert main(["export", str(tiny_gan_dir), "--format", "onnx", "--quantize", "int8", "--out", str(out),
                 "--seed", "2", "--min-psnr", "-100", "--layer-forms", "convtranspose"]) == 0
    err = capsys.readouterr().err
    q = json.loads((tmp_path / "export.json").read_text())["g-int8.onnx"]["quantization"]
    assert not q["int8_pays"] and sorted(q["int8_layers"]) == sorted(s["layer"] for s in q["layer_steps"])
    assert "int8 buys size here, not speed" in q["speed_verdict"] and q["speed_verdict"] in err
    assert all(v < 1 for v in q["speed_vs_float"].values())


def weight_storage(graph) -> dict[str, list[str]]:
    """Each weighted node -> how its weight (and bias) inputs are stored: 'float32 initializer' when read as
    such, '<dtype> via DequantizeLinear' when dequantised from a quantised initializer."""
    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}

    def kind(name: str) -> str:
        if name in inits:
            return f"{onnx.helper.tensor_dtype_to_np_dtype(inits[name].data_type)} initializer"
        node = producers[name]
        source = node.input[0]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[source].data_type) if source in inits else "activation"
        return f"{dtype} via {node.op_type}"

    return {n.name: [kind(x) for x in n.input[1:3] if x] for n in graph.node
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")}


def test_the_image_layer_check_sees_a_quantised_image_layer(tmp_path, monkeypatch):
    """weight_storage tells a float image layer from a quantised one whose name is still recorded as float."""
    import onnxruntime.quantization as ortq

    real = ortq.quantize_static
    monkeypatch.setattr(ortq, "quantize_static", lambda *a, nodes_to_exclude=None, **k: real(*a, **k))
    result = export(make("dcgan", 1.0), "onnx", tmp_path / "g.onnx", seed=3, quantize="int8", min_psnr=-100.0)
    float_nodes = result.record["quantization"]["float_nodes"]
    stored = weight_storage(onnx.load(str(result.path)).graph)
    assert float_nodes[0] in stored and stored[float_nodes[0]][0] == "int8 via DequantizeLinear"


def test_int8_images_stay_close_to_the_float_graphs(pair):
    import onnxruntime as ort

    model, float_result, int8_result = pair
    z = np.random.default_rng(7).standard_normal((16, model.z_dim), dtype=np.float32)
    a = ort.InferenceSession(str(float_result.path)).run(None, {"z": z})[0]
    b = ort.InferenceSession(str(int8_result.path)).run(None, {"z": z})[0]
    mse = np.square(a - b).reshape(16, -1).mean(1)
    assert np.mean(10 * np.log10(4 / mse)) >= 30.0  # the documented bound holds on latents the check never saw
    assert not np.array_equal(a, b)  # and it is a different (quantised) graph


def test_below_the_psnr_bound_the_export_fails_and_writes_nothing(tmp_path):
    model = make("dcgan", 1.0)
    out = tmp_path / "g-int8.onnx"
    with pytest.raises(ExportError, match=r"int8 export draws too far from the float graph: PSNR [\d.]+ dB < min_psnr 200 .*; nothing written"):
        export(model, "onnx", out, seed=0, quantize="int8", min_psnr=200.0)
    assert list(tmp_path.iterdir()) == []


def test_quantize_arguments_are_checked(tmp_path, capsys):
    model = make("dcgan", 1.0)
    with pytest.raises(ValueError, match="quantize int8 applies to onnx exports, not torchscript"):
        export(model, "torchscript", tmp_path / "g.pt", quantize="int8")
    with pytest.raises(ValueError, match="unknown quantization 'int4'; choose one of: int8"):
        export(model, "onnx", tmp_path / "g.onnx", quantize="int4")
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices, from the registry
        main(["export", "x", "--format", "onnx", "--out", str(tmp_path / "g.onnx"), "--quantize", "int4"])
    assert exit_info.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    assert main(["export", "x", "--format", "torchscript", "--out", str(tmp_path / "g.pt"),
                 "--quantize", "int8"]) == 2
    assert "applies to onnx exports" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_int8_export(tiny_gan_dir, tmp_path, capsys):
    out = tmp_path / "g-int8.onnx"
    assert main(["export", str(tiny_gan_dir), "--format", "onnx", "--quantize", "int8", "--out", str(out),
                 "--seed", "2", "--min-psnr", "-100"]) == 0  # untrained: near-flat images, any PSNR will do
    printed = capsys.readouterr().out
    assert "exported onnx (int8)" in printed and "int8 check passed" in printed
    record = json.loads((tmp_path / "export.json").read_text())["g-int8.onnx"]
    assert record["check"]["min_psnr_db"] == -100 and record["bytes"] == out.stat().st_size


def test_image_layer_is_the_last_weighted_node_and_after():
    node = onnx.helper.make_node
    graph = onnx.helper.make_graph(
        [node("Gemm", ["z", "w"], ["a"], name="fc"), node("Relu", ["a"], ["b"], name="r"),
         node("ConvTranspose", ["b", "k"], ["c"], name="rgb"), node("Tanh", ["c"], ["img"], name="t")],
        "g", [], [])
    assert image_layer_nodes(onnx.helper.make_model(graph)) == ["rgb", "t"]


def test_sample_onnx_script_draws_the_int8_export_without_torch(pair, tmp_path, no_torch):  # noqa: F811
    import subprocess
    import sys

    from PIL import Image

    _, float_result, int8_result = pair
    grids = {}
    for name, result in (("float", float_result), ("int8", int8_result)):
        out = tmp_path / f"{name}.png"
        proc = subprocess.run([sys.executable, str(SCRIPT), str(result.path), "--num", "8", "--seed", "3",
                               "--out", str(out)], capture_output=True, text=True, env=no_torch, cwd=tmp_path,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "8 images of 32x32x1" in proc.stdout
        grids[name] = np.asarray(Image.open(out)).astype(np.float64)
    # the same z: the int8 grid is the float grid within the export's quality bound
    mse = np.square(grids["int8"] - grids["float"]).mean()
    assert 0 < mse and 10 * np.log10(255.0 ** 2 / mse) >= 30.0


def test_bench_int8_script_prints_the_interleaved_table(pair, tmp_path):
    import subprocess
    import sys

    _, float_result, int8_result = pair
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "bench_int8.py"), str(float_result.path),
                           str(int8_result.path), "--threads", "1", "--batch-sizes", "1", "4", "--rounds", "2",
                           "--seconds", "0.05", "--ops", "--layers", "--settings", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| int8 / float |" in proc.stdout and "img/s batch 4" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["img_s"]) == {"1", "4"} and all(v > 0 for r in result["img_s"].values() for v in r.values())
    assert result["files"]["int8"]["bytes"] == int8_result.path.stat().st_size
    assert result["files"]["int8"]["macs"] == result["files"]["float"]["macs"] > 0
    assert "QuantizeLinear" in result["op_us"]["int8"]
    # per node: the weighted layers carry their multiply-adds (from the file's weights) and a rate
    for name in ("float", "int8"):
        weighted = [x for x in result["layers"][name] if x["macs"]]
        assert weighted and all(x["gmac_s"] > 0 and x["us"] > 0 for x in weighted)
    float_macs = sum(x["macs"] for x in result["layers"]["float"])
    assert float_macs >= 4 * result["files"]["float"]["macs"]  # batch 4; sub-pixel forms count their zero taps
    assert "| node | op | output | MACs |" in proc.stdout
    # the session settings gandistill uses, against the alternatives, per file and batch size
    settings = result["settings_img_s"]["int8"]["4"]
    assert set(settings) == {"ORT_ENABLE_ALL (gandistill)", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL, spinning off"}
    assert all(v > 0 for v in settings.values())


def _recording_runner(seen: list):
    def run(z):
        seen.append(z.copy())
        return np.tanh(np.tile(z[:, None, None, :64], (1, 1, 64, 1)))  # [N, 1, 64, 64]
    return run


@pytest.mark.parametrize("seed", [0, 1, 4, -1, 2**31, 2**32])
def test_the_quality_check_never_draws_the_calibration_latents(seed):
    """The check's z come from their own stream (a torch.Generator at QUALITY_STREAM + seed mod QUALITY_STREAM)
    and the calibration's from seeds below QUALITY_STREAM: even --seed -1 (check seed 0) cannot check on the
    calibration z. torch keeps a seed's low 32 bits only, so 2**32 would draw what 0 draws."""
    import torch

    from gandistill.quantize import CALIBRATION_SEED, QUALITY_STREAM, calibration_latents, quality_check

    seen: list = []
    check = quality_check(_recording_runner(seen), _recording_runner([]), 64, seed, 30.0, num=16,
                          batch_sizes=(16,))
    z = np.concatenate(seen)
    stream = QUALITY_STREAM + seed % QUALITY_STREAM
    assert QUALITY_STREAM <= stream < 2**32
    expected = torch.randn(16, 64, generator=torch.Generator().manual_seed(stream)).numpy()
    assert np.array_equal(z, expected) and check["seed"] == seed and str(QUALITY_STREAM) in check["latents"]
    for calibration_seed in {CALIBRATION_SEED, seed % QUALITY_STREAM, (seed - 1) % QUALITY_STREAM}:
        assert not np.isclose(z, calibration_latents(64, 16, calibration_seed)).any()


def test_calibration_seeds_stay_below_the_quality_stream():
    from gandistill.quantize import QUALITY_STREAM, calibration_latents

    calibration_latents(64, 4, QUALITY_STREAM - 1)
    for seed in (-1, QUALITY_STREAM, 2**32):
        with pytest.raises(ValueError, match=rf"^calibration seed must be in \[0, {QUALITY_STREAM}\), got {seed}$"):
            calibration_latents(64, 4, seed)
