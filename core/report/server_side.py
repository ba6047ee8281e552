"""What the server itself saw during a run's measured window, from two scrapes of its metrics.

Reads TF Serving's Prometheus names (request_count, request_latency, the batching session's
processed_batch_size and queuing_latency) and takes the difference between a scrape at the
window's start and one at its end; percentiles come from the histogram buckets as Prometheus's
histogram_quantile computes them (linear within a bucket), with core.client.scrape's parser and
core.fleet.promql's arithmetic, the same the fleet view uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.client.scrape import (
    PROCESSED_BATCH_SIZE,
    QUEUING_LATENCY,
    REQUEST_COUNT,
    REQUEST_LATENCY,
    ScrapeError,
    ServerMetrics,
    parse_metrics,
)
from core.fleet.promql import bucket_increase, counter_increase, histogram_quantile, sum_buckets

_FAMILIES = (REQUEST_COUNT, REQUEST_LATENCY, PROCESSED_BATCH_SIZE, QUEUING_LATENCY)


@dataclass(frozen=True)
class Scrape:
    """One scrape of a server's metrics, read for one model (None: every model)."""

    metrics: ServerMetrics
    model_name: str | None = None

    def _matches(self, labels: tuple[tuple[str, str], ...]) -> bool:
        wanted = self.model_name
        return wanted is None or dict(labels).get("model_name", wanted) == wanted

    def request_counts(self) -> dict[str, float]:
        """The model's request_count by status."""
        counts: dict[str, float] = {}
        for labels, value in self.metrics.counters.get(REQUEST_COUNT, {}).items():
            if self._matches(labels):
                status = dict(labels).get("status", "")
                counts[status] = counts.get(status, 0.0) + value
        return counts

    def buckets(self, name: str) -> tuple[tuple[float, float], ...] | None:
        """A histogram's buckets summed over the model's label sets; None if not exported."""
        series = self.metrics.buckets.get(name, {})
        matching = [buckets for labels, buckets in series.items() if self._matches(labels)]
        return sum_buckets(matching) if matching else None


def parse_scrape(text: str, model_name: str | None = None) -> Scrape:
    """The request counts and histograms of one model in Prometheus text; ValueError if bad."""
    try:
        return Scrape(parse_metrics(text, families=_FAMILIES), model_name)
    except ScrapeError as error:
        raise ValueError(str(error)) from None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def server_side(before: Scrape, after: Scrape, window_s: float) -> dict[str, Any]:
    """The server's figures between two scrapes: the report's "server" section."""
    earlier_counts = before.request_counts()
    requests = {
        status: counter_increase(earlier_counts.get(status), count)
        for status, count in after.request_counts().items()
    }
    total = sum(requests.values())

    def delta(name: str) -> tuple[tuple[float, float], ...] | None:
        later = after.buckets(name)
        return bucket_increase(before.buckets(name), later) if later is not None else None

    def quantile_ms(buckets: tuple[tuple[float, float], ...] | None, q: float) -> float | None:
        # TF Serving records request and queueing latency in microseconds.
        value = histogram_quantile(q, buckets) if buckets else math.nan
        return None if math.isnan(value) else value / 1000

    def mean(name: str, scale: float = 1.0) -> float | None:
        later = after.metrics.histogram(name, after.model_name)
        if later is None:
            return None
        observed = later.since(before.metrics.histogram(name, before.model_name))
        return None if observed.mean is None else observed.mean / scale

    latency = delta(REQUEST_LATENCY)
    queuing = delta(QUEUING_LATENCY)
    batches = after.metrics.histogram(PROCESSED_BATCH_SIZE, after.model_name)
    if batches is not None:
        batches = batches.since(before.metrics.histogram(PROCESSED_BATCH_SIZE, before.model_name))
    return {
        "window_s": round(window_s, 3),
        "requests": int(total),
        "request_rate": _round(total / window_s if window_s > 0 else None),
        "requests_by_status": {status: int(count) for status, count in sorted(requests.items())},
        "request_latency_ms": {
            "p50": _round(quantile_ms(latency, 0.5)),
            "p99": _round(quantile_ms(latency, 0.99)),
            "mean": _round(mean(REQUEST_LATENCY, 1000)),
        },
        "batch_size_mean": _round(mean(PROCESSED_BATCH_SIZE)),
        "batches": int(batches.count) if batches else 0,
        "queuing_latency_ms": {
            "mean": _round(mean(QUEUING_LATENCY, 1000)),
            "p99": _round(quantile_ms(queuing, 0.99)),
        },
    }


async def fetch_scrape(url: str, model_name: str | None, timeout_s: float = 5.0) -> Scrape:
    """GET a metrics URL and parse it; ValueError naming the URL when that fails."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise ValueError(f"--metrics {url}: HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ValueError(
            f"--metrics {url}: cannot read it: {error or type(error).__name__}"
        ) from None
    try:
        return parse_scrape(text, model_name)
    except ValueError as error:
        raise ValueError(f"--metrics {url}: not Prometheus text: {error}") from None
