"""The harness's statistics: median and spread of repeats, rates."""
from __future__ import annotations

import math

import pytest

from bench.stats import rate, spread


def test_spread_is_median_min_max_of_the_repeats() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert s is not None
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert s.relative_range == pytest.approx((10.0 - 1.0) / 2.5)


def test_one_slow_repeat_does_not_move_the_median_of_three() -> None:
    s = spread([1.0, 1.1, 9.0])
    assert s is not None and s.median == 1.1


def test_a_single_repeat_has_no_range() -> None:
    s = spread([4.2])
    assert s is not None and s.median == 4.2 and s.relative_range == 0.0


def test_missing_values_are_left_out_and_all_missing_is_none() -> None:
    s = spread([None, 2.0, None, 4.0])
    assert s is not None and s.median == 3.0 and s.n == 2
    assert spread([None, None]) is None
    assert spread([]) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measurements_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        spread([1.0, bad])


def test_rate_is_none_when_a_side_is_unknown_or_time_is_not_positive() -> None:
    assert rate(1_000_000, 2.0) == 500_000
    assert rate(None, 2.0) is None
    assert rate(10, None) is None
    assert rate(10, 0.0) is None
