"""Seed statistics: a result over seeds as mean, standard deviation and a 95 % interval, and paired comparisons.

One seed is an anecdote: "recycling gains 0.2 points" means something only with its interval. The interval is
t-based (Student's t with n - 1 degrees of freedom), which is right for the handful of seeds a run affords; a
paired comparison takes the differences of two configs run on the same seeds, so the seed-to-seed spread both share
cancels out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from slotlab.errors import SlotlabError


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation (n - 1) and the two-sided ``level`` interval of the mean, over n seeds."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = 0.95

    def __str__(self) -> str:
        if self.n == 1:
            return f"{self.mean:.2f} (n = 1)"
        return f"{self.mean:.2f} ± {self.std:.2f} (n = {self.n}, {self.level:.0%} CI {self.low:.2f} to {self.high:.2f})"


def _values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise SlotlabError(f"{what} needs at least one value")
    if not np.isfinite(array).all():
        raise SlotlabError(f"{what} got a value that is not a finite number: {array.tolist()}")
    return array


def summarize_seeds(values: Sequence[float], level: float = 0.95) -> SeedSummary:
    """The mean of ``values`` (one per seed) with its t-based ``level`` interval; n = 1 has no interval (nan)."""
    array = _values(values, "summarize_seeds")
    n, mean = array.size, float(array.mean())
    if n == 1:
        return SeedSummary(mean, math.nan, 1, math.nan, math.nan, level)
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return SeedSummary(mean, std, n, mean - half, mean + half, level)


@dataclass(frozen=True)
class PairedComparison:
    """``b - a`` over the same seeds: the mean difference, its interval, and the paired t-test's p-value."""

    difference: SeedSummary
    p_value: float

    def __str__(self) -> str:
        d = self.difference
        return f"{d.mean:+.2f} (n = {d.n}, {d.level:.0%} CI {d.low:+.2f} to {d.high:+.2f}, p = {self.p_value:.3g})"


def compare_paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedComparison:
    """``b`` against ``a``, seed by seed (``a[i]`` and ``b[i]`` share seed i)."""
    first, second = _values(a, "compare_paired"), _values(b, "compare_paired")
    if first.size != second.size:
        raise SlotlabError(
            f"a paired comparison needs one value per seed on both sides, got {first.size} and {second.size}"
        )
    difference = summarize_seeds(second - first, level)
    p = float(stats.ttest_rel(second, first).pvalue) if first.size > 1 else math.nan
    return PairedComparison(difference, p)
