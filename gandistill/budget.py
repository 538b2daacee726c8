"""Students sized by their cost: per-block channel counts for a MACs budget.

A uniform width shrinks every block by the same factor, whatever each block costs. In a DCGAN almost all MACs sit
in the middle transposed convolutions (their cost is about c_in x c_out), while the first block and the image
layer are cheap; a StyleGAN2's low resolutions are cheap and its high ones dear. ``pick_widths`` chooses counts
along one line between two allocations that meet the budget:

- ``balance=0``: the uniform width (the largest that fits);
- ``balance=1``: the allocation that keeps the most channels for the budget when every block's channels count
  alike in log scale (max sum log c_i subject to MACs <= budget), found by taking channels off, a few at a time,
  where they save the most MACs per log-channel lost. It keeps cheap blocks whole and starves the dear ones.

In between, each block's factor is the geometric blend of the two, then all factors are scaled together so that
the student uses the budget; a negative balance extrapolates the other way (dear blocks wider than uniform). Which balance distils best is measured, not assumed: ``gandistill search`` ranks
balances (and any count vectors you give) by short distillations, and ``DEFAULT_BALANCE`` is what that found
(docs/results.md, "Students chosen by their cost").

MACs are counted exactly (torch's FLOP counter on the meta device: no weights are made). A generator's MACs are
a quadratic polynomial of its block counts, so the search fits that polynomial once from exact counts, checks it
on more exact counts, and then costs a candidate in microseconds.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import DistillConfig, parse_macs_spec
from .models import block_channels, build_generator
from .profile import count_macs

DEFAULT_BALANCE = DistillConfig.balance


def parse_macs(spec, teacher_macs: int) -> int:
    """MACs per image from ``spec``: a number (1500000), with a suffix (250k, 1.5M, 2G), or a reduction of the
    teacher's (``10x``: ten times fewer than ``teacher_macs``)."""
    kind, value = parse_macs_spec(spec)
    if kind == "reduction":
        value = teacher_macs / value
    if value > teacher_macs:
        raise ValueError(f"macs: {value:,.0f} is more than the teacher's {teacher_macs:,} MACs per image; "
                         "a student must cost less")
    return int(value)


def macs_for(teacher: nn.Module, counts) -> int:
    """MACs per image of a student of ``teacher`` with per-block ``counts``, counted on the meta device."""
    config = teacher.config.replace(width=1.0, layer_channels=tuple(int(c) for c in counts))
    with torch.device("meta"):
        model = build_generator(teacher.family, config)
    return count_macs(model)


class MacsModel:
    """MACs per image as a function of the per-block counts of ``teacher``'s family: an exact quadratic fit,
    verified against exact counts (``macs_for``) at points it was not fitted on."""

    def __init__(self, teacher: nn.Module, seed: int = 0):
        self.teacher = teacher
        self.full = np.array(list(block_channels(teacher.family, teacher.config).values()), dtype=np.int64)
        n = len(self.full)
        rng = np.random.default_rng(seed)
        terms = 1 + n + n * (n + 1) // 2
        points = [self.full.copy()] + [rng.integers(1, self.full + 1) for _ in range(terms + 4)]
        values = np.array([macs_for(teacher, p) for p in points], dtype=np.float64)
        self.coef, *_ = np.linalg.lstsq(np.stack([self._features(p) for p in points]), values, rcond=None)
        for p in [rng.integers(1, self.full + 1) for _ in range(3)]:
            exact = macs_for(teacher, p)
            if abs(self(p) - exact) > 1e-6 * max(exact, 1) + 1:
                raise RuntimeError(f"the MACs of {teacher.family} are not a quadratic of the block channels "
                                   f"({self(p):.0f} fitted vs {exact} counted at {p.tolist()})")

    @staticmethod
    def _features(c) -> np.ndarray:
        c = np.asarray(c, dtype=np.float64)
        quad = np.outer(c, c)[np.triu_indices(len(c))]
        return np.concatenate([[1.0], c, quad])

    def __call__(self, counts) -> float:
        return float(self._features(counts) @ self.coef)


def uniform_width(teacher: nn.Module, macs: int, model: MacsModel | None = None) -> float:
    """The largest uniform width factor (of the teacher's blocks) whose student costs at most ``macs``."""
    model = model or MacsModel(teacher)
    return _largest_scale(model, np.ones(len(model.full)), macs)


def _counts(full: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(full * np.minimum(factors, 1.0)), 1, full).astype(np.int64)


def _largest_scale(model: MacsModel, factors: np.ndarray, macs: int) -> float:
    """The largest s with MACs(counts(factors * s)) <= macs (bisection; counts are rounded, so the cost is a
    step function of s, non-decreasing)."""
    if model(_counts(model.full, factors * 1e-9)) > macs + 0.5:
        raise ValueError(f"macs: {macs:,} is below the cheapest student of this family "
                         f"({model(np.ones(len(model.full))):,.0f} MACs with one channel a block)")
    low, high = 0.0, 1.0 / max(float(factors.min()), 1e-9)
    for _ in range(60):
        mid = (low + high) / 2
        if model(_counts(model.full, factors * mid)) <= macs + 0.5:  # the fit is exact to float rounding
            low = mid
        else:
            high = mid
    return low


def cheapest_by_log_channels(model: MacsModel, macs: int) -> np.ndarray:
    """balance=1: take channels off (1/32 of a block's count at a time, at least one) where they save the most
    MACs per log-channel lost, until the student costs at most ``macs``. Returns the counts."""
    counts = model.full.copy()
    while model(counts) > macs + 0.5:
        best, best_gain = None, -1.0
        for i, c in enumerate(counts):
            if c <= 1:
                continue
            step = max(1, int(c) // 32)
            trial = counts.copy()
            trial[i] -= step
            gain = (model(counts) - model(trial)) / (math.log(c) - math.log(c - step))
            if gain > best_gain:
                best, best_gain = trial, gain
        if best is None:
            break
        counts = best
    return counts


def pick_widths(teacher: nn.Module, macs: int, balance: float = DEFAULT_BALANCE,
                model: MacsModel | None = None) -> tuple[int, ...]:
    """Per-block channel counts for a student of ``teacher`` costing at most ``macs`` MACs per image (see the
    module's docstring for ``balance`` in [0, 1])."""
    if isinstance(balance, bool) or not isinstance(balance, (int, float)) or not -1 <= balance <= 1:
        raise ValueError(f"balance must be in [-1, 1], got {balance!r}")
    model = model or MacsModel(teacher)
    full = model.full.astype(np.float64)
    uniform = _largest_scale(model, np.ones(len(full)), macs)
    if balance == 0:
        return tuple(int(c) for c in _counts(model.full, np.full(len(full), uniform)))
    cheap = cheapest_by_log_channels(model, macs) / full
    # geometric blend; a negative balance goes the other way (the dear blocks wider than uniform)
    factors = np.exp((1 - balance) * math.log(max(uniform, 1e-9)) + balance * np.log(cheap))
    counts = _counts(model.full, factors * _largest_scale(model, factors, macs))
    return tuple(int(c) for c in counts)
