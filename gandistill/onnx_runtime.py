"""Running exported ONNX generators with onnxruntime on the CPU: a checked session and timings."""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from torch import nn

from .export import _check_file, _first_line, _require, _usage_error, is_zip_archive, read_metadata


def check_onnx_file(path: str | os.PathLike) -> None:
    """One clear line for a missing or empty file, or one that is a TorchScript archive (told by its content, not
    its name): such a file is never handed to torch.jit, whose loading runs code the archive carries."""
    _check_file(str(path))
    if is_zip_archive(path):
        raise ValueError(f"{path}: a zip archive (TorchScript?), not an ONNX model; pass an .onnx export "
                         f"(gandistill export --format onnx)")


def graph_values(path: str | os.PathLike) -> int:
    """How many stored values (initializers and constants) an ONNX graph holds: its weights, in whatever precision."""
    onnx = _require("onnx", "reading an ONNX export")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have no common base
        raise ValueError(f"{path}: corrupt or not an ONNX file ({_first_line(e)})") from None
    tensors = [*proto.graph.initializer,
               *(a.t for node in proto.graph.node if node.op_type == "Constant" for a in node.attribute
                 if a.HasField("t"))]
    return sum(math.prod(t.dims) for t in tensors)


def architecture(path: str | os.PathLike, meta: dict) -> nn.Module:
    """The generator an export's metadata describes, built on the meta device (no memory), once its parameter count
    is shown to match the values the graph stores: metadata cannot make a command build (or count) a model
    the file does not hold. Count params and MACs on it; never run it on data."""
    from .config import model_config
    from .models import build_generator

    try:
        with torch.device("meta"):
            skeleton = build_generator(meta["family"], model_config(meta["family"], **meta["config"]))
        params = sum(p.numel() for p in skeleton.parameters())
    except Exception as e:  # noqa: BLE001 - whatever a forged config makes the constructor raise: one line
        raise ValueError(f"{path}: its metadata describes no buildable generator ({_first_line(e)})") from None
    stored = graph_values(path)
    # the served graph folds batch norm (fewer values) and stores StyleGAN2's noise and w_avg (more); int8 adds
    # scales and zero points: within these bounds, a config describes the graph it came with
    if not stored / 4 - 4096 <= params <= 2 * stored + 4096:
        raise ValueError(f"{path}: its metadata describes a generator of {params:,} parameters, the graph stores "
                         f"{stored:,} values; the metadata does not belong to this graph (edited?)")
    return skeleton


# Session settings every gandistill ONNX session uses (OnnxGenerator, profile, the export's checks and
# measurements; scripts/sample_onnx.py writes the same ones out): all of onnxruntime's graph optimisations
# (level 3 adds the NCHWc layout its AVX2/AVX-512 convolution kernels use), intra-op threads as asked or
# torch's count, one inter-op thread (a generator is one chain of layers), sequential execution, spinning kept
# (a deployed generator owns its cores; gandistill.timing pauses between turns so spinning threads never
# steal from the next form being timed). docs/performance.md has the measurements behind each choice.
INTER_OP_THREADS = 1


def session_options(threads: int | None = None):
    """The onnxruntime SessionOptions of every gandistill session (see the settings above)."""
    ort = _require("onnxruntime", "running an ONNX export")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = INTER_OP_THREADS
    return options


def onnx_session(path: str | os.PathLike | bytes, threads: int | None = None):
    """A CPU onnxruntime session with gandistill's settings, with one clear error for a missing, empty or corrupt
    file. ``path`` may be a serialised model (bytes), as the export's measurements pass their candidates."""
    ort = _require("onnxruntime", "running an ONNX export")
    if not isinstance(path, bytes):
        path = str(path)
        check_onnx_file(path)
    try:
        return ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's pybind errors share no public base class
        where = "the candidate graph" if isinstance(path, bytes) else path
        raise ValueError(f"{where}: corrupt or not a valid ONNX model ({_first_line(e)})") from None


def runtime_description(session) -> str:
    """onnxruntime's version, provider and the session's threads, for records beside timings."""
    ort = _require("onnxruntime", "running an ONNX export")
    options = session.get_session_options()
    return (f"onnxruntime {ort.__version__} CPUExecutionProvider, {options.intra_op_num_threads} intra-op "
            f"threads, graph optimisation {options.graph_optimization_level.name}")


def profile_onnx(path: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 20,
                 warmup: int = 3, threads: int | None = None, seed: int = 0,
                 throughput_repeats: int | None = None) -> dict:
    """onnxruntime CPU timings of an exported generator, warm-up runs excluded.

    Keys match ``profile.profile``: ``latency_ms_p50``/``_p90`` (per call at the smallest batch size) and
    ``throughput_img_s`` (at the largest, ``throughput_batch``); every batch size under ``per_batch``; family,
    config, width and lineage from the file's metadata when gandistill wrote it. threads: onnxruntime
    intra-op threads (default: ``torch.get_num_threads()``, to compare with eager PyTorch in this process).
    throughput_repeats: timed runs at the largest batch size when it is not the smallest (default: ``repeats``).
    """
    batch_sizes = tuple(batch_sizes)
    throughput_repeats = repeats if throughput_repeats is None else throughput_repeats
    if repeats < 1 or throughput_repeats < 1 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1:
        raise _usage_error("profile_onnx needs repeats >= 1, warmup >= 0 and positive batch sizes")
    threads = threads or torch.get_num_threads()
    session = onnx_session(path, threads)
    ort = _require("onnxruntime", "profiling an ONNX export")
    z_input = session.get_inputs()[0]
    rng = np.random.default_rng(seed)
    per_batch: dict[int, dict] = {}
    for n in sorted(set(batch_sizes)):
        z = rng.standard_normal((n, z_input.shape[1]), dtype=np.float32)
        for _ in range(warmup):
            session.run(None, {z_input.name: z})
        times = []
        for _ in range(repeats if n == min(batch_sizes) else throughput_repeats):
            start = time.perf_counter()
            session.run(None, {z_input.name: z})
            times.append(time.perf_counter() - start)
        per_batch[n] = {"latency_ms_p50": float(np.percentile(times, 50) * 1e3),
                        "latency_ms_p90": float(np.percentile(times, 90) * 1e3),
                        "throughput_img_s": n / float(np.percentile(times, 50))}
    try:
        meta = read_metadata(path)
    except (ValueError, ImportError):  # a foreign ONNX file: timings only
        meta = {}
    small, large = min(per_batch), max(per_batch)
    return {
        "model": str(path), "family": meta.get("family"), "config": meta.get("config"), "width": meta.get("width"),
        "lineage": meta.get("lineage"),
        "device": "cpu", "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider", "threads": threads,
        "latency_ms_p50": per_batch[small]["latency_ms_p50"],
        "latency_ms_p90": per_batch[small]["latency_ms_p90"],
        "latency_batch": small, "latency_runs": repeats,
        "throughput_img_s": per_batch[large]["throughput_img_s"], "throughput_batch": large,
        "throughput_runs": repeats if large == small else throughput_repeats,
        "warmup": warmup, "per_batch": per_batch,
    }


__all__ = ["architecture", "check_onnx_file", "graph_values", "onnx_session", "profile_onnx", "runtime_description",
           "session_options"]
