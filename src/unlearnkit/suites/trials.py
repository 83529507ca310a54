"""Summaries of a metric over trials (seeds) and S1's rule for choosing hyperparameters (spec 3.4a)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrialSummary:
    """A metric over trials: median, central range ``(low, high)``, mean and the values themselves."""

    median: float
    low: float
    high: float
    mean: float
    values: tuple[float, ...]

    @property
    def width(self) -> float:
        return self.high - self.low


def central_range(values: Sequence[float], drop: int = 2) -> tuple[float, float]:
    """The ``drop+1``-th smallest and ``drop+1``-th largest value (spec 3.4a: 3rd to 8th of 10).

    With 10 values and ``drop`` = 2 this discards the two best and the two worst trials [V-paper].
    With ``2 * drop`` values or fewer nothing can be discarded and ``(min, max)`` is returned [I].
    """
    if len(values) == 0:
        raise ValueError("central_range needs at least one value; got none")
    ordered = sorted(values)
    if len(ordered) <= 2 * drop:
        return ordered[0], ordered[-1]
    return ordered[drop], ordered[-1 - drop]


def summarise(values: Sequence[float], drop: int = 2) -> TrialSummary:
    """Median, central range and mean of ``values`` (non-finite values make the mean inf)."""
    values = tuple(float(v) for v in values)
    low, high = central_range(values, drop)
    finite = all(math.isfinite(v) for v in values)
    mean = float(np.mean(values)) if finite else math.inf
    return TrialSummary(float(np.median(values)), low, high, mean, values)


def select_best(candidates: Mapping[Hashable, TrialSummary]) -> Hashable:
    """The key with the lowest mean, ties broken by the narrowest central range (S1 ``parse_results``) [V-code].

    Lower is better (the sine sup-norm error). NaN means count as inf. The first key wins a full
    tie, so the order of ``candidates`` makes the choice deterministic.
    """
    if not candidates:
        raise ValueError("select_best needs at least one candidate; got none")

    def order(key: Hashable) -> tuple[float, float]:
        summary = candidates[key]
        mean = summary.mean if not math.isnan(summary.mean) else math.inf
        width = summary.width if not math.isnan(summary.width) else math.inf
        return mean, width

    return min(candidates, key=order)


__all__ = ["TrialSummary", "central_range", "select_best", "summarise"]
