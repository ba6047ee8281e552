"""What the server itself saw during a run's measured window, from two scrapes of its metrics.

Reads TF Serving's Prometheus names (request_count, request_latency, the batching session's
processed_batch_size and queuing_latency) and takes the difference between a scrape at the
window's start and one at its end; percentiles come from the histogram buckets as Prometheus's
histogram_quantile computes them (linear within a bucket). Self-contained so that other views
(e.g. a fleet panel) can reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"


@dataclass
class Histogram:
    """One histogram summed over its label sets: cumulative counts by upper bound, sum, count."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0

    def minus(self, earlier: Histogram | None) -> Histogram:
        """Observations made after `earlier` (all of them when the server restarted)."""
        if earlier is None or earlier.count > self.count:
            return self
        return Histogram(
            {
                bound: value - earlier.buckets.get(bound, 0.0)
                for bound, value in self.buckets.items()
            },
            self.sum - earlier.sum,
            self.count - earlier.count,
        )

    def quantile(self, q: float) -> float | None:
        """The q-quantile, linear within its bucket (Prometheus's histogram_quantile)."""
        if self.count <= 0 or not self.buckets:
            return None
        bounds = sorted(self.buckets)
        rank = q * self.buckets[bounds[-1]]
        lower_bound, lower_count = 0.0, 0.0
        for bound in bounds:
            cumulative = self.buckets[bound]
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower_bound  # beyond the last finite bucket: its bound, as Prometheus
                in_bucket = cumulative - lower_count
                fraction = (rank - lower_count) / in_bucket if in_bucket > 0 else 1.0
                return lower_bound + (bound - lower_bound) * fraction
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    @property
    def mean(self) -> float | None:
        """Mean observation; None when nothing was observed."""
        return self.sum / self.count if self.count > 0 else None


@dataclass
class Scrape:
    """The figures of one scrape that a run's server side needs."""

    request_count: dict[str, float] = field(default_factory=dict)  # by status
    histograms: dict[str, Histogram] = field(default_factory=dict)


def _matches(labels: Mapping[str, str], model_name: str | None) -> bool:
    return model_name is None or labels.get("model_name", model_name) == model_name


def parse_scrape(text: str, model_name: str | None = None) -> Scrape:
    """The request counts and histograms of one model in Prometheus text; ValueError if bad."""
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape()
    wanted = (REQUEST_LATENCY, PROCESSED_BATCH_SIZE, QUEUING_LATENCY)
    for family in text_string_to_metric_families(text):
        if family.name == REQUEST_COUNT:
            for sample in family.samples:
                if sample.name.endswith("_created") or not _matches(sample.labels, model_name):
                    continue
                status = sample.labels.get("status", "")
                scrape.request_count[status] = scrape.request_count.get(status, 0.0) + sample.value
        elif family.name in wanted:
            histogram = scrape.histograms.setdefault(family.name, Histogram())
            for sample in family.samples:
                if not _matches(sample.labels, model_name):
                    continue
                suffix = sample.name[len(family.name) :]
                if suffix == "_bucket":
                    bound = float(sample.labels["le"])
                    histogram.buckets[bound] = histogram.buckets.get(bound, 0.0) + sample.value
                elif suffix == "_sum":
                    histogram.sum += sample.value
                elif suffix == "_count":
                    histogram.count += sample.value
    return scrape


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def server_side(before: Scrape, after: Scrape, window_s: float) -> dict[str, Any]:
    """The server's figures between two scrapes: the report's "server" section."""
    requests = {
        status: after.request_count.get(status, 0.0) - before.request_count.get(status, 0.0)
        for status in after.request_count
    }
    total = sum(requests.values())

    def delta(name: str) -> Histogram | None:
        later = after.histograms.get(name)
        return later.minus(before.histograms.get(name)) if later is not None else None

    latency = delta(REQUEST_LATENCY)
    batch = delta(PROCESSED_BATCH_SIZE)
    queuing = delta(QUEUING_LATENCY)

    def us_to_ms(value: float | None) -> float | None:
        return None if value is None else value / 1000

    return {
        "window_s": round(window_s, 3),
        "requests": int(total),
        "request_rate": _round(total / window_s if window_s > 0 else None),
        "requests_by_status": {status: int(count) for status, count in sorted(requests.items())},
        # TF Serving records request and queueing latency in microseconds.
        "request_latency_ms": {
            "p50": _round(us_to_ms(latency.quantile(0.5) if latency else None)),
            "p99": _round(us_to_ms(latency.quantile(0.99) if latency else None)),
            "mean": _round(us_to_ms(latency.mean if latency else None)),
        },
        "batch_size_mean": _round(batch.mean if batch else None),
        "batches": int(batch.count) if batch else 0,
        "queuing_latency_ms": {
            "mean": _round(us_to_ms(queuing.mean if queuing else None)),
            "p99": _round(us_to_ms(queuing.quantile(0.99) if queuing else None)),
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
