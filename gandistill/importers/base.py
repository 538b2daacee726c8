"""What every importer shares: the result type, the format registry, exact loading."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from ..safety import check_weights


class ImportRefused(ValueError):
    """A checkpoint gandistill recognises but will not load: the message says why, on one line."""


@dataclass
class Imported:
    """What an importer made of a file: our modules and the mapping it used, for the report."""

    format: str
    path: Path
    generator: nn.Module
    discriminator: nn.Module | None = None
    sources: dict[str, str] = field(default_factory=dict)  # "generator"/"discriminator" -> where in the file
    mapping: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # kind -> (theirs, ours, what)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """One screen: format, where each network was found, its inferred config, and the layer mapping."""
        lines = [f"format:  {self.format} ({FORMATS.get(self.format).description})", f"file:    {self.path}"]
        for kind, model in (("generator", self.generator), ("discriminator", self.discriminator)):
            if model is None:
                continue
            where = self.sources.get(kind) or "top level"
            shape = describe_config(model.config, kind)
            lines.append(f"{kind}: {model.family} from {where}: {shape}")
            rows = self.mapping.get(kind, [])
            width = max((len(theirs) for theirs, _, _ in rows), default=0)
            what_width = max((len(what) for _, _, what in rows), default=0)
            lines += [f"  {theirs:<{width}}  {what:<{what_width}}  -> {ours}" for theirs, ours, what in rows]
            lines.append(f"  {len(model.state_dict())} tensors loaded; every tensor of that state dict placed")
        if self.discriminator is None:
            lines.append("discriminator: none in the file (distill will train a fresh one)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportFormat:
    """One checkpoint format: ``detect(obj)`` says what it found (None: not this format); ``convert`` maps it."""

    name: str
    description: str
    detect: Callable[[Any], str | None]
    convert: Callable[[Any, Path], Imported]


FORMATS: Registry[ImportFormat] = Registry("import format")


def load_exactly(model: nn.Module, state: dict, where: str) -> None:
    """Load every tensor of ``model`` from ``state``, or refuse in one line: a tensor missing, extra or of
    another shape (the importers' own checks should make that unreachable; never load half a model), or one
    that is not a finite float16/bfloat16/float32/float64 weight where a weight belongs (``check_weights``)."""
    expected = model.state_dict()
    wrong = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if wrong or extra:
        raise ValueError(f"{where}: mapping does not fit ({', '.join((wrong + extra)[:4])})")
    check_weights(state, expected, where)
    model.load_state_dict({k: v.detach().to(expected[k].dtype).clone() for k, v in state.items()})
    model.eval()


def describe_config(cfg, kind: str) -> str:
    """One line of the sizes an importer inferred (the report's)."""
    if cfg.family == "dcgan":
        if kind == "generator":
            return (f"{cfg.resolution}x{cfg.resolution} px, {cfg.channels} channel(s), z_dim {cfg.z_dim}, "
                    f"base_channels {cfg.base_channels}, image layer {'with' if cfg.image_bias else 'without'} bias")
        return (f"{cfg.resolution}x{cfg.resolution} px, {cfg.channels} channel(s), base_channels {cfg.base_channels}"
                f", {'batch norm' if cfg.disc_batch_norm else 'no batch norm'}, no spectral norm")
    text = f"{cfg.resolution}x{cfg.resolution} px, {cfg.channels} channel(s)"
    if kind == "generator":
        text += f", z_dim {cfg.z_dim}, w_dim {cfg.w_dim}, {cfg.mapping_layers} mapping layers"
    text += f", channel_base {cfg.channel_base}, channel_max {cfg.channel_max}"
    return text + (f", conv_clamp {cfg.conv_clamp:g}" if cfg.conv_clamp is not None else "")


def is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
