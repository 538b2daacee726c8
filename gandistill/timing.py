"""One timing protocol for every form a generator is served in: PyTorch modules, onnxruntime sessions, float or int8.

The forms are timed in rounds in which they take turns (the order reversed every other round), so that a busy
spell or a change of clock speed lands on all of them; figures are medians over rounds with their p10-p90 spread.
Before a form's turn, when the previous turn ran on another thread pool (PyTorch's, or another onnxruntime
session's), the timer pauses ``SETTLE_S``: a pool keeps its threads spinning for a while after a run, and on a
small machine those spinning threads take the cores from the next form; one untimed call then wakes the next
form's threads (docs/performance.md, "One timing protocol", has the measurements). Speed-ups are best read
per round (``paired_ratio``): the forms of one round saw the same machine.
No torch, no onnxruntime here: callers hand in plain callables.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

SETTLE_S = 0.05  # seconds of pause between turns on different thread pools


def round_order(count: int, rounds: int) -> Iterator[tuple[int, int]]:
    """(round, index) in the order the forms take turns: 0..count-1, then reversed, then forward again ..."""
    for r in range(rounds):
        for i in (range(count) if r % 2 == 0 else reversed(range(count))):
            yield r, i


class Settler:
    """Pauses ``settle`` seconds before a turn on another thread pool than the previous turn's."""

    def __init__(self, settle: float = SETTLE_S, sleep: Callable[[float], None] = time.sleep):
        self.settle, self.sleep, self.last = settle, sleep, None

    def before(self, pool: str) -> bool:
        """Pause when ``pool`` differs from the last turn's; True when it paused (the caller then runs one untimed
        call: after a pause the cores may have slowed down and the pool's threads gone to sleep)."""
        paused = self.settle > 0 and self.last is not None and pool != self.last
        if paused:
            self.sleep(self.settle)
        self.last = pool
        return paused


def spread(values: Sequence[float]) -> list[float]:
    """[p10, p90] of per-round values: how much the machine moved the timings during the run."""
    return [float(np.percentile(values, 10)), float(np.percentile(values, 90))]


def split(runs: int, rounds: int) -> list[int]:
    """``runs`` shared out over ``rounds``, the first rounds taking one more where they do not divide."""
    return [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator / denominator of the same round."""
    return float(np.median([a / b for a, b in zip(numerator, denominator, strict=True)]))


def compare(calls: dict[str, Callable[[], object]], rounds: int = 5, runs: int = 5, warmup: int = 2,
            pools: dict[str, str] | None = None, settle: float = SETTLE_S, budget_s: float | None = None,
            timer: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """Seconds per call of each callable, interleaved: name -> {"s": median over rounds, "rounds": [...],
    "spread": [p10, p90]}. Each round times ``runs`` calls of each in turn. pools: name -> its thread pool
    (default: each its own, so a settle pause comes between every turn). budget_s: fewer runs per round when the
    warm-up shows the rounds would take longer than this (at least one run each)."""
    pools = pools or {name: name for name in calls}
    warm = {}
    for name, call in calls.items():
        start = timer()
        for _ in range(max(warmup, 1)):
            call()
        warm[name] = (timer() - start) / max(warmup, 1)
    if budget_s is not None:
        per_round = sum(warm.values())
        runs = max(1, min(runs, int(budget_s / max(per_round * rounds, 1e-9))))
    settler = Settler(settle)
    names = list(calls)
    per_round = {name: [] for name in names}
    for _, i in round_order(len(names), rounds):
        name = names[i]
        if settler.before(pools[name]):
            calls[name]()  # untimed: wakes the pool's threads and the cores after the pause
        start = timer()
        for _ in range(runs):
            calls[name]()
        per_round[name].append((timer() - start) / runs)
    return {name: {"s": float(np.median(v)), "rounds": v, "spread": spread(v), "runs": runs}
            for name, v in per_round.items()}


__all__ = ["SETTLE_S", "Settler", "compare", "paired_ratio", "round_order", "split", "spread"]
