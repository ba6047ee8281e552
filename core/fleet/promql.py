"""Prometheus' own arithmetic on scraped samples: counter increases and histogram_quantile.

Written to give the figures a Prometheus server would give for the same two scrapes, so the direct
scrape and the Prometheus source agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# (upper bound, cumulative count) pairs; the last bound is +Inf.
Buckets = Sequence[tuple[float, float]]


def counter_increase(earlier: float | None, later: float) -> float:
    """How much a counter grew between two samples, with Prometheus' reset rule.

    A counter that went down was reset (the server restarted): it counted from zero since, so the
    increase is its new value, never a negative number.
    """
    if earlier is None:
        return later
    return later - earlier if later >= earlier else later


def bucket_increase(earlier: Buckets | None, later: Buckets) -> tuple[tuple[float, float], ...]:
    """Per-bucket increases of a cumulative histogram between two samples (reset rule per bucket).

    A reset of any bucket means the whole histogram restarted, so then the later buckets are the
    increase (Prometheus applies the rule per series; a restart resets them all together).
    """
    if earlier is None:
        return tuple(later)
    before = dict(earlier)
    if any(count < before.get(bound, 0.0) for bound, count in later):
        return tuple(later)
    return tuple((bound, count - before.get(bound, 0.0)) for bound, count in later)


def sum_buckets(histograms: Iterable[Buckets]) -> tuple[tuple[float, float], ...]:
    """Buckets added bound by bound, like PromQL's `sum by (le)`."""
    totals: dict[float, float] = {}
    for buckets in histograms:
        for bound, count in buckets:
            totals[bound] = totals.get(bound, 0.0) + count
    return tuple(sorted(totals.items()))


def histogram_quantile(quantile: float, buckets: Buckets) -> float:
    """The quantile of cumulative buckets, interpolated exactly as PromQL's histogram_quantile.

    NaN when there are no observations, fewer than two buckets, or no +Inf bucket; the upper
    bound of the second-highest bucket when the quantile falls into the +Inf bucket; linear
    interpolation inside a bucket (from 0 for the first bucket when its bound is positive).
    """
    if math.isnan(quantile):
        return math.nan
    if quantile < 0:
        return -math.inf
    if quantile > 1:
        return math.inf
    ordered = _coalesce(sorted(buckets, key=lambda pair: pair[0]))
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    # Cumulative counts can dip through float error or scrape races; force them monotonic.
    monotonic: list[tuple[float, float]] = []
    highest = -math.inf
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    if len(monotonic) < 2:
        return math.nan
    observations = monotonic[-1][1]
    if observations == 0:
        return math.nan
    rank = quantile * observations
    # The first bucket whose cumulative count reaches the rank (the +Inf bucket excluded).
    index = next(
        (i for i in range(len(monotonic) - 1) if monotonic[i][1] >= rank), len(monotonic) - 1
    )
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    bucket_start = 0.0
    bucket_end, count = monotonic[index]
    if index > 0:
        bucket_start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def _coalesce(ordered: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Buckets with the same bound merged (their counts added), as Prometheus does."""
    merged: list[tuple[float, float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged
