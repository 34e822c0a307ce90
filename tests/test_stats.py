"""Seed statistics: the t interval and the paired comparison, against scipy and a textbook case."""

import math

import numpy as np
import pytest
from scipy import stats

from slotlab.errors import SlotlabError
from slotlab.stats import compare_paired, summarize_seeds


def test_the_interval_of_a_textbook_sample() -> None:
    s = summarize_seeds([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764: half width 2.7764 * 1.5811 / sqrt(5) = 1.9632
    assert (s.mean, s.n) == (3.0, 5) and s.std == pytest.approx(math.sqrt(2.5))
    assert (s.low, s.high) == pytest.approx((1.0368, 4.9632), abs=1e-4)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_the_interval_agrees_with_scipy_on_random_samples(n: int) -> None:
    values = np.random.default_rng(n).normal(97.5, 0.3, n)
    s = summarize_seeds(values, level=0.9)
    low, high = stats.t.interval(0.9, n - 1, loc=values.mean(), scale=stats.sem(values))
    assert (s.low, s.high) == pytest.approx((low, high))


def test_one_seed_has_no_interval() -> None:
    s = summarize_seeds([98.1])
    assert s.mean == 98.1 and s.n == 1 and math.isnan(s.std) and math.isnan(s.low)
    assert "n = 1" in str(s)


def test_a_paired_comparison_is_the_interval_of_the_differences() -> None:
    rng = np.random.default_rng(0)
    plain = rng.normal(97.0, 0.4, 5)
    recycled = plain + rng.normal(0.2, 0.05, 5)  # the seeds' spread is shared: the gain is clear
    paired = compare_paired(plain, recycled)
    assert paired.difference.mean == pytest.approx((recycled - plain).mean())
    assert paired.p_value == pytest.approx(stats.ttest_rel(recycled, plain).pvalue)
    assert paired.difference.low > 0  # significant paired, though the two unpaired intervals overlap
    a, b = summarize_seeds(plain), summarize_seeds(recycled)
    assert a.high > b.low


def test_bad_input_is_one_line() -> None:
    with pytest.raises(SlotlabError, match="one value per seed on both sides, got 2 and 3"):
        compare_paired([1, 2], [1, 2, 3])
    with pytest.raises(SlotlabError, match="at least one value"):
        summarize_seeds([])
    with pytest.raises(SlotlabError, match="not a finite number"):
        summarize_seeds([1.0, math.nan])
