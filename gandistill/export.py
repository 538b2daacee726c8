"""Deployable generators: safetensors, TorchScript and ONNX, each checked against PyTorch before it counts.

An export is written to a temporary name, loaded back through the runtime that will serve it (``from_pretrained``,
``torch.jit.load``, onnxruntime), and run on fresh random ``z`` at several batch sizes including 1. Only when the
largest absolute difference to the eval-mode PyTorch module is within ``atol`` does it move to its final name;
the check's result is then recorded in ``export.json`` beside it.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import os
import secrets
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_write,
    from_pretrained,
    read_config,
    save_pretrained,
    sha256_file,
    write_json,
)
from .config import FORMAT_VERSION, upgrade_format
from .models import for_inference, kind_of
from .models.layers import NoiseInjection
from .onnx_forms import LAYER_FORMS, apply_layer_forms
from .outputs import OutputRefused, check_not_input, record_lock, removed_if_failed
from .quantize import DEFAULT_MIN_PSNR, QUANTIZATIONS, Quantization, quality_check
from .registry import Registry

ONNX_OPSET = 18  # the lowest opset torch's ONNX exporter implements directly (asking 17 means a lossy conversion)
METADATA_FILE = "gandistill.json"  # TorchScript extra file holding the metadata
REPORT_NAME = "export.json"
INSTALL_HINT = "pip install gandistill[export]"
DEFAULT_BATCH_SIZES = (1, 2, 7)

Runner = Callable[[np.ndarray], np.ndarray]  # z float32 [N, z_dim] -> the export's output


class ExportError(RuntimeError):
    """An export that could not be written, or that does not match its PyTorch module."""


class MissingExtraError(ExportError, ImportError):
    """A package of the ``export`` extra is not installed."""


class ExportArgumentError(ValueError):
    """A bad argument to ``export`` (the CLI answers it as a usage error, exit code 2)."""


def _usage_error(message: str) -> ValueError:
    return ExportArgumentError(message)


def _require(module: str, what: str):
    """Import ``module`` or fail with the install command of the ``export`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{what} needs the '{module}' package ({e}); install it with: {INSTALL_HINT}") \
            from None


# --- the uint8 deployment wrapper ----------------------------------------------------------------------

class UInt8Images(nn.Module):
    """z [N, z_dim] -> uint8 images [N, H, W, C], ready to save (same rounding as ``data.to_uint8``)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator
        self.z_dim = generator.z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.generator(z)  # [N, C, H, W] in [-1, 1]
        return img.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


# --- formats -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportFormat:
    """How to write one format to a path and how to run what was written (numpy in, numpy out)."""

    name: str
    description: str
    write: Callable[[nn.Module, str, dict], None]  # (eval-mode module, path, metadata)
    load: Callable[[str], Runner]
    directory: bool = False  # the export is a directory, not a file
    uint8: bool = True  # whether --uint8 applies
    # whether the generator's inference form (models.for_inference) is written instead of the generator
    # itself; a format that from_pretrained reads back needs the generator's own weights
    inference_form: bool = True


FORMATS: Registry[ExportFormat] = Registry("export format")


def _write_safetensors(module: nn.Module, path: str, meta: dict) -> None:
    save_pretrained(module, path)


def _load_safetensors(path: str) -> Runner:
    model = from_pretrained(path)

    def run(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(z)).numpy()

    return run


def _write_torchscript(module: nn.Module, path: str, meta: dict) -> None:
    example = torch.randn(2, module.z_dim)
    with warnings.catch_warnings():
        # the shape asserts are checked once at trace time (TracerWarning); TorchScript itself is
        # deprecated upstream (FutureWarning) but still the format plain-PyTorch deployments load
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, example, check_trace=False)  # export() runs its own check
        torch.jit.save(traced, path, _extra_files={METADATA_FILE: json.dumps(meta)})


def _load_torchscript(path: str) -> Runner:
    # only ever the file export() has just written: torch.jit.load runs code an archive carries
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError, OSError) as e:
        raise ValueError(f"{path}: corrupt or not a TorchScript file ({_first_line(e)})") from None

    def run(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(z)).numpy()

    return run


def _write_onnx(module: nn.Module, path: str, meta: dict) -> None:
    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")  # torch's exporter translates through onnxscript
    example = torch.randn(2, module.z_dim)  # not 1: torch.export would specialise the batch dim to it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                input_names=["z"], output_names=["img"],
                dynamic_shapes={"z": {0: torch.export.Dim("batch")}})
        except ImportError as e:
            raise MissingExtraError(f"ONNX export needs a missing package ({e}); install it with: "
                                    f"{INSTALL_HINT}") from None
        except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; one line naming the model
            raise ExportError(f"torch.onnx.export failed on {type(module).__name__}: {_first_line(e)}") from None
    proto = program.model_proto
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 17:
        raise ExportError(f"ONNX exporter produced opset {opset}; gandistill needs >= 17")
    for key, value in sorted(_flat_metadata(meta).items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save_model(proto, path, save_as_external_data=False)  # one self-contained file


def _load_onnx(path: str, threads: int | None = None) -> Runner:
    from .onnx_runtime import onnx_session  # it imports this module's helpers

    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name

    def run(z: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: z})[0]

    return run


FORMATS.register("safetensors", ExportFormat(
    "safetensors", "a model directory (config.json + model.safetensors) for from_pretrained",
    _write_safetensors, _load_safetensors, directory=True, uint8=False,
    inference_form=False))
FORMATS.register("torchscript", ExportFormat(
    "torchscript", "a traced module for torch.jit.load, no gandistill needed", _write_torchscript, _load_torchscript))
FORMATS.register("onnx", ExportFormat(
    "onnx", f"ONNX opset {ONNX_OPSET}, input z [N, z_dim], output img, dynamic batch", _write_onnx, _load_onnx))


# --- export --------------------------------------------------------------------------------------------

@dataclass
class ExportResult:
    """Where the export went and how it compared with PyTorch (the record also written to export.json)."""

    path: Path
    format: str
    report: Path
    record: dict = field(repr=False)

    @property
    def max_abs_diff(self) -> float:
        return self.record["check"]["max_abs_diff"]

    def summary(self) -> str:
        check = self.record["check"]
        if self.record.get("quantize"):
            ratio = self.record["bytes"] / self.record["float_bytes"]
            return (f"{self.record['quantize']} check passed: vs the float graph PSNR {check['psnr_db']:.1f} dB >= "
                    f"{check['min_psnr_db']:g}, SSIM {check['ssim']:.4f}, max abs diff {check['max_abs_diff']:.3f} "
                    f"on {check['num']} fresh z (seed {check['seed']}); {self.record['bytes']:,} bytes, "
                    f"{ratio:.2f}x the float graph's")
        sizes = ", ".join(str(b) for b in check["batch_sizes"])
        return (f"check passed: max |{self.format} - pytorch| = {check['max_abs_diff']:.2e} <= {check['atol']:.0e} "
                f"on fresh z (seed {check['seed']}) at batch sizes {sizes}")

    @property
    def speed_verdict(self) -> str | None:
        """A quantised export's measured speed against its float graph, in one line (None for float exports)."""
        return (self.record.get("quantization") or {}).get("speed_verdict")


def export(model: nn.Module | str | os.PathLike, format: str = "safetensors", out: str | os.PathLike | None = None,
           uint8: bool = False, atol: float = 1e-4, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
           seed: int | None = None, overwrite: bool = False, quantize: str | None = None,
           min_psnr: float = DEFAULT_MIN_PSNR, truncation_psi: float | None = None,
           truncation_cutoff: int | None = None, noise_mode: str | None = None,
           layer_forms: str = "measure") -> ExportResult:
    """Export a generator and check it against the PyTorch module (eval mode, float32, CPU) before it counts.

    model: a generator, or a model/GAN directory. format: one of ``FORMATS``. out: the file (torchscript, onnx)
    or directory (safetensors) to write. uint8: export ``UInt8Images(generator)`` instead (uint8 [N, H, W, C]).
    atol: largest allowed absolute difference in [-1, 1] image units. seed: of the check's random z (default:
    fresh, recorded). quantize: one of ``QUANTIZATIONS`` (onnx only): the float graph is checked against PyTorch
    as above, then quantised and checked against itself: fail when the mean PSNR of its images on fresh z is
    below ``min_psnr`` dB ([-1, 1] images). truncation_psi / truncation_cutoff / noise_mode: StyleGAN2's
    sampling settings, fixed in the exported graph and recorded in its metadata (default: the model's own:
    psi 1, const noise). layer_forms (onnx): "measure" puts each upsampling layer in its fastest exact form on
    this machine (gandistill.onnx_forms; the choice and its timings go to export.json under ``layer_forms``), or
    one form for every layer (``onnx_forms.FORMS``). overwrite: replace an ``out`` or an ``export.json`` this function did not write (an earlier
    export recorded in ``export.json`` with the same digest is replaced without it). Raises ExportError when the
    check fails; nothing is then written under ``out``.
    """
    fmt = FORMATS.get(format)
    quantization = None if quantize is None else QUANTIZATIONS.get(quantize)
    if quantization is not None and format not in quantization.formats:
        raise _usage_error(f"quantize {quantize} applies to {', '.join(quantization.formats)} exports, not {format}")
    if layer_forms not in LAYER_FORMS:
        raise _usage_error(f"layer_forms must be one of {', '.join(LAYER_FORMS)}, got {layer_forms!r}")
    if quantization is not None and uint8:
        raise _usage_error("quantize and uint8 together are not supported yet; export float images to quantise")
    if isinstance(min_psnr, bool) or not isinstance(min_psnr, (int, float)) or not math.isfinite(min_psnr):
        raise _usage_error(f"min_psnr must be a number of dB, got {min_psnr!r}")
    if not out:
        raise _usage_error("out is required: the file (or safetensors directory) to write")
    out = Path(out)
    if uint8 and not fmt.uint8:
        raise _usage_error(f"uint8 applies to torchscript and onnx exports, not {format}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not (math.isfinite(atol) and atol > 0):
        raise _usage_error(f"atol must be a positive number, got {atol!r}")
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise _usage_error(f"batch_sizes must be positive integers, got {list(batch_sizes)}")
    if 1 not in batch_sizes:
        raise _usage_error(f"batch_sizes must include 1 (the batch size exports most often get wrong), "
                           f"got {list(batch_sizes)}")
    if fmt.directory and out.exists() and not out.is_dir():
        raise _usage_error(f"{out}: exists and is a file; a {format} export is a directory")
    if not fmt.directory and out.is_dir():
        raise _usage_error(f"{out}: is a directory; a {format} export is a file")
    if isinstance(model, (str, os.PathLike)):
        check_not_input(out, {"model": model})
    _check_targets(out, fmt.directory, overwrite)
    if format == "onnx":  # fail before the slow export, with the install command
        for module in ("onnx", "onnxscript", "onnxruntime"):
            _require(module, "ONNX export")

    sampling = {k: v for k, v in (("truncation_psi", truncation_psi), ("truncation_cutoff", truncation_cutoff),
                                  ("noise_mode", noise_mode)) if v is not None}
    generator = _prepare(model, sampling)
    # the check below compares what was written with the generator itself, inference form or not
    served = for_inference(generator) if fmt.inference_form else generator
    deployed = UInt8Images(served).eval() if uint8 else served
    meta = export_metadata(generator, format, uint8)
    if quantization is not None:
        meta["quantize"] = quantize
    seed = secrets.randbits(31) if seed is None else int(seed)
    check: dict = {}
    quantized: dict = {}
    forms: dict = {}

    def write_and_check(tmp: str) -> None:
        fmt.write(deployed, tmp, meta)
        if format == "onnx":  # each layer in its fastest exact form; the check below runs on the rewritten graph
            if quantization is not None:  # int8 picks its own forms, from the graph before any rewrite
                shutil.copyfile(tmp, f"{tmp}.convtranspose")
            forms.update(apply_layer_forms(tmp, layer_forms, generator.z_dim))
        _readable(Path(tmp))  # temporary files are private (0600); deployed files follow the umask
        check.update(_compare(generator, fmt.load(tmp), uint8, batch_sizes, seed, atol))
        if not check["passed"]:
            per_batch = ", ".join(f"batch {b}: {d:.2e}" for b, d in check["per_batch"].items())
            raise ExportError(f"{format} export does not match PyTorch: max abs difference "
                              f"{check['max_abs_diff']:.3e} > atol {atol:.0e} ({per_batch}); "
                              f"nothing written to {out}")
        if quantization is not None:
            context = {"convtranspose_path": f"{tmp}.convtranspose", "threads": forms.get("threads"),
                       "float_forms": {layer["node"]: layer["form"] for layer in forms.get("layers", [])}}
            try:
                _quantize_and_check(tmp, quantization, generator.z_dim, seed, min_psnr, batch_sizes, check,
                                    quantized, context)
            finally:
                os.unlink(context["convtranspose_path"])
            if not quantized["check"]["passed"]:
                q = quantized["check"]
                raise ExportError(f"{quantize} export draws too far from the float graph: PSNR {q['psnr_db']:.1f} dB "
                                  f"< min_psnr {min_psnr:g} (SSIM {q['ssim']:.3f}, max abs diff "
                                  f"{q['max_abs_diff']:.3f}); nothing written to {out}")

    with removed_if_failed(out.parent):  # a failed export leaves no folder it made
        if fmt.directory:
            _atomic_directory(out, write_and_check)
        else:
            atomic_write(out, write_and_check)

    record = {"format": format, "path": out.name, **_content_digest(out, fmt.directory), "uint8": uint8,
              "metadata": meta, "check": check, **({"layer_forms": forms} if forms else {}),
              **({"quantize": quantize, "check": quantized["check"], "float_check": check,
                  "float_bytes": quantized["float_bytes"], "quantization": quantized["details"]}
                 if quantization is not None else {}),
              "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report = out.parent / REPORT_NAME
    _update_report(report, out.name, record, overwrite)
    return ExportResult(out, format, report, record)


def _quantize_and_check(path: str, quantization: Quantization, z_dim: int, seed: int, min_psnr: float,
                        batch_sizes: tuple[int, ...], float_check: dict, into: dict, context: dict) -> None:
    """Replace the checked float ONNX graph at ``path`` by its quantised form; record its quality check."""
    float_path = f"{path}.float"
    os.replace(path, float_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime's quantiser warns about its own pre-processing advice
            try:
                details = quantization.apply(float_path, path, z_dim, context)
            except ImportError as e:
                raise MissingExtraError(f"quantisation needs a missing package ({e}); install it with: "
                                        f"{INSTALL_HINT}") from None
            except Exception as e:  # noqa: BLE001 - onnxruntime's quantiser raises many kinds; one line
                raise ExportError(f"{quantization.name} quantisation failed: {_first_line(e)}") from None
        _readable(Path(path))
        # fresh latents: not the calibration's, not the float check's
        check = quality_check(_load_onnx(float_path), _load_onnx(path), z_dim, seed + 1, min_psnr,
                              batch_sizes=batch_sizes)
        into.update(check=check, details=details, float_bytes=os.path.getsize(float_path))
    finally:
        if os.path.exists(float_path):
            os.unlink(float_path)


def _prepare(model: nn.Module | str | os.PathLike, sampling: dict | None = None) -> nn.Module:
    """A float32, CPU, eval-mode copy of a generator with deterministic noise; ``sampling`` (truncation_psi,
    truncation_cutoff, noise_mode) is applied to the copy, never to the caller's module."""
    if isinstance(model, (str, os.PathLike)):
        model = from_pretrained(model, "generator")
    if not isinstance(model, nn.Module):
        raise _usage_error(f"model must be a generator or a model directory, got {type(model).__name__}")
    if kind_of(model) != "generator":
        raise _usage_error(f"only generators are exported, got a {kind_of(model)}")
    if sampling and not hasattr(model, "set_truncation"):
        raise _usage_error(f"{', '.join(sampling)} apply to stylegan2 generators, not {model.family}")
    generator = copy.deepcopy(model).float().cpu().eval()
    generator.requires_grad_(False)
    if sampling:
        try:
            generator.set_truncation(sampling.get("truncation_psi", generator.truncation_psi),
                                     sampling.get("truncation_cutoff", generator.truncation_cutoff))
            generator.set_noise_mode(sampling.get("noise_mode", generator.noise_mode))
        except ValueError as e:
            raise _usage_error(str(e)) from None
    random_noise = [n or "generator" for n, m in generator.named_modules()
                    if (isinstance(m, NoiseInjection) and m.mode == "random") or getattr(m, "noise_mode", "") == "random"]
    if random_noise:
        raise _usage_error(f"noise mode 'random' ({random_noise[0]}, ...) makes outputs non-deterministic and "
                           f"cannot be checked; call set_noise_mode('auto'), 'const' or 'none' before export")
    return generator


def export_metadata(generator: nn.Module, format: str, uint8: bool) -> dict:
    """What an exported file says about itself: family, width, lineage, gandistill version, I/O contract."""
    config = generator.config
    size = f"{config.resolution}, {config.resolution}"
    bounded = generator.family != "stylegan2"  # tanh families; StyleGAN2 as published outputs the raw ToRGB sum
    meta = {
        "gandistill_version": __version__,
        "gandistill_format": FORMAT_VERSION,
        "format": format,
        "family": generator.family,
        "width": config.width,
        "z_dim": generator.z_dim,
        "config": config.to_dict(),
        "lineage": getattr(generator, "lineage", None),
        "input": f"z float32 [N, {generator.z_dim}], standard normal",
        "output": (f"img uint8 [N, {size}, {config.channels}]" if uint8
                   else f"img float32 [N, {config.channels}, {size}] "
                        + ("in [-1, 1]" if bounded else "about [-1, 1] (clamp for display)")),
    }
    if hasattr(generator, "truncation_psi"):  # fixed in the graph: the file draws with these settings only
        meta["sampling"] = {"truncation_psi": generator.truncation_psi,
                            "truncation_cutoff": generator.truncation_cutoff, "noise_mode": generator.noise_mode}
    return meta


def _flat_metadata(meta: dict) -> dict[str, str]:
    # ONNX metadata_props hold strings: scalars as text, structures as JSON
    return {f"gandistill.{k}" if k != "gandistill_version" else k:
            v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata written into an export (ONNX metadata_props, TorchScript extra file, config.json)."""
    path = Path(path)
    if path.is_dir():
        config = read_config(path)
        return {"gandistill_version": config.get("gandistill_version"), "family": config["family"],
                "width": config["config"].get("width"), "config": config["config"], "lineage": config.get("lineage")}
    _check_file(str(path))
    if is_zip_archive(path):  # TorchScript files are zip archives: read the member, load nothing
        return _upgraded(_torchscript_metadata(path))
    onnx = _require("onnx", "reading ONNX metadata")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have no common base
        raise ValueError(f"{path}: corrupt or not an ONNX file ({_first_line(e)})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if "gandistill_version" not in props:
        raise ValueError(f"{path}: no gandistill metadata (not exported by gandistill?)")
    meta = {}
    for key, value in props.items():
        name = key.removeprefix("gandistill.")
        try:
            meta[name] = value if name in ("gandistill_version", "format", "family", "input", "output") \
                else json.loads(value)
        except json.JSONDecodeError:
            meta[name] = value
    return _upgraded(meta)


METADATA_MAX_BYTES = 1 << 20  # gandistill's metadata is a few kB; a larger member is not ours


def is_zip_archive(path: str | os.PathLike) -> bool:
    """Whether a file is a zip archive (TorchScript) by its first bytes, whatever its name says."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _torchscript_metadata(path: Path) -> dict:
    """The gandistill metadata of a TorchScript export, read straight from the archive's ``extra/`` member.

    Never ``torch.jit.load``: loading a TorchScript archive runs code it carries (``__setstate__``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if i.filename.endswith(f"/extra/{METADATA_FILE}")]
            if not members:
                raise ValueError(f"{path}: no gandistill metadata (not exported by gandistill?)")
            if len(members) > 1 or members[0].file_size > METADATA_MAX_BYTES:
                raise ValueError(f"{path}: not gandistill metadata ({len(members)} members, "
                                 f"{members[0].file_size:,} bytes)")
            text = archive.read(members[0]).decode("utf-8")
        meta = json.loads(text)
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: corrupt or not a TorchScript file ({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its gandistill metadata is not a JSON object")
    return meta


def _upgraded(meta: dict) -> dict:
    # exports written before gandistill_format was recorded in them are format 1 (config.upgrade_format)
    if isinstance(meta, dict) and "gandistill_format" not in meta:
        meta = upgrade_format({**meta, "gandistill_format": 1})
    return meta


# --- the check -----------------------------------------------------------------------------------------

@torch.no_grad()
def _compare(generator: nn.Module, run: Runner, uint8: bool, batch_sizes: tuple[int, ...], seed: int,
             atol: float) -> dict:
    """Largest |export - pytorch| per batch size, in [-1, 1] image units."""
    rng = torch.Generator().manual_seed(seed)
    per_batch: dict[int, float] = {}
    for n in batch_sizes:
        z = torch.randn(n, generator.z_dim, generator=rng)
        expected = generator(z).numpy()  # [N, C, H, W]
        got = np.asarray(run(z.numpy()))
        want_shape = (n, *expected.shape[2:], expected.shape[1]) if uint8 else expected.shape
        want_dtype = np.uint8 if uint8 else np.float32
        if got.shape != want_shape or got.dtype != want_dtype:
            raise ExportError(f"export returned {got.dtype} {list(got.shape)} for batch {n}, "
                              f"expected {np.dtype(want_dtype)} {list(want_shape)}")
        per_batch[n] = _uint8_distance(got, expected) if uint8 else _float_distance(got, expected)
    worst = max(per_batch.values())
    return {"passed": worst <= atol, "max_abs_diff": worst, "atol": atol, "seed": seed,
            "batch_sizes": list(batch_sizes), "per_batch": per_batch,
            "reference": f"PyTorch {torch.__version__} eager, eval mode, float32, CPU"}


def _float_distance(got: np.ndarray, expected: np.ndarray) -> float:
    diff = np.abs(got.astype(np.float64) - expected)
    return float(diff.max()) if np.isfinite(diff).all() else math.inf


def _uint8_distance(got: np.ndarray, expected: np.ndarray) -> float:
    """The smallest float difference that explains the uint8 output.

    A pixel q means the export's float value v had round((v + 1) * 127.5) == q, i.e. (v + 1) * 127.5 lay in
    [q - 0.5, q + 0.5] (open-ended at 0 and 255). The distance from PyTorch's value to that interval, in
    [-1, 1] units, is a lower bound on the float difference: within atol, uint8 and float checks agree,
    and a pixel may differ by one level only where PyTorch's value sits within atol of a rounding boundary.
    """
    q = got.transpose(0, 3, 1, 2).astype(np.float64)  # [N, C, H, W]
    scaled = (expected.astype(np.float64) + 1.0) * 127.5
    low = np.where(q == 0, -np.inf, q - 0.5)
    high = np.where(q == 255, np.inf, q + 0.5)
    gap = np.maximum(low - scaled, 0.0) + np.maximum(scaled - high, 0.0)
    return float(gap.max() / 127.5) if np.isfinite(scaled).all() else math.inf


# --- files ---------------------------------------------------------------------------------------------

def _atomic_directory(out: Path, write: Callable[[str], None]) -> None:
    """``atomic_write`` for a directory: build it under a temporary name, rename it into place when done."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_NAME).is_file():
        raise _usage_error(f"{out}: exists and is not a model directory; refusing to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        write(str(tmp))
        if out.is_dir() and any(out.iterdir()):  # a previous export: swap it out, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=out.parent))
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _readable(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *(path.iterdir() if path.is_dir() else ())]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def _content_digest(out: Path, directory: bool) -> dict:
    target = out / WEIGHTS_NAME if directory else out
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return {"sha256": digest, "bytes": target.stat().st_size}


def _read_report(report: Path) -> dict | None:
    """The records of an ``export.json`` this module wrote; None for a file of any other shape."""
    try:
        entries = json.loads(report.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(entries, dict) or not all(isinstance(r, dict) and {"format", "sha256", "check"} <= set(r)
                                                for r in entries.values()):
        return None
    return entries


def _earlier_export(out: Path, directory: bool) -> bool:
    """Whether ``out`` is what an earlier export wrote: recorded in export.json with the digest it has now."""
    entries = _read_report(out.parent / REPORT_NAME) if (out.parent / REPORT_NAME).is_file() else None
    record = (entries or {}).get(out.name)
    if record is None or out.is_symlink():
        return False
    if directory and (not out.is_dir() or {p.name for p in out.iterdir()} != {CONFIG_NAME, WEIGHTS_NAME}):
        return False
    target = out / WEIGHTS_NAME if directory else out
    return target.is_file() and not target.is_symlink() and sha256_file(target) == record["sha256"]


def check_export_target(out: str | os.PathLike, format: str, overwrite: bool = False) -> None:
    """What export() checks before it starts: ``out`` and its ``export.json`` are new, ours, or overwrite says so."""
    _check_targets(Path(out), FORMATS.get(format).directory, overwrite)


def _check_targets(out: Path, directory: bool, overwrite: bool) -> None:
    """Before anything is written: ``out`` and its ``export.json`` are new, ours, or overwrite says so."""
    report = out.parent / REPORT_NAME
    if report.is_symlink() or (report.exists() and not report.is_file()):
        raise OutputRefused(f"{report}: is {'a symbolic link' if report.is_symlink() else 'not a file'}; the "
                            f"export record is written there: move it away or export elsewhere")
    if report.is_file() and _read_report(report) is None and not overwrite:
        raise OutputRefused(f"{report}: exists and was not written by gandistill export; move it away, export "
                            f"elsewhere, or pass --overwrite to replace it")
    occupied = out.is_symlink() or (out.is_dir() and any(out.iterdir())) or (out.exists() and not out.is_dir())
    if occupied and not overwrite and not _earlier_export(out, directory):
        raise OutputRefused(f"--out {out}: exists and is not an earlier export recorded in {REPORT_NAME}; choose "
                            f"another --out, or pass --overwrite to replace it")


def _update_report(report: Path, name: str, record: dict, overwrite: bool = False) -> None:
    # one export.json per folder, keyed by the exported file's name, so exports can sit side by side
    # read-modify-write under a lock: simultaneous exports into one folder keep every record
    with record_lock(report):
        entries: dict = {}
        if report.is_symlink() or (report.exists() and not report.is_file()):
            raise OutputRefused(f"{report}: is not a regular file; the export record is written there: move it away")
        if report.is_file():
            entries = _read_report(report)
            if entries is None:
                if not overwrite:  # appeared since _check_targets
                    raise OutputRefused(f"{report}: exists and was not written by gandistill export; move it away "
                                        f"or pass --overwrite to replace it")
                entries = {}
        entries[name] = record
        write_json(report, entries)
        _readable(report)


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file")


def _first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an error, shortened at a word boundary (onnxruntime's lines run long)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    line = text.splitlines()[0].strip()
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit)
    return line[:cut if cut > limit // 2 else limit].rstrip(" ,;:") + " ..."


__all__ = ["FORMATS", "QUANTIZATIONS", "check_export_target", "ExportArgumentError", "ExportError", "ExportFormat", "ExportResult", "MissingExtraError", "UInt8Images", "export",
           "export_metadata", "read_metadata"]
