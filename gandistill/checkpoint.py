"""Weights people load (config.json + model.safetensors) and resumable training state (atomic writes).

Nothing here unpickles code: weights come from safetensors, resumable state through
``torch.load(weights_only=True)``, which admits tensors and plain Python containers only.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from . import __version__
from .config import FORMAT_VERSION, MODEL_CONFIGS, load_json_text, upgrade_format
from .models import KINDS, build_model, kind_of
from .safety import check_weights, require_safe_torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# --- atomic files ---------------------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync, then rename onto ``path``: readers see the old file or the new one."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a model file should read like any other
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: str | os.PathLike, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")

    atomic_write(path, write)


# --- save_pretrained / from_pretrained -----------------------------------------------------------------

_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes, the same for the same tensors and metadata (names and keys sorted).

    safetensors' own writer orders the metadata by a randomly seeded hash map, so one model saved twice got two
    sha256s; cards and lineage quote the weights' sha256. The format: header length (u64, little endian), the
    JSON header (padded with spaces to 8 bytes), then the tensors' bytes back to back in the header's order."""
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: dtype {tensor.dtype} is not saved (float, int, uint8 or bool weights only)")
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def save_pretrained(model: nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``config.json`` (family, kind, config, lineage) and ``model.safetensors`` into ``directory``."""
    directory = Path(directory)
    kind = kind_of(model)
    meta = {
        "gandistill_format": FORMAT_VERSION,
        "gandistill_version": __version__,
        "family": model.family,
        "kind": kind,
        "config": model.config.to_dict(),
        "lineage": getattr(model, "lineage", None),
    }
    if extra:
        meta["extra"] = extra
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # config.json goes last: a directory without it is visibly incomplete, never half-valid
    if (directory / CONFIG_NAME).exists():
        (directory / CONFIG_NAME).unlink()
    weights = safetensors_bytes(state, {"family": model.family, "kind": kind, "gandistill_version": __version__})
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: Path(tmp).write_bytes(weights))
    write_json(directory / CONFIG_NAME, meta)
    return directory


def save_gan(generator: nn.Module, discriminator: nn.Module | None, directory: str | os.PathLike,
             extra: dict | None = None) -> Path:
    """A GAN directory: ``generator/`` and, when given, ``discriminator/``."""
    directory = Path(directory)
    save_pretrained(generator, directory / "generator", extra)
    if discriminator is not None:
        save_pretrained(discriminator, directory / "discriminator", extra)
    return directory


def read_config(directory: str | os.PathLike) -> dict:
    """The parsed and checked ``config.json`` of a model directory."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise ValueError(f"{directory}: expected a model directory (config.json + model.safetensors), got a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a gandistill model directory?)")
    meta = load_json_text(path.read_bytes(), path)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    version = meta.get("gandistill_format")
    if not isinstance(version, int):
        raise ValueError(f"{path}: no gandistill_format field (not a gandistill model?)")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is newer than this gandistill supports "
                         f"({FORMAT_VERSION}); upgrade gandistill")
    meta = upgrade_format(meta)
    family = meta.get("family")
    if family not in MODEL_CONFIGS:
        raise ValueError(f"{path}: unknown family {family!r}; known: {', '.join(sorted(MODEL_CONFIGS))}")
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path}: kind must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    try:
        meta["config_obj"] = MODEL_CONFIGS[family].from_dict(meta.get("config", {}))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad config: {e}") from None
    return meta


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file; remembered per (path, size, mtime) because weights files are hashed on every use."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | os.PathLike, kind: str | None = "generator") -> str:
    """sha256 of the weights of a model directory, or of a GAN directory's ``kind`` part: which weights, not
    just which path (a teacher retrained in place keeps its path)."""
    return sha256_file(resolve_model_dir(path, kind) / WEIGHTS_NAME)


def resolve_model_dir(path: str | os.PathLike, kind: str | None = "generator") -> Path:
    """A model directory, or the ``generator/``/``discriminator/`` part of a GAN directory."""
    path = Path(path)
    kind = kind or "generator"
    if path.is_dir() and not (path / CONFIG_NAME).exists() and (path / kind).is_dir():
        return path / kind
    return path


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, with one clear error for a missing, empty or corrupt file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected a safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def check_tensors(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where) -> None:
    """Each tensor of the dtype kind its module holds (floating weights, integer counters), floats all finite; one
    line naming the first bad tensor (``safety.check_weights``, which checks the dtype before ``isfinite``)."""
    check_weights(state, expected, where)


def from_pretrained(path: str | os.PathLike, kind: str | None = "generator", map_location: str = "cpu") -> nn.Module:
    """Rebuild a saved model (eval mode). ``path`` is a model directory or a GAN directory.

    ``kind`` checks what the directory holds (None accepts any kind).
    """
    directory = resolve_model_dir(path, kind)
    meta = read_config(directory)
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{directory}: holds a {meta['kind']}, expected a {kind}")
    state = load_weights(directory / WEIGHTS_NAME)
    # shapes and dtypes are checked against a model without storage first: a config.json that implies a huge
    # model must not be built (allocated, initialised) only to reject a small weights file
    with torch.device("meta"):
        expected = build_model(meta["kind"], meta["family"], meta["config_obj"]).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_NAME}: weights do not match config.json "
                         f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                         f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{directory / WEIGHTS_NAME}: {name} has shape {list(tensor.shape)}, "
                             f"config.json implies {list(expected[name].shape)}")
    check_tensors(state, expected, directory / WEIGHTS_NAME)
    model = build_model(meta["kind"], meta["family"], meta["config_obj"])
    model.load_state_dict(state)
    model.lineage = meta.get("lineage")
    model.source = str(directory)
    model.weights_sha256 = sha256_file(directory / WEIGHTS_NAME)  # which weights: what a student's lineage records
    return model.to(map_location).eval()


def discriminator_dir(path: str | os.PathLike) -> Path | None:
    """The discriminator/ of a GAN directory, None when it has none (a generator directory, most checkpoints)."""
    disc_dir = Path(path) / "discriminator"
    return disc_dir if disc_dir.is_dir() else None


def load_gan(path: str | os.PathLike, map_location: str = "cpu") -> tuple[nn.Module, nn.Module | None]:
    """(generator, discriminator or None) from a GAN directory, or (generator, None) from a generator dir."""
    path = Path(path)
    generator = from_pretrained(path, "generator", map_location)
    disc_dir = discriminator_dir(path)
    discriminator = from_pretrained(disc_dir, "discriminator", map_location) if disc_dir else None
    if discriminator is not None:
        g, d = generator.config, discriminator.config
        if (generator.family, g.resolution, g.channels) != (discriminator.family, d.resolution, d.channels):
            raise ValueError(f"{path}: the discriminator ({discriminator.family}, {d.resolution} px, {d.channels} "
                             f"channels) does not fit the generator ({generator.family}, {g.resolution} px, "
                             f"{g.channels} channels); a GAN directory's parts must be trained together")
    return generator, discriminator


# --- resumable state -----------------------------------------------------------------------------------

def save_state(state: dict, path: str | os.PathLike) -> None:
    """Write a resumable training state atomically (tensors and plain containers only)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Read a resumable state without running code from it (``weights_only=True``, on a torch where it is safe)."""
    require_safe_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no resumable state here")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty state file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle raises many kinds; one clear line for all
        raise ValueError(f"{path}: unreadable or unsafe state file ({_load_failure(e)})") from None


def _load_failure(error: Exception) -> str:
    """Why torch.load refused, in our words: torch's own message advises weights_only=False, which runs the
    file's code, and that advice is never passed on."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # no terminal colour codes in a one-line error
    name = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
    if name:
        return (f"it names {name[1]}, which only unrestricted unpickling could rebuild, and that can run code; "
                f"gandistill reads tensors and plain containers only")
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds objects beyond tensors and plain containers; gandistill reads those only"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


# --- importers: plain PyTorch checkpoints of our families ----------------------------------------------

_WRAPPER_KEYS = ("state_dict", "model", "generator", "g_ema", "G_ema", "G", "netG", "ema")


@dataclass
class ImportReport:
    """What ``import_state_dict`` matched: keys it loaded, and the ones it could not place."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    source_key: str | None  # the wrapper key the tensors were found under, if any

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} {len(keys)} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        return "; ".join(parts)


def _find_state_dict(obj, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj:
                found, _ = _find_state_dict(obj[key], path)
                return found, key
    raise ValueError(f"{path}: no state dict of tensors found (looked at the top level and under "
                     f"{', '.join(_WRAPPER_KEYS)})")


def import_state_dict(path: str | os.PathLike, family: str, kind: str = "generator", config=None,
                      strict: bool = True) -> tuple[nn.Module, ImportReport]:
    """Map a generator/discriminator state dict saved by plain PyTorch (``.pt``/``.pth``) onto our module.

    Loaded with ``weights_only=True``: a file that needs arbitrary unpickling is refused. Wrappers such as
    ``{"state_dict": ...}`` and DataParallel's ``module.`` prefix are unwrapped. With ``strict``, any
    missing, unexpected or mis-shaped key is an error naming them; otherwise the report lists them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing" if not path.exists() else f"{path}: expected a file")
    model = build_model(kind, family, config)
    raw = load_state(path)
    state, source_key = _find_state_dict(raw, path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    mismatched = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    report = ImportReport(loaded=sorted(k for k in state if k in expected and k not in mismatched),
                          missing=sorted(set(expected) - set(state)),
                          unexpected=sorted(set(state) - set(expected)), mismatched=mismatched,
                          source_key=source_key)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(f"{path}: does not fit a {family} {kind} with this config: {report.summary()}")
    if not report.loaded:
        raise ValueError(f"{path}: no tensor fits a {family} {kind} with this config: {report.summary()}")
    check_tensors({k: state[k] for k in report.loaded}, expected, path)
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    model.source = str(path)
    return model.eval(), report
