"""The direct source: scrape every replica's Prometheus endpoint and compute rates and percentiles.

Rates are counter increases between two scrapes over the seconds between them; percentiles come
from histogram bucket increases, interpolated as PromQL's histogram_quantile. A restarted replica
resets its counters; the reset rule keeps its rate from going negative or huge.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.client.scrape import LabelSet, ScrapeError, ServerMetrics, parse_metrics
from core.fleet import source as names
from core.fleet.promql import bucket_increase, counter_increase, histogram_quantile, sum_buckets
from core.fleet.replicas import Replica
from core.fleet.snapshot import BatchFigures, LatencyFigures, ServerFigures
from core.fleet.source import SourceSample

if TYPE_CHECKING:
    import aiohttp

# Scrapes kept per replica beyond the window's start, so a watch can always find its baseline.
_HISTORY = 64
# The only families read; a real TF Serving page also has TensorFlow's own metrics, skipped unread.
FAMILIES = frozenset(
    {
        names.REQUEST_COUNT,
        names.REQUEST_LATENCY,
        names.PROCESSED_BATCH_SIZE,
        names.PADDING_SIZE,
        names.QUEUING_LATENCY,
    }
)


class ScrapeSource:
    """Scrapes each replica's metrics URL concurrently over one HTTP session."""

    def __init__(
        self, *, timeout_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._timeout_s = timeout_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._history: dict[str, deque[ServerMetrics]] = {}

    @property
    def description(self) -> str:
        """What the figures come from."""
        return "scrape"

    async def sample(
        self, replicas: Sequence[Replica], model_name: str | None, window_s: float
    ) -> SourceSample:
        """Scrape every replica once and compute its figures over the last window_s seconds."""
        outcomes = await asyncio.gather(*(self._scrape(replica) for replica in replicas))
        live = {replica.address for replica in replicas}
        for address in list(self._history):
            if address not in live:
                del self._history[address]  # a pod that went away
        per_replica: dict[str, ServerFigures] = {}
        pairs: list[tuple[ServerMetrics | None, ServerMetrics]] = []
        for replica, outcome in zip(replicas, outcomes, strict=True):
            if isinstance(outcome, str):
                per_replica[replica.address] = ServerFigures(metrics_error=outcome)
                continue
            history = self._history.setdefault(replica.address, deque(maxlen=_HISTORY))
            history.append(outcome)
            earlier = _baseline(history, window_s)
            pairs.append((earlier, outcome))
            per_replica[replica.address] = figures_between(
                earlier, outcome, model_name, replica.max_batch_size
            )
        return SourceSample(fleet=fleet_figures(pairs, model_name, replicas), replicas=per_replica)

    async def _scrape(self, replica: Replica) -> ServerMetrics | str:
        """One replica's metrics, or why they could not be read."""
        import aiohttp  # first use only: the console's first frame must not pay for it

        if replica.metrics_url is None:
            return "no metrics URL (rest_port is 0 and no --metrics given)"
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        try:
            async with self._session.get(replica.metrics_url) as response:
                if response.status == 404:
                    return f"GET {replica.metrics_url}: HTTP 404 (monitoring not enabled?)"
                if response.status != 200:
                    return f"GET {replica.metrics_url}: HTTP {response.status}"
                text = (await response.read()).decode("utf-8", "replace")  # the format is UTF-8
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"GET {replica.metrics_url}: {error or type(error).__name__}"
        try:
            # Inline: ~0.7 ms a page (core.client.exposition); threads would fight for the GIL.
            return parse_metrics(text, scraped_at=self._clock(), families=FAMILIES)
        except ScrapeError as error:
            return f"GET {replica.metrics_url}: {error}"

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _baseline(history: deque[ServerMetrics], window_s: float) -> ServerMetrics | None:
    """The newest earlier scrape at least window_s old (else the oldest); None when alone."""
    if len(history) < 2:
        return None
    latest = history[-1].scraped_at
    baseline = history[0]
    for scrape in list(history)[:-1]:
        if latest - scrape.scraped_at >= window_s:
            baseline = scrape
    while history[0] is not baseline:
        history.popleft()
    return baseline


def _matches(labels: LabelSet, model_name: str | None) -> bool:
    return model_name is None or dict(labels).get("model_name", model_name) == model_name


def _counter_increases(
    earlier: ServerMetrics, later: ServerMetrics, name: str, model_name: str | None
) -> dict[LabelSet, float]:
    before = earlier.counters.get(name, {})
    return {
        labels: counter_increase(before.get(labels, 0.0), value)
        for labels, value in later.counters.get(name, {}).items()
        if _matches(labels, model_name)
    }


def _latency_buckets(
    earlier: ServerMetrics, later: ServerMetrics, model_name: str | None
) -> tuple[tuple[float, float], ...]:
    """request_latency bucket increases over the model's series, summed by bound."""
    before = earlier.buckets.get(names.REQUEST_LATENCY, {})
    return sum_buckets(
        bucket_increase(before.get(labels), buckets)
        for labels, buckets in later.buckets.get(names.REQUEST_LATENCY, {}).items()
        if _matches(labels, model_name)
    )


def _histogram_totals(
    earlier: ServerMetrics, later: ServerMetrics, name: str
) -> tuple[float, float] | None:
    """(count, sum) of a histogram's observations between two scrapes, all label sets."""
    now = later.histogram(name)
    if now is None:
        return None
    since = now.since(earlier.histogram(name))
    return since.count, since.sum


def inferred_max_batch_size(metrics: ServerMetrics) -> int | None:
    """The smallest processed_batch_size bucket bound holding every batch seen, None if none."""
    combined = sum_buckets(metrics.buckets.get(names.PROCESSED_BATCH_SIZE, {}).values())
    if not combined or combined[-1][1] <= 0:
        return None
    total = combined[-1][1]
    for bound, count in combined:
        if count >= total and bound != float("inf"):
            return int(bound)
    return None


def _not_exported(metrics: ServerMetrics) -> tuple[str, ...]:
    wanted = (names.REQUEST_COUNT, names.REQUEST_LATENCY, names.PROCESSED_BATCH_SIZE)
    return tuple(name for name in wanted if not metrics.exports(name))


def _batch(
    earlier: ServerMetrics, later: ServerMetrics, configured_max: int | None
) -> BatchFigures:
    sizes = _histogram_totals(earlier, later, names.PROCESSED_BATCH_SIZE)
    padding = _histogram_totals(earlier, later, names.PADDING_SIZE)
    queuing = _histogram_totals(earlier, later, names.QUEUING_LATENCY)
    inferred = configured_max is None
    max_batch = configured_max if configured_max is not None else inferred_max_batch_size(later)
    return BatchFigures(
        size_mean=_mean(sizes),
        max_batch_size=max_batch,
        max_batch_size_inferred=inferred and max_batch is not None,
        padding_mean=_mean(padding),
        queuing_ms_mean=_scaled(_mean(queuing), 1e-3),
    )


def figures_between(
    earlier: ServerMetrics | None,
    later: ServerMetrics,
    model_name: str | None,
    max_batch_size: int | None = None,
) -> ServerFigures:
    """One replica's figures between two scrapes (no rates yet when earlier is None)."""
    not_exported = _not_exported(later)
    if earlier is None:
        return ServerFigures(not_exported=not_exported)
    window_s = later.scraped_at - earlier.scraped_at
    if window_s <= 0:
        return ServerFigures(not_exported=not_exported)
    counts = _counter_increases(earlier, later, names.REQUEST_COUNT, model_name)
    exported = names.REQUEST_COUNT not in not_exported
    buckets = _latency_buckets(earlier, later, model_name)
    return ServerFigures(
        window_s=window_s,
        qps=sum(counts.values()) / window_s if exported else None,
        latency=_latency(buckets) if names.REQUEST_LATENCY not in not_exported else _UNEXPORTED,
        errors=_errors(counts),
        batch=_batch(earlier, later, max_batch_size),
        not_exported=not_exported,
    )


def fleet_figures(
    pairs: Sequence[tuple[ServerMetrics | None, ServerMetrics]],
    model_name: str | None,
    replicas: Sequence[Replica] = (),
) -> ServerFigures:
    """The fleet's figures: rates added, latency buckets summed by bound before the quantile."""
    ready = [(earlier, later) for earlier, later in pairs if earlier is not None]
    if not ready:
        return ServerFigures()
    qps_parts: list[float] = []
    errors: dict[str, float] = {}
    all_buckets = []
    sizes: list[tuple[float, float]] = []
    windows = []
    for earlier, later in ready:
        assert earlier is not None
        window_s = later.scraped_at - earlier.scraped_at
        if window_s <= 0:
            continue
        windows.append(window_s)
        if later.exports(names.REQUEST_COUNT):
            counts = _counter_increases(earlier, later, names.REQUEST_COUNT, model_name)
            qps_parts.append(sum(counts.values()) / window_s)
            for code, count in _errors(counts).items():
                errors[code] = errors.get(code, 0.0) + count
        if later.exports(names.REQUEST_LATENCY):
            all_buckets.append(_latency_buckets(earlier, later, model_name))
        size_totals = _histogram_totals(earlier, later, names.PROCESSED_BATCH_SIZE)
        if size_totals is not None:
            sizes.append(size_totals)
    maxima = {replica.max_batch_size for replica in replicas}
    fleet_max = maxima.pop() if len(maxima) == 1 else None
    size_mean = _mean((sum(c for c, _ in sizes), sum(s for _, s in sizes))) if sizes else None
    return ServerFigures(
        window_s=max(windows) if windows else None,
        qps=sum(qps_parts) if qps_parts else None,
        latency=_latency(sum_buckets(all_buckets)) if all_buckets else _UNEXPORTED,
        errors=errors,
        batch=BatchFigures(size_mean=size_mean, max_batch_size=fleet_max),
        not_exported=tuple(
            name
            for name in (names.REQUEST_COUNT, names.REQUEST_LATENCY, names.PROCESSED_BATCH_SIZE)
            if all(not later.exports(name) for _, later in pairs)
        ),
    )


_UNEXPORTED = LatencyFigures(None, None, bucketed=True)


def _latency(buckets: tuple[tuple[float, float], ...]) -> LatencyFigures:
    """p50 and p99 in ms from request_latency buckets in microseconds (None when empty)."""

    def quantile_ms(quantile: float) -> float | None:
        value = histogram_quantile(quantile, buckets)
        return None if value != value else value / 1000  # NaN: nothing observed

    return LatencyFigures(quantile_ms(0.5), quantile_ms(0.99), bucketed=True)


def _errors(counts: dict[LabelSet, float]) -> dict[str, float]:
    errors: dict[str, float] = {}
    for labels, count in counts.items():
        status = dict(labels).get("status", "OK")
        if status != "OK" and count > 0:
            errors[status] = errors.get(status, 0.0) + count
    return errors


def _mean(totals: tuple[float, float] | None) -> float | None:
    if totals is None or totals[0] <= 0:
        return None
    return totals[1] / totals[0]


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor
