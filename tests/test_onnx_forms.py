"""Exact layer forms of an ONNX export (onnx_forms), chosen by measurement and recorded; the timing protocol."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from gandistill.cli import main
from gandistill.export import export
from gandistill.onnx_forms import FORMS, LAYER_FORMS, rewritable_layers, rewrite
from gandistill.students import make_student
from gandistill.timing import Settler, compare, round_order

from .test_export import make


def run(model, z: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: z})[0]


def conv_transpose_graph(cin: int, cout: int, size: int, relu: bool, seed: int = 0):
    """x [N, cin, size, size] -> ConvTranspose(stride 2, kernel 4, padding 1) (-> Relu): one layer, random weights."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((cin, cout, 4, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y" if relu else "img"], name="up",
                              strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[4, 4])]
    if relu:
        nodes.append(helper.make_node("Relu", ["y"], ["img"], name="act"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                         ["N", cin, size, size])],
                              [helper.make_tensor_value_info("img", onnx.TensorProto.FLOAT, ["N", cout, 2 * size, 2 * size])],
                              [weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("form", [f for f in FORMS if f != "convtranspose"])
@pytest.mark.parametrize("cin,cout,size,relu", [(6, 3, 4, True), (5, 1, 7, False), (3, 8, 1, True)])
def test_every_form_draws_what_the_transposed_convolution_draws(form, cin, cout, size, relu):
    model = conv_transpose_graph(cin, cout, size, relu)
    [layer] = rewritable_layers(model)
    assert (layer.in_channels, layer.out_channels, layer.relu) == (cin, cout, "act" if relu else None)
    rewritten = rewrite(model, {"up": form})
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops and ops[-1] == "DepthToSpace"  # the ReLU moved before DepthToSpace
    assert ops.count("Relu") == (0 if not relu else 4 if form == "phase4" else 1)
    x = np.random.default_rng(1).standard_normal((3, cin, size, size)).astype(np.float32)
    expected = run(model, x)
    got = run(rewritten, x)
    assert got.shape == expected.shape == (3, cout, 2 * size, 2 * size)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_only_the_layers_the_rewrites_cover_are_found():
    model = conv_transpose_graph(4, 2, 4, True)
    node = model.graph.node[0]
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("strides", [1, 1]), helper.make_attribute("pads", [1, 1, 1, 1]),
                           helper.make_attribute("kernel_shape", [4, 4])])
    assert rewritable_layers(model) == []  # stride 1: not an upsampling layer of this kind
    with pytest.raises(ValueError, match="not a stride-2 4x4 ConvTranspose"):
        rewrite(model, {"up": "subpixel3"})
    with pytest.raises(ValueError, match="unknown layer form 'winograd'"):
        rewrite(conv_transpose_graph(4, 2, 4, True), {"up": "winograd"})


@pytest.mark.parametrize("layer_forms", [f for f in LAYER_FORMS if f != "convtranspose"])
def test_the_export_checks_the_rewritten_graph_and_records_each_layers_form(tmp_path, layer_forms):
    # per-layer widths: the layers are read from the weights, whatever the config says
    student = make_student(make("dcgan", 1.0), 0.5).eval()
    result = export(student, "onnx", tmp_path / "g.onnx", seed=0, layer_forms=layer_forms)
    record = result.record
    assert record["check"]["passed"] and record["check"]["max_abs_diff"] <= 1e-4
    forms = record["layer_forms"]
    assert forms["asked"] == layer_forms and forms["threads"] >= 1 and forms["machine"]
    layers = forms["layers"]
    widths = [(x["in_channels"], x["out_channels"]) for x in layers]
    assert widths == [(16, 8), (8, 4), (4, 1)]  # the tiny student's weights: 16 -> 8 -> 4 -> 1 channels
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    if layer_forms == "measure":
        for x in layers:  # every form timed at batch 1 and 64; convtranspose kept unless another was faster
            assert set(x["ms_per_run"]) == set(FORMS) and all(set(t) == {"1", "64"} for t in x["ms_per_run"].values())
            speed = x["speed_vs_convtranspose"]
            assert x["form"] == "convtranspose" or speed[x["form"]] >= forms["min_gain"]
        assert ops.count("ConvTranspose") == sum(x["form"] == "convtranspose" for x in layers)
    else:
        assert all(x["form"] == layer_forms for x in layers) and "ConvTranspose" not in ops
    saved = json.loads(result.report.read_text())["g.onnx"]["layer_forms"]
    assert saved["layers"] == layers


def test_cli_layer_forms(tiny_gan_dir, tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", str(tiny_gan_dir), "--format", "onnx", "--out", str(out), "--seed", "1",
                 "--layer-forms", "phase2"]) == 0
    record = json.loads((tmp_path / "export.json").read_text())["g.onnx"]
    assert {x["form"] for x in record["layer_forms"]["layers"]} == {"phase2"} and record["check"]["passed"]
    with pytest.raises(SystemExit):
        main(["export", str(tiny_gan_dir), "--format", "onnx", "--out", str(out), "--layer-forms", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_rounds_alternate_and_a_pause_separates_thread_pools():
    assert list(round_order(3, 2)) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]
    slept = []
    settler = Settler(0.05, slept.append)
    for pool in ["torch", "torch", "ort:1", "ort:1", "ort:2", "torch"]:
        settler.before(pool)
    assert slept == [0.05] * 3  # torch -> ort:1, ort:1 -> ort:2, ort:2 -> torch
    clock = {"t": 0.0}
    cost = {"a": 1.0, "b": 3.0}

    def call(name):
        clock["t"] += cost[name]

    timed = compare({n: (lambda n=n: call(n)) for n in cost}, rounds=3, runs=2, warmup=1, settle=0.0,
                    timer=lambda: clock["t"])
    assert timed["a"]["s"] == 1.0 and timed["b"]["s"] == 3.0 and timed["b"]["rounds"] == [3.0] * 3
    budget = compare({n: (lambda n=n: call(n)) for n in cost}, rounds=2, runs=50, warmup=1, settle=0.0,
                     budget_s=16.0, timer=lambda: clock["t"])
    assert budget["a"]["runs"] == 2  # 16 s over 2 rounds of (1 + 3) s per run: 2 runs a round, not 50
