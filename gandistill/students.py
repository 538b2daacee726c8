"""make_student: a narrower generator of the teacher's family, initialised from the teacher's channels.

The surgery is explicit (after GAN Compression's ``transfer_Conv2d``): per channel group, keep the teacher's
output channels with the largest L1 filter norm (``l1``), the first k (``prefix``) or none (``random``);
the kept indices slice the producer's weight, bias and norm statistics and every consumer's input dim.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .config import DistillConfig
from .models import block_channels, build_generator, kind_of
from .registry import Registry

INITS: Registry[str] = Registry("student init")
for _name, _doc in (("l1", "keep the output channels with the largest L1 filter norm"),
                    ("prefix", "keep the first k channels"),
                    ("random", "fresh random initialisation, nothing inherited"),
                    ("svs", "l1, then each inherited convolution kernel's singular values evened out (singular value scaling)")):
    INITS.register(_name, _doc)


def _importance(t: torch.Tensor, dim: int) -> torch.Tensor:
    """L1 norm of each slice of ``t`` along ``dim``."""
    return t.detach().abs().transpose(0, dim).reshape(t.shape[dim], -1).sum(dim=1)


def make_student(teacher: nn.Module, width: float | None = None, init: str = DistillConfig.init,
                 seed: int | None = None, *, widths: Sequence | Mapping | None = None) -> nn.Module:
    """A generator of the teacher's family, narrower: every hidden layer's channels times ``width``, or each
    block sized on its own by ``widths`` (dcgan and stylegan2).

    ``widths``: one entry per block, lowest resolution first (``student_channels`` names them: b4, b8, ...), as a
    sequence or a mapping by block name; a float in (0, 1] is a factor of the teacher's channels, an int a channel
    count (at most the teacher's). The student's config then states its counts (``layer_channels``).
    The kept channel indices (in the teacher's numbering) are recorded per group in
    ``student.lineage["kept_channels"]`` and saved with the student.
    """
    if kind_of(teacher) != "generator":
        raise ValueError("make_student needs a generator as teacher, got a discriminator")
    if (width is None) == (widths is None):
        raise ValueError("make_student takes a width or per-block widths, one of the two")
    if width is not None and (isinstance(width, bool) or not isinstance(width, (int, float))
                              or not math.isfinite(width) or not 0.0 < width <= 1.0):
        raise ValueError(f"width must be in (0, 1], got {width!r}")
    INITS.get(init)

    if widths is None:
        config = teacher.config.replace(width=teacher.config.width * float(width))
    else:
        config = teacher.config.replace(width=1.0, layer_channels=student_channels(teacher, widths))
    if seed is None:
        student = build_generator(teacher.family, config)
    else:
        # fresh layers draw from the global CPU generator: a forked one, so that the seed alone decides them and
        # the caller's random streams go on as if make_student had not been called
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            student = build_generator(teacher.family, config)
    kept: dict[str, list[int]] = {}
    if init != "random":
        t_state, s_state = teacher.state_dict(), student.state_dict()
        index_for: dict[str, dict[int, torch.Tensor]] = {}
        for t_group, s_group in zip(teacher.channel_groups(), student.channel_groups(), strict=True):
            name, dim = t_group.score
            k = s_state[s_group.score[0]].shape[s_group.score[1]]
            if init == "prefix":
                idx = torch.arange(k)
            else:  # sorted, so width 1.0 keeps the teacher's channel order and equals the teacher
                idx = torch.topk(_importance(t_state[name], dim), k).indices.sort().values
            kept[t_group.name] = idx.tolist()
            for member, member_dim in t_group.members:
                index_for.setdefault(member, {})[member_dim] = idx
        new_state = {}
        for name, tensor in t_state.items():
            for dim, idx in index_for.get(name, {}).items():
                tensor = tensor.index_select(dim, idx.to(tensor.device))
            if tensor.shape != s_state[name].shape:
                raise RuntimeError(f"surgery bug: {name} sliced to {list(tensor.shape)}, "
                                   f"student needs {list(s_state[name].shape)}")
            # convolution kernels [out, in, kh, kw] only: a StyleGAN2 style affine ([in, w_dim], also a sliced
            # "weight") maps w to one scale per input channel, and rescaling its singular values changes styles
            if init == "svs" and name in index_for and name.endswith("weight") and tensor.ndim == 4:
                tensor = singular_value_scaling(tensor)
            new_state[name] = tensor.clone()
        student.load_state_dict(new_state)
        _match_runtime_scales(teacher, student)
    student.lineage = {
        "teacher": {"family": teacher.family, "config": teacher.config.to_dict(),
                    "lineage": getattr(teacher, "lineage", None)},
        "width": None if width is None else float(width),
        **({} if widths is None else {"layer_channels": dict(zip(block_channels(teacher.family, config),
                                                                  config.layer_channels, strict=True))}),
        "init": init,
        "kept_channels": kept,
    }
    return student.train(teacher.training)


def student_channels(teacher: nn.Module, widths: Sequence | Mapping) -> tuple[int, ...]:
    """Per-block channel counts of a student of ``teacher`` from ``widths`` (see make_student), lowest
    resolution first. Each entry: a float factor in (0, 1] of the teacher's block, or an int count <= it."""
    full = block_channels(teacher.family, teacher.config)
    if isinstance(widths, Mapping):
        unknown = sorted(set(map(str, widths)) - set(full))
        if unknown:
            raise ValueError(f"widths: unknown block(s) {', '.join(unknown)}; the blocks are {', '.join(full)}")
        missing = [b for b in full if b not in widths]
        if missing:
            raise ValueError(f"widths: no entry for block(s) {', '.join(missing)} (give every block: "
                             f"{', '.join(full)})")
        widths = [widths[b] for b in full]
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"widths must be a list (one entry per block: {', '.join(full)}), got {widths!r}")
    if len(widths) != len(full):
        raise ValueError(f"widths: {len(widths)} given, the teacher has {len(full)} blocks "
                         f"({', '.join(f'{b}: {c}' for b, c in full.items())})")
    counts = []
    for (name, teacher_count), w in zip(full.items(), widths, strict=True):
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise ValueError(f"widths: {name} must be a factor (float) or a channel count (int), got {w!r}")
        if isinstance(w, int):
            if not 1 <= w <= teacher_count:
                raise ValueError(f"widths: {name} must have 1 to {teacher_count} channels (the teacher's), got {w}")
            counts.append(w)
        else:
            if not (math.isfinite(w) and 0.0 < w <= 1.0):
                raise ValueError(f"widths: {name}'s factor must be in (0, 1], got {w!r}")
            counts.append(max(1, round(teacher_count * w)))
    return tuple(counts)


def kept_channels_by_tap(student: nn.Module) -> dict[str, list[int]]:
    """The teacher channels each student tap inherited (``lineage["kept_channels"]`` keyed by the tap whose
    channel group produced them): what ``losses.make_adapters`` starts its adapters from."""
    kept = (student.lineage or {}).get("kept_channels", {})
    return {tap: kept[group] for tap, group in getattr(student, "tap_groups", {}).items() if group in kept}


@torch.no_grad()
def singular_value_scaling(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` with its singular values (as a matrix [dim 0, the rest]) replaced by their square roots, scaled
    so that the Frobenius norm is kept: the largest shrink, the smallest grow, the singular vectors stay.

    After Kim and Yoo, "Singular Value Scaling" (AAAI 2025): pruned weights carry a few dominant singular
    vectors that slow fine-tuning, and evening out the singular values helps. This is our reading of the idea
    (square-root compression with the norm kept), not a copy of their code; its effect here is measured in
    docs/recipe.md.
    """
    matrix = weight.reshape(weight.shape[0], -1).double()
    u, sigma, vh = torch.linalg.svd(matrix, full_matrices=False)
    if sigma.sum() <= 0:
        return weight.clone()
    scaled = sigma.sqrt() * torch.sqrt(sigma.square().sum() / sigma.sum())
    return ((u * scaled) @ vh).reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def _match_runtime_scales(teacher: nn.Module, student: nn.Module) -> None:
    # Equalized-lr layers multiply weights by 1/sqrt(fan_in) at run time; with fewer input channels the
    # student's factor is larger, so rescale the stored weights to keep the teacher's effective weights.
    t_modules = dict(teacher.named_modules())
    for name, s_mod in student.named_modules():
        t_mod = t_modules.get(name)
        s_scale, t_scale = getattr(s_mod, "scale", None), getattr(t_mod, "scale", None)
        if isinstance(s_scale, float) and isinstance(t_scale, float) and s_scale != t_scale:
            s_mod.weight.mul_(t_scale / s_scale)
