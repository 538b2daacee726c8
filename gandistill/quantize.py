"""Quantised ONNX exports: how a float ONNX generator becomes a smaller one, and the check that it still draws.

``export(..., format="onnx", quantize="int8")`` first writes and checks the float graph as every ONNX export is
checked (max |onnx - pytorch| <= atol), then hands it to a ``Quantization`` from ``QUANTIZATIONS``. The result
cannot match PyTorch to 1e-4, so its check is a quality bound instead: its images against the float graph's on
fresh latents, as PSNR (dB, [-1, 1] images, data range 2), SSIM and max abs difference; below ``min_psnr`` the
export fails and nothing is written. Measurements on the shipped students: docs/int8.md.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .registry import Registry

DEFAULT_MIN_PSNR = 30.0  # dB on [-1, 1]: RMSE 0.063, about 8 grey levels of 255; docs/int8.md says why
CALIBRATION_LATENTS = 256
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 32
QUALITY_LATENTS = 256
# torch's CPU generator keeps only the low 32 bits of a seed (2**32 draws what 0 draws), so the two streams split
# that space: calibration seeds lie below QUALITY_STREAM, the quality check's z come from QUALITY_STREAM +
# (seed mod QUALITY_STREAM). The check never runs on the latents the graph was calibrated on, whatever --seed is.
QUALITY_STREAM = 2**31
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Quantization:
    """How to turn a float ONNX file into a quantised one: ``apply(float_path, out_path, z_dim, context) ->
    details``; context: ``convtranspose_path`` (the graph before onnx_forms rewrote it), ``float_forms`` (layer
    -> form in the float file), ``threads`` (of the measurements)."""

    name: str
    description: str
    apply: Callable[[str, str, int, dict], dict]
    formats: tuple[str, ...] = ("onnx",)


QUANTIZATIONS: Registry[Quantization] = Registry("quantization")


def image_layer_nodes(model) -> list[str]:
    """Names of the nodes that make the image: the last weighted node (the toRGB convolution) and all after it.

    Kept in float: quantising them costs 6 dB of PSNR on the w0.25 DCGAN student and saves ~1 KB (docs/int8.md).
    """
    nodes = list(model.graph.node)  # ONNX keeps nodes in topological order
    last = max((i for i, n in enumerate(nodes) if n.op_type in WEIGHTED_OPS), default=None)
    return [] if last is None else [n.name for n in nodes[last:]]


def calibration_latents(z_dim: int, num: int = CALIBRATION_LATENTS, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """The generator's own inputs: standard normal z [num, z_dim], torch's generator at ``seed`` (below
    ``QUALITY_STREAM``: the quality check's seeds start there)."""
    if not 0 <= seed < QUALITY_STREAM:
        raise ValueError(f"calibration seed must be in [0, {QUALITY_STREAM}), got {seed}")
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed)).numpy()


def quality_stream_seed(seed: int) -> int:
    """The torch seed of the quality check's latents for a check ``seed``: in [QUALITY_STREAM, 2**32), where no
    calibration seed lies (a negative ``seed`` too)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed of the int8 quality check must be an integer, got {seed!r}")
    return QUALITY_STREAM + seed % QUALITY_STREAM


CALIBRATION_METHODS = ("MinMax", "Percentile", "Entropy")  # onnxruntime's; the export keeps the best by PSNR
SELECTION_SEED = 1  # latents that choose the calibration method: neither the calibration's (0) nor the check's
SELECTION_LATENTS = 64


def _latent_reader(z: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Latents(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(z[i:i + CALIBRATION_BATCH] for i in range(0, len(z), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Latents()


def _quantize_graph(graph, out_path: str, z: np.ndarray, float_nodes: Callable, method: str, tmp: str) -> list[str]:
    """quantize_static of an in-memory graph: QDQ, int8 per-channel weights, uint8 activations; the nodes
    ``float_nodes(pre-processed graph)`` names stay float. Returns their names."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, prepared = os.path.join(tmp, "source.onnx"), os.path.join(tmp, "prepared.onnx")
    onnx.save_model(graph, source)
    # shape inference + onnxruntime's graph optimisations, as onnxruntime recommends before quantising
    quant_pre_process(source, prepared, skip_symbolic_shape=True)
    excluded = float_nodes(onnx.load(prepared))
    options = {"CalibPercentile": 99.999} if method == "Percentile" else {}
    quantize_static(prepared, out_path, _latent_reader(z, graph.graph.input[0].name), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=getattr(CalibrationMethod, method),
                    extra_options=options)
    return excluded


def _units(graph, layers) -> dict[str, list[str]]:
    """What is quantised or kept float as one: ``dense`` (every Gemm/MatMul: a DCGAN's first layer, StyleGAN2's
    mapping network and affines), each rewritable upsampling layer (its convolution, named by onnx_forms), and
    ``other`` (every other convolution). The image layer is not among them: it stays float."""
    units: dict[str, list[str]] = {}
    for node in graph.graph.node:
        layer = next((x.node for x in layers if node.name == x.node or node.name.startswith(f"{x.node}.")), None)
        if node.op_type in ("Gemm", "MatMul"):
            units.setdefault("dense", []).append(node.name)
        elif node.op_type in ("Conv", "ConvTranspose"):
            units.setdefault(layer or "other", []).append(node.name)
    return units


def _static_int8(float_path: str, out_path: str, z_dim: int, context: dict | None = None) -> dict:
    """Static post-training int8 where it pays: QDQ, per-channel int8 weights, uint8 activations.

    The image layer stays float (quality). Every other weighted layer is quantised only where the whole graph is
    measured faster with it quantised than without (backward elimination from all quantised, interleaved timings
    on this machine, gandistill.onnx_forms.time_graphs); an upsampling layer quantised runs in an exact
    convolution form (onnxruntime has no int8 ConvTranspose). The calibration method is the one whose graph draws
    closest to the float graph (PSNR on latents of their own). When no layer pays, every layer is quantised
    anyway (the file is then smaller, not faster) and the record says so."""
    import onnx

    from .export import _require
    from .onnx_forms import FORMS, relative_speed, rewritable_layers, rewrite, time_graphs

    _require("onnx", "int8 quantisation")
    context = context or {}
    source = onnx.load(context.get("convtranspose_path", float_path))  # every upsampling layer a ConvTranspose
    float_forms = dict(context.get("float_forms", {}))
    float_graph = onnx.load(float_path)
    threads = context.get("threads")
    layers = rewritable_layers(source)
    last_weighted = image_layer_nodes(source)[:1]
    image = layers[-1].node if layers and last_weighted == [layers[-1].node] else None  # stays float
    hidden = [layer for layer in layers if layer.node != image]
    order = [u for u in _units(source, layers) if u != image]  # graph order: dense first, then the layers
    z = calibration_latents(z_dim)
    selection_z = calibration_latents(z_dim, SELECTION_LATENTS, SELECTION_SEED)

    def graph_for(int8: set[str], int8_form: str):
        forms = {layer.node: (int8_form if layer.node in int8 else float_forms.get(layer.node, "convtranspose"))
                 for layer in layers}
        return rewrite(source, {n: f for n, f in forms.items() if f != "convtranspose"})

    def quantized(int8: set[str], int8_form: str, method: str, tmp: str, name: str) -> tuple[str, list[str]]:
        graph = graph_for(int8, int8_form)
        units = _units(graph, layers)
        path = os.path.join(tmp, f"{name}.onnx")

        def float_nodes(prepared) -> list[str]:  # the pre-processed graph keeps the names of the nodes it keeps
            excluded = image_layer_nodes(prepared)
            return excluded + [n for u in units if u not in int8 for n in units[u] if n not in excluded]

        # onnxruntime's calibrators print their progress: keep it out of the export's output
        with tempfile.TemporaryDirectory(prefix="gandistill-quantize.") as work, \
                contextlib.redirect_stdout(io.StringIO()):
            return path, _quantize_graph(graph, path, z, float_nodes, method, work)

    all_units = set(order)
    with tempfile.TemporaryDirectory(prefix="gandistill-int8.") as tmp:
        # 1. the int8 form of the upsampling layers and the calibration method: by measurement, then by PSNR
        candidates = {form: quantized(all_units, form, "MinMax", tmp, f"all-{form}")[0]
                      for form in FORMS if form != "convtranspose"} if hidden else {}
        int8_form = "subpixel3"
        if len(candidates) > 1:
            times = time_graphs(candidates, z_dim, threads)
            int8_form = min(times, key=lambda f: sum(times[f].values()))
        float_run = _runner(float_path, threads)
        quality = {}
        for method in CALIBRATION_METHODS:
            path = quantized(all_units, int8_form, method, tmp, f"calib-{method}")[0]
            quality[method] = _mean_psnr(float_run, _runner(path, threads), selection_z)
        method = max(quality, key=quality.get)
        # 2. backward elimination: drop a unit from int8 when the graph is as fast or faster without it; again
        # over what is left until nothing drops (a unit judged beside others may not pay alone)
        int8 = set(all_units)
        current, excluded = quantized(int8, int8_form, method, tmp, "current")
        steps, dropped = [], True
        while dropped and int8:
            dropped = False
            for unit in [u for u in order if u in int8]:
                trial, trial_excluded = quantized(int8 - {unit}, int8_form, method, tmp, f"without-{len(steps)}")
                times = time_graphs({"with": current, "without": trial}, z_dim, threads)
                gain = relative_speed(times["with"], times["without"])  # > 1: quantising this unit pays
                steps.append({"layer": unit, "int8_speed_vs_float_layer": round(gain, 3),
                              "ms_per_run": {k: {str(n): round(t * 1e3, 4) for n, t in v.items()}
                                             for k, v in times.items()}})
                if gain <= 1.0:
                    int8.discard(unit)
                    current, excluded, dropped = trial, trial_excluded, True
        pays = bool(int8)
        if not pays:  # nothing is faster in int8: quantise all for the size, and say so
            current, excluded = quantized(all_units, int8_form, method, tmp, "size")
        final_int8 = int8 if pays else all_units
        # 3. the file against the float graph, interleaved
        times = time_graphs({"float": float_path, "int8": current}, z_dim, threads)
        speed = {str(n): round(times["float"][n] / times["int8"][n], 3) for n in times["float"]}
        shutil.copyfile(current, out_path)
    quantized_proto = onnx.load(out_path)
    del quantized_proto.metadata_props[:]
    quantized_proto.metadata_props.extend(float_graph.metadata_props)  # the float graph's self-description, kept
    onnx.save_model(quantized_proto, out_path)
    faster = all(v > 1.0 for v in speed.values())
    verdict = (f"int8 runs at {', '.join(f'{v:.2f}x' for v in speed.values())} the float file's speed at batch "
               f"{', '.join(speed)}" + ("" if faster else "; int8 buys size here, not speed"
                                        + ("" if pays else " (no layer was faster in int8; all are quantised "
                                                           "for the smaller file)")))
    return {"method": "onnxruntime quantize_static, QDQ", "weights": "int8 per output channel (symmetric)",
            "activations": f"uint8 per tensor, {method} calibration",
            "calibration": {"latents": len(z), "seed": CALIBRATION_SEED, "draw": "torch.randn, torch.Generator",
                            "method": method, "psnr_db_by_method": {k: round(v, 2) for k, v in quality.items()},
                            "chosen_on": f"{SELECTION_LATENTS} latents at seed {SELECTION_SEED}"},
            "float_nodes": excluded, "int8_layers": sorted(final_int8), "int8_form": int8_form,
            "int8_pays": pays, "layer_steps": steps, "speed_vs_float": speed, "speed_verdict": verdict,
            "threads": threads}


def _runner(path: str, threads: int | None) -> Runner:
    from .onnx_runtime import onnx_session

    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda z: session.run(None, {name: z})[0]


def _mean_psnr(float_run: Runner, quantized_run: Runner, z: np.ndarray) -> float:
    return float(np.mean(_psnr_db(quantized_run(z), float_run(z))))


QUANTIZATIONS.register("int8", Quantization(
    "int8", "static int8 where it is measured faster (QDQ, per-channel weights, calibrated on the generator's "
            "latents; image layer float)",
    _static_int8))


def _psnr_db(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """PSNR per image of [-1, 1] images (data range 2), capped at 100 dB like metrics' uint8 PSNR."""
    mse = np.square(got.astype(np.float64) - expected.astype(np.float64)).reshape(len(got), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(4.0 / mse), 100.0)


def quality_check(float_run: Runner, quantized_run: Runner, z_dim: int, seed: int, min_psnr: float,
                  num: int = QUALITY_LATENTS, batch_sizes: tuple[int, ...] = (1, 2, 7)) -> dict:
    """The quantised graph's images vs the float graph's on ``num`` fresh latents (batched as ``batch_sizes``,
    then 64 at a time): mean PSNR (dB, [-1, 1]), SSIM (uint8, scikit-image's definition) and max abs difference.

    seed: any integer; the latents are drawn by a torch.Generator at ``quality_stream_seed(seed)``, never at a
    calibration seed."""
    from .data import to_uint8
    from .metrics import _psnr_ssim

    z = torch.randn(num, z_dim, generator=torch.Generator().manual_seed(quality_stream_seed(seed))).numpy()
    sizes, start = [], 0
    for b in [*batch_sizes, *([64] * math.ceil(num / 64))]:
        if start >= num:
            break
        sizes.append(min(b, num - start))
        start += sizes[-1]
    psnr, uint8_psnr, ssim, worst, start = [], [], [], 0.0, 0
    for n in sizes:
        expected, got = float_run(z[start:start + n]), quantized_run(z[start:start + n])
        start += n
        if got.shape != expected.shape or got.dtype != expected.dtype:
            from .export import ExportError

            raise ExportError(f"quantised export returned {got.dtype} {list(got.shape)}, the float graph "
                              f"{expected.dtype} {list(expected.shape)}")
        if not np.isfinite(got).all():
            psnr.extend([-math.inf] * n)
            worst = math.inf
            continue
        psnr.extend(_psnr_db(got, expected).tolist())
        worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
        q, f = to_uint8(torch.from_numpy(got)), to_uint8(torch.from_numpy(expected))
        _psnr_ssim(q, f, False, uint8_psnr, ssim)
    mean_psnr = float(np.mean(psnr))
    return {"kind": "quality", "passed": bool(mean_psnr >= min_psnr), "psnr_db": mean_psnr,
            "min_psnr_db": min_psnr, "psnr_db_worst_image": float(np.min(psnr)),
            "ssim": float(np.mean(ssim)) if ssim else None, "max_abs_diff": worst, "num": num, "seed": seed,
            "latents": f"torch.randn, torch.Generator at {QUALITY_STREAM} + (seed mod {QUALITY_STREAM}); "
                       f"calibration seeds are below {QUALITY_STREAM}",
            "batch_sizes": sorted(set(sizes)),
            "reference": "the float ONNX graph it was quantised from, onnxruntime CPU",
            "psnr_definition": "10 log10(2^2 / MSE) per image on [-1, 1], mean over images; SSIM on uint8"}


__all__ = ["DEFAULT_MIN_PSNR", "QUALITY_STREAM", "QUANTIZATIONS", "Quantization", "calibration_latents",
           "image_layer_nodes", "quality_check", "quality_stream_seed"]
