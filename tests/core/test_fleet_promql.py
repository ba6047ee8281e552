"""Prometheus' arithmetic: histogram_quantile against hand-computed values, counter resets."""

from __future__ import annotations

import math

import pytest

from core.fleet.promql import (
    bucket_increase,
    counter_increase,
    histogram_quantile,
    sum_buckets,
)

INF = math.inf
# 10 observations: 2 in (0,1], 3 in (1,2], 4 in (2,4], 1 above 4.
BUCKETS = ((1.0, 2.0), (2.0, 5.0), (4.0, 9.0), (INF, 10.0))


@pytest.mark.parametrize(
    ("quantile", "expected"),
    [
        (0.1, 0.5),  # rank 1 in the first bucket: interpolated from 0
        (0.25, 1 + 1 * (0.5 / 3)),  # rank 2.5: 0.5 of 3 into (1,2]
        (0.5, 2.0),  # rank 5: the top of (1,2]
        (0.9, 4.0),  # rank 9: the top of (2,4]
        (0.99, 4.0),  # rank 9.9 falls in +Inf: the highest finite bound
        (0.0, 0.0),
        (1.0, 4.0),
    ],
)
def test_histogram_quantile_matches_hand_computed_values(quantile: float, expected: float) -> None:
    assert histogram_quantile(quantile, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_edge_cases_follow_promql() -> None:
    assert math.isnan(histogram_quantile(0.5, ((1.0, 0.0), (INF, 0.0))))  # nothing observed
    assert math.isnan(histogram_quantile(0.5, ((1.0, 3.0), (2.0, 4.0))))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, ((INF, 4.0),)))  # fewer than two buckets
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    # A first bucket bound <= 0 is returned as is, not interpolated from 0.
    assert histogram_quantile(0.5, ((0.0, 3.0), (1.0, 4.0), (INF, 4.0))) == 0.0
    # Unordered input and a dip in the cumulative counts (forced monotonic).
    shuffled = ((INF, 10.0), (2.0, 5.0), (1.0, 2.0), (4.0, 9.0))
    assert histogram_quantile(0.5, shuffled) == pytest.approx(2.0)
    dipped = ((1.0, 2.0), (2.0, 5.0), (4.0, 4.9), (INF, 10.0))
    assert histogram_quantile(0.5, dipped) == pytest.approx(2.0)


def test_counter_increase_applies_the_reset_rule() -> None:
    assert counter_increase(100.0, 160.0) == 60.0
    assert counter_increase(None, 7.0) == 7.0
    # Restarted: counted 5 since the reset, never -95 nor a huge figure.
    assert counter_increase(100.0, 5.0) == 5.0


def test_bucket_increase_and_sum_by_le() -> None:
    earlier = ((1.0, 1.0), (2.0, 2.0), (INF, 3.0))
    later = ((1.0, 2.0), (2.0, 5.0), (INF, 7.0))
    assert bucket_increase(earlier, later) == ((1.0, 1.0), (2.0, 3.0), (INF, 4.0))
    restarted = ((1.0, 0.0), (2.0, 1.0), (INF, 1.0))
    assert bucket_increase(later, restarted) == restarted
    assert sum_buckets([earlier, later]) == ((1.0, 3.0), (2.0, 7.0), (INF, 10.0))
