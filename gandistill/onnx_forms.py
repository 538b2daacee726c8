"""Exact forms of an exported ONNX generator's upsampling layers, and the choice between them by measurement.

A transposed convolution with stride 2, a 4x4 kernel and padding 1 (every upsampling layer of a DCGAN) makes each
of its four output phases (even/odd row, even/odd column) from a 2x2 neighbourhood of its input. So it can be
written, to float rounding, as an ordinary convolution to 4x the channels followed by DepthToSpace:

- ``subpixel3``: one 3x3 convolution (padding 1) whose 3x3 window covers every phase's 2x2 taps (the others are
  zero): 2.25x the multiply-adds, but onnxruntime runs it with its NCHWc convolution kernels, and int8 as
  ``QLinearConv`` (it has no int8 ``ConvTranspose``);
- ``phase2``: one 2x2 convolution (padding 1) to the four phases, one Slice per phase and a Concat: the transposed
  convolution's multiply-adds times (1 + 1/H)^2, plus the copies.

A ReLU that is the layer's only consumer moves before DepthToSpace (they commute: an exact swap), so that
convolution and ReLU fuse and int8 calibrates the ReLU's range. Which form each layer takes is measured on the
exporting machine (``choose_forms``): whole graphs, one layer changed at a time, timed in interleaved rounds at
batch 1 and 64 (gandistill.timing); a layer leaves ``convtranspose`` only for a form measured faster. Layers are
found from the graph (weights' shapes, node attributes), never from a config: any widths, per layer or not.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .timing import SETTLE_S, compare

FORMS = ("convtranspose", "subpixel3", "phase2", "phase4")
LAYER_FORMS = ("measure", *FORMS)  # what export(layer_forms=...) takes: measure, or one form for every layer
MEASURE_BATCH_SIZES = (1, 64)
MEASURE_ROUNDS = 5
MEASURE_RUNS = 3
MEASURE_BUDGET_S = 3.0  # per comparison: fewer runs per round for a slow model, at least one
MIN_GAIN = 1.10  # a rewrite replaces ConvTranspose only when this much faster (geometric mean over batches): on the
# 2-core VM a 3 % margin picked forms that a later profile run found 0.7-0.9x as fast (docs/performance.md)
# phase k of the output (even 0 / odd 1) takes input offsets d (relative to its own row m) with kernel tap k:
# out[2m + a] = sum x[m + d] W[k], k = a + 1 - 2 d  (stride 2, padding 1, kernel 4)
_TAPS = {0: ((-1, 3), (0, 1)), 1: ((0, 2), (1, 0))}


@dataclass(frozen=True)
class Layer:
    """A ConvTranspose node that the forms above rewrite exactly."""

    node: str
    in_channels: int
    out_channels: int
    relu: str | None  # the Relu node that is its only consumer, moved inside the rewrite


def _attribute(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else list(value) if hasattr(value, "__len__") else value
    return default


def rewritable_layers(model) -> list[Layer]:
    """The stride-2, 4x4, padding-1 ConvTranspose nodes with stored weights, in graph order."""
    initializers = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    layers = []
    for node in model.graph.node:
        if node.op_type != "ConvTranspose" or node.input[1] not in initializers:
            continue
        if len(node.input) > 2 and node.input[2] and node.input[2] not in initializers:
            continue
        dims = list(initializers[node.input[1]].dims)  # [in, out / group, kh, kw]
        plain = (len(dims) == 4 and dims[2:] == [4, 4] and _attribute(node, "strides", [1, 1]) == [2, 2]
                 and _attribute(node, "pads", [0] * 4) == [1, 1, 1, 1] and _attribute(node, "group", 1) == 1
                 and _attribute(node, "dilations", [1, 1]) == [1, 1]
                 and _attribute(node, "output_padding", [0, 0]) == [0, 0]
                 and _attribute(node, "auto_pad", "NOTSET") == "NOTSET" and not _attribute(node, "output_shape", []))
        if not plain:
            continue
        after = consumers.get(node.output[0], [])
        relu = after[0].name if (len(after) == 1 and after[0].op_type == "Relu"
                                 and node.output[0] not in outputs) else None
        layers.append(Layer(node.name, dims[0], dims[1], relu))
    return layers


def _phase_kernels(weight: np.ndarray, size: int) -> np.ndarray:
    """ConvTranspose weight [in, out, 4, 4] -> conv weight [phase (a, b), out, in, size, size] (size 3 or 2)."""
    cin, cout = weight.shape[:2]
    kernel = np.zeros((2, 2, cout, cin, size, size), dtype=np.float64)
    for a in (0, 1):
        for b in (0, 1):
            for dy, ky in _TAPS[a]:
                for dx, kx in _TAPS[b]:
                    # subpixel3 windows start at offset -1 for every phase; phase2 windows at -1 (phase 0) or 0 (1)
                    jy, jx = (dy + 1, dx + 1) if size == 3 else (dy + 1 - a, dx + 1 - b)
                    kernel[a, b, :, :, jy, jx] = weight[:, :, ky, kx].T
    return kernel.astype(np.float32)


def rewrite(model, forms: dict[str, str]):
    """A copy of ``model`` with each ConvTranspose named in ``forms`` in its form (``FORMS``)."""
    import onnx
    from onnx import helper, numpy_helper

    unknown = set(forms.values()) - set(FORMS)
    if unknown:
        raise ValueError(f"unknown layer form {sorted(unknown)[0]!r}; choose from {', '.join(FORMS)}")
    layers = {layer.node: layer for layer in rewritable_layers(model)}
    missing = [name for name in forms if name not in layers]
    if missing:
        raise ValueError(f"{missing[0]}: not a stride-2 4x4 ConvTranspose this rewrite covers")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    initializers = {t.name: t for t in out.graph.initializer}
    moved = {layers[n].relu for n, f in forms.items() if f != "convtranspose" and layers[n].relu}
    relu_output = {node.name: node.output[0] for node in out.graph.node if node.name in moved}
    nodes = []
    for node in out.graph.node:
        if node.name in moved:
            continue
        form = forms.get(node.name, "convtranspose")
        if form == "convtranspose":
            nodes.append(node)
            continue
        layer = layers[node.name]
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        bias = (numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 and node.input[2]
                else np.zeros(layer.out_channels, np.float32))
        size = 3 if form == "subpixel3" else 2
        kernels = _phase_kernels(weight, size)  # [a, b, out, in, size, size]
        kernel = kernels.reshape(4 * layer.out_channels, layer.in_channels, size, size)
        p = f"{node.name}.{form}"
        final = relu_output[layer.relu] if layer.relu else node.output[0]
        if form == "phase4":  # four 2x2 convolutions, each padded on the side its phase reaches
            phases = []
            for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                out.graph.initializer.extend([numpy_helper.from_array(kernels[a, b].copy(), f"{p}.weight{i}"),
                                              numpy_helper.from_array(bias.astype(np.float32), f"{p}.bias{i}")])
                nodes.append(helper.make_node("Conv", [node.input[0], f"{p}.weight{i}", f"{p}.bias{i}"], [f"{p}.phase{i}"],
                                              name=f"{p}.conv{i}", kernel_shape=[2, 2], pads=[1 - a, 1 - b, a, b]))
                if layer.relu:
                    nodes.append(helper.make_node("Relu", [f"{p}.phase{i}"], [f"{p}.relu{i}"], name=f"{p}.relu{i}"))
                phases.append(f"{p}.relu{i}" if layer.relu else f"{p}.phase{i}")
            nodes.append(helper.make_node("Concat", phases, [f"{p}.phases"], name=f"{p}.concat", axis=1))
            nodes.append(helper.make_node("DepthToSpace", [f"{p}.phases"], [final], name=f"{p}.depth_to_space",
                                          blocksize=2, mode="DCR"))
            continue
        out.graph.initializer.extend([numpy_helper.from_array(kernel, f"{p}.weight"),
                                      numpy_helper.from_array(np.tile(bias, 4).astype(np.float32), f"{p}.bias")])
        conv = f"{p}.conv_out"
        nodes.append(helper.make_node("Conv", [node.input[0], f"{p}.weight", f"{p}.bias"], [conv], name=f"{p}.conv",
                                      kernel_shape=[size, size], pads=[1, 1, 1, 1]))
        if layer.relu:
            nodes.append(helper.make_node("Relu", [conv], [f"{p}.relu_out"], name=f"{p}.relu"))
            conv = f"{p}.relu_out"
        if size == 2:  # [N, 4 out, H + 1, W + 1]: phase (a, b) is rows a..a+H-1, columns b..b+W-1 of its block
            phases = []
            for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                c = layer.out_channels
                starts = np.array([i * c, a, b], np.int64)
                ends = np.array([(i + 1) * c, -1 if a == 0 else 2**62, -1 if b == 0 else 2**62], np.int64)
                out.graph.initializer.extend([numpy_helper.from_array(starts, f"{p}.starts{i}"),
                                              numpy_helper.from_array(ends, f"{p}.ends{i}"),
                                              numpy_helper.from_array(np.array([1, 2, 3], np.int64), f"{p}.axes{i}")])
                nodes.append(helper.make_node("Slice", [conv, f"{p}.starts{i}", f"{p}.ends{i}", f"{p}.axes{i}"],
                                              [f"{p}.phase{i}"], name=f"{p}.slice{i}"))
                phases.append(f"{p}.phase{i}")
            nodes.append(helper.make_node("Concat", phases, [f"{p}.phases"], name=f"{p}.concat", axis=1))
            conv = f"{p}.phases"
        # channel (a * 2 + b) * out + c -> output channel c at (2h + a, 2w + b): DepthToSpace's DCR order
        nodes.append(helper.make_node("DepthToSpace", [conv], [final], name=f"{p}.depth_to_space", blocksize=2,
                                      mode="DCR"))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {name for node in out.graph.node for name in node.input}
    kept = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    onnx.checker.check_model(out)
    return out


def time_graphs(graphs: dict[str, object], z_dim: int, threads: int | None, batch_sizes=MEASURE_BATCH_SIZES,
                rounds: int = MEASURE_ROUNDS, runs: int = MEASURE_RUNS, budget_s: float = MEASURE_BUDGET_S,
                seed: int = 0) -> dict[str, dict[int, float]]:
    """name -> batch size -> seconds per run of each graph (ModelProto or path), timed interleaved in one process
    with gandistill's onnxruntime session settings."""
    from .onnx_runtime import onnx_session

    threads = threads or _torch_threads()
    sessions = {name: onnx_session(g if isinstance(g, (str, os.PathLike)) else g.SerializeToString(), threads)
                for name, g in graphs.items()}
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, float]] = {name: {} for name in graphs}
    for n in batch_sizes:
        z = rng.standard_normal((n, z_dim), dtype=np.float32)
        calls = {name: (lambda s=s, z=z: s.run(None, {s.get_inputs()[0].name: z})) for name, s in sessions.items()}
        settle = SETTLE_S if threads > 1 else 0.0  # one thread: no pool whose spinning could steal the cores
        for name, timing in compare(calls, rounds=rounds, runs=runs, budget_s=budget_s, settle=settle).items():
            out[name][n] = timing["s"]
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def apply_layer_forms(path: str, layer_forms: str, z_dim: int, threads: int | None = None) -> dict:
    """Rewrite the float ONNX graph at ``path`` in place: every layer in the form ``layer_forms`` names, or each
    in its fastest measured form (``"measure"``); its metadata is kept. Returns the record for export.json."""
    import onnx

    if layer_forms not in LAYER_FORMS:
        raise ValueError(f"layer_forms must be one of {', '.join(LAYER_FORMS)}, got {layer_forms!r}")
    model = onnx.load(path)
    threads = threads or _torch_threads()
    if layer_forms == "measure":
        rewritten, record = choose_forms(model, z_dim, threads)
    else:
        rewritten, record = fixed_forms(model, layer_forms)
    onnx.save_model(rewritten, path, save_as_external_data=False)
    return {**record, "asked": layer_forms, "threads": threads, "machine": machine_description()}


def machine_description() -> str:
    """The CPU the measurements ran on, as the records beside them say."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def relative_speed(times: dict[int, float], reference: dict[int, float]) -> float:
    """Geometric mean over batch sizes of reference time / time: > 1 is faster than the reference."""
    return math.exp(np.mean([math.log(reference[n] / times[n]) for n in reference]))


def choose_forms(model, z_dim: int, threads: int | None = None, batch_sizes=MEASURE_BATCH_SIZES,
                 rounds: int = MEASURE_ROUNDS, runs: int = MEASURE_RUNS) -> tuple[object, dict]:
    """The graph with each rewritable layer in its fastest exact form on this machine, and the record of why.

    Layer by layer, in graph order: the graph as chosen so far against the same graph with this layer in each
    other form, timed interleaved at ``batch_sizes``; a form replaces the current one when it is at least
    ``MIN_GAIN`` faster (geometric mean over batch sizes)."""
    layers = rewritable_layers(model)
    chosen: dict[str, str] = {}
    record_layers = []
    for layer in layers:
        graphs = {form: rewrite(model, {**chosen, layer.node: form}) for form in FORMS}
        times = time_graphs(graphs, z_dim, threads, batch_sizes, rounds, runs)
        base = times["convtranspose"]
        speed = {form: relative_speed(t, base) for form, t in times.items()}
        best = max(speed, key=speed.get)
        form = best if speed[best] >= MIN_GAIN else "convtranspose"
        if form != "convtranspose":
            chosen[layer.node] = form
        record_layers.append({
            "node": layer.node, "in_channels": layer.in_channels, "out_channels": layer.out_channels,
            "form": form, "relu_fused": bool(layer.relu) and form != "convtranspose",
            "ms_per_run": {f: {str(n): round(t[n] * 1e3, 4) for n in batch_sizes} for f, t in times.items()},
            "speed_vs_convtranspose": {f: round(v, 3) for f, v in speed.items()}})
    return rewrite(model, chosen), {
        "layers": record_layers, "batch_sizes": list(batch_sizes), "rounds": rounds, "runs": runs,
        "min_gain": MIN_GAIN, "threads": threads,
        "how": "whole graphs, one layer's form changed at a time, timed in interleaved rounds in one process "
               "(gandistill.timing); per form ms per run at each batch size, speed = geometric mean over batch "
               "sizes of the ConvTranspose graph's time / this graph's time"}


def fixed_forms(model, form: str) -> tuple[object, dict]:
    """Every rewritable layer in ``form``, unmeasured (``export(layer_forms=form)``)."""
    layers = rewritable_layers(model)
    forms = {} if form == "convtranspose" else {layer.node: form for layer in layers}
    return rewrite(model, forms), {
        "layers": [{"node": layer.node, "in_channels": layer.in_channels, "out_channels": layer.out_channels,
                    "form": form} for layer in layers], "how": f"every layer {form}, as asked (not measured)"}


__all__ = ["FORMS", "LAYER_FORMS", "Layer", "apply_layer_forms", "choose_forms", "fixed_forms", "machine_description", "relative_speed", "rewritable_layers",
           "rewrite", "time_graphs"]
