"""Quantised ONNX exports: how a float ONNX generator becomes a smaller one, and the check that it still draws.

``export(..., format="onnx", quantize="int8")`` first writes and checks the float graph as every ONNX export is
checked (max |onnx - pytorch| <= atol), then hands it to a ``Quantization`` from ``QUANTIZATIONS``. The result
cannot match PyTorch to 1e-4, so its check is a quality bound instead: its images against the float graph's on
fresh latents, as PSNR (dB, [-1, 1] images, data range 2), SSIM and max abs difference; below ``min_psnr`` the
export fails and nothing is written. Measurements on the shipped students: docs/int8.md.
"""
from __future__ import annotations

import math
import os
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
    """How to turn a float ONNX file into a quantised one: ``apply(float_path, out_path, z_dim) -> details``."""

    name: str
    description: str
    apply: Callable[[str, str, int], dict]
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


def _static_int8(float_path: str, out_path: str, z_dim: int) -> dict:
    """Static post-training int8: QDQ, per-channel int8 weights, uint8 activations calibrated (min/max)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import _require

    onnx = _require("onnx", "int8 quantisation")
    z = calibration_latents(z_dim)

    class Latents(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(z[i:i + CALIBRATION_BATCH] for i in range(0, len(z), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    source = onnx.load(float_path)
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="gandistill-quantize.") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        # shape inference + onnxruntime's graph optimisations, as onnxruntime recommends before quantising
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        float_nodes = image_layer_nodes(onnx.load(prepared))
        quantize_static(prepared, out_path, Latents(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes)
    quantized = onnx.load(out_path)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)  # the float graph's self-description, kept
    onnx.save_model(quantized, out_path)
    return {"method": "onnxruntime quantize_static, QDQ", "weights": "int8 per output channel (symmetric)",
            "activations": "uint8 per tensor, min/max calibration",
            "calibration": {"latents": len(z), "seed": CALIBRATION_SEED, "draw": "torch.randn, torch.Generator"},
            "float_nodes": float_nodes}


QUANTIZATIONS.register("int8", Quantization(
    "int8", "static int8 (QDQ, per-channel weights, calibrated on the generator's latents; image layer float)",
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
