"""Request statistics for the console's panels and the burst reports.

A ``StatsCollector`` records finished requests (latency, status code, served model version),
in-flight requests and client-side batches. Latencies go into HDR histograms (1 µs to 1 h,
3 significant digits, recorded in microseconds): the current second's, a cumulative one, and
for each closed second of the sliding window only its non-zero buckets (a full histogram is
23,552 buckets, 184 KiB; a second's latencies fill a few hundred), so memory stays flat and
small however long the console runs, and a snapshot sums the window in one reused array.
``snapshot()`` returns one immutable ``StatsSnapshot`` that every panel and report reads.

Load workers stream ``LoadDelta``s (core.metrics.load) that ``merge_delta()`` adds in;
``LatencyRecorder`` (core.metrics.latency) is the histogram on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from core.metrics.latency import (
    LatencyRecorder,
    LatencySummary,
    bucket_values_us,
    summarize_counts,
)

if TYPE_CHECKING:
    from core.metrics.load import LoadDelta


@dataclass(frozen=True)
class StatsSnapshot:
    """Everything the panels and reports show, taken at one instant; never changes.

    Windowed fields cover the last ``window_s`` seconds plus the current partial second:
    qps, latency, success_rate, the batch_* means and the window_* dicts. Fields named
    *_total, errors_by_code and versions count everything since the collector started.
    """

    taken_at: float
    window_s: float
    requests_total: int
    ok_total: int
    errors_by_code: dict[str, int]
    qps: float
    qps_history: tuple[float, ...]
    latency: LatencySummary
    latency_total: LatencySummary
    success_rate: float | None
    in_flight: int
    batches_total: int
    batch_size_mean: float | None
    batch_max_size: int | None
    batch_fill_ratio: float | None
    versions: dict[int, int]
    window_errors_by_code: dict[str, int] = field(default_factory=dict)
    window_versions: dict[int, int] = field(default_factory=dict)
    batch_size_mean_total: float | None = None
    batch_fill_ratio_total: float | None = None


@dataclass
class _Counters:
    """Request and batch counts, for one second or for all time."""

    requests: int = 0
    ok: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    versions: Counter[int] = field(default_factory=Counter)
    batches: int = 0
    batch_rows: int = 0
    batch_capacity: int = 0

    def add_request(self, code: str, served_version: int | None) -> None:
        """Count one finished request."""
        self.requests += 1
        if code == "OK":
            self.ok += 1
        else:
            self.errors_by_code[code] += 1
        if served_version is not None:
            self.versions[served_version] += 1

    def add_batch(self, size: int, max_size: int) -> None:
        """Count one batch of ``size`` rows out of ``max_size``."""
        self.batches += 1
        self.batch_rows += size
        self.batch_capacity += max_size

    def add(self, other: _Counters) -> None:
        """Add another set of counts to these."""
        self.requests += other.requests
        self.ok += other.ok
        self.errors_by_code.update(other.errors_by_code)
        self.versions.update(other.versions)
        self.batches += other.batches
        self.batch_rows += other.batch_rows
        self.batch_capacity += other.batch_capacity


@dataclass
class _Second:
    """What was recorded during one second of the clock."""

    second: int
    counters: _Counters = field(default_factory=_Counters)
    latency: LatencyRecorder | None = None  # created on first use: idle seconds stay cheap
    # Once the second is closed: its latency counts as (bucket indexes, counts), non-zero only.
    closed_latency: tuple[np.ndarray, np.ndarray] | None = None

    def recorder(self) -> LatencyRecorder:
        """This second's latency recorder, created if needed."""
        if self.latency is None:
            self.latency = LatencyRecorder()
        return self.latency

    def close(self) -> np.ndarray | None:
        """Keep only the non-zero buckets of this second's latencies; returns the full counts."""
        if self.latency is None:
            return None
        counts = self.latency.counts()
        indexes = np.flatnonzero(counts)
        self.closed_latency = (indexes, counts[indexes])
        self.latency = None  # the full histogram is freed
        return counts


def _ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


class StatsCollector:
    """Records requests and batches; ``snapshot()`` summarizes them. Thread-safe.

    ``clock`` returns seconds (time.monotonic by default); tests pass a fake one.
    """

    def __init__(
        self,
        window_s: float = 10.0,
        history_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window_s >= 1.0:
            raise ValueError(f"window_s: expected at least 1 second, got {window_s!r}")
        if not history_s >= 1.0:
            raise ValueError(f"history_s: expected at least 1 second, got {history_s!r}")
        self.window_s = float(window_s)
        self._window_seconds = math.ceil(window_s)
        self._history_seconds = math.ceil(history_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._started_at = clock()
        self._current = _Second(math.floor(self._started_at))
        self._closed: deque[_Second] = deque()  # closed seconds still inside the window
        self._history: deque[int] = deque(maxlen=self._history_seconds)
        self._totals = _Counters()
        self._closed_latency_counts = np.zeros_like(bucket_values_us()[0], dtype=np.uint64)
        # Where snapshot() adds up the window, then the totals: reused, never reallocated.
        self._sum = np.zeros_like(self._closed_latency_counts)
        self._in_flight = 0
        self._batch_max_size: int | None = None
        # Bumped by every record: an idle console's snapshots are reused (see snapshot()).
        self._changes = 0
        self._reusable: tuple[tuple[int, int], StatsSnapshot] | None = None

    def request_started(self) -> None:
        """Count a request as in flight."""
        with self._lock:
            self._in_flight += 1
            self._changes += 1

    def request_finished(
        self, latency_s: float, code: str = "OK", served_version: int | None = None
    ) -> None:
        """Record a finished request that ``request_started()`` counted as in flight."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)
            self._record(latency_s, code, served_version)
            self._changes += 1

    def record(self, latency_s: float, code: str = "OK", served_version: int | None = None) -> None:
        """Record a finished request that was not counted as in flight."""
        with self._lock:
            self._record(latency_s, code, served_version)
            self._changes += 1

    def record_batch(self, size: int, max_size: int) -> None:
        """Record one client-side batch of ``size`` rows, at most ``max_size``."""
        if size < 0 or max_size < 1:
            raise ValueError(
                f"record_batch: expected size >= 0 and max_size >= 1, got {size} and {max_size}"
            )
        with self._lock:
            current = self._advance(self._clock())
            current.counters.add_batch(size, max_size)
            self._totals.add_batch(size, max_size)
            self._batch_max_size = max_size
            self._changes += 1

    def _record(self, latency_s: float, code: str, served_version: int | None) -> None:
        """Record one finished request; the caller holds the lock."""
        current = self._advance(self._clock())
        current.recorder().record(latency_s)
        current.counters.add_request(code, served_version)
        self._totals.add_request(code, served_version)

    def _advance(self, now: float) -> _Second:
        """Close the seconds before ``now`` and return the bucket for ``now``'s second."""
        second = math.floor(now)
        current = self._current
        if second <= current.second:
            return current  # a clock that steps back slightly keeps the current second
        self._history.append(current.counters.requests)
        idle_seconds = min(second - current.second - 1, self._history_seconds)
        self._history.extend([0] * idle_seconds)
        counts = current.close()
        if counts is not None:
            self._closed_latency_counts += counts
        if counts is not None or current.counters.requests or current.counters.batches:
            self._closed.append(current)
        oldest_in_window = second - self._window_seconds
        while self._closed and self._closed[0].second < oldest_in_window:
            self._closed.popleft()
        self._current = _Second(second)
        return self._current

    def _window(self) -> list[_Second]:
        """The seconds inside the window, the current partial one last; caller holds the lock."""
        return [*self._closed, self._current]

    def _window_latency_summary(self, window: list[_Second]) -> LatencySummary:
        """The window's latency, summed in the reused array; caller holds the lock."""
        total = self._sum
        total.fill(0)
        for second in window:
            if second.closed_latency is not None:
                indexes, counts = second.closed_latency
                total[indexes] += counts
            elif second.latency is not None:
                total += second.latency.counts()
        return summarize_counts(total)

    def _total_latency_summary(self) -> LatencySummary:
        """Everything recorded since the start, summed in the reused array; holds the lock."""
        if self._current.latency is None:
            return summarize_counts(self._closed_latency_counts)
        np.add(self._closed_latency_counts, self._current.latency.counts(), out=self._sum)
        return summarize_counts(self._sum)

    def qps_history(self) -> tuple[float, ...]:
        """Requests per closed second, oldest first: snapshot().qps_history without the rest."""
        with self._lock:
            self._advance(self._clock())
            return tuple(float(count) for count in self._history)

    def snapshot(self) -> StatsSnapshot:
        """Summarize everything recorded, as of now.

        With nothing recorded since the last snapshot, in the same second, and no request in the
        window (so no rate that decays with time), the figures are the last snapshot's: it is
        returned again with the new time, without summing the window's histograms again. That is
        what an idle console's 4 refreshes a second ask for.
        """
        with self._lock:
            now = self._clock()
            current = self._advance(now)
            key = (self._changes, current.second)
            if self._reusable is not None and self._reusable[0] == key:
                return replace(self._reusable[1], taken_at=now)
            window = self._window()
            window_counters = _Counters()
            for second in window:
                window_counters.add(second.counters)
            # The window spans window_seconds full seconds before the current one plus the
            # part of the current one that has passed, but never more than the collector's age.
            span_s = self._window_seconds + (now - current.second)
            span_s = max(min(span_s, now - self._started_at), 1.0)
            totals = self._totals
            snapshot = StatsSnapshot(
                taken_at=now,
                window_s=self.window_s,
                requests_total=totals.requests,
                ok_total=totals.ok,
                errors_by_code=dict(totals.errors_by_code),
                qps=window_counters.requests / span_s,
                qps_history=tuple(float(count) for count in self._history),
                latency=self._window_latency_summary(window),
                latency_total=self._total_latency_summary(),
                success_rate=_ratio(window_counters.ok, window_counters.requests),
                in_flight=self._in_flight,
                batches_total=totals.batches,
                batch_size_mean=_ratio(window_counters.batch_rows, window_counters.batches),
                batch_max_size=self._batch_max_size,
                batch_fill_ratio=_ratio(window_counters.batch_rows, window_counters.batch_capacity),
                versions=dict(totals.versions),
                window_errors_by_code=dict(window_counters.errors_by_code),
                window_versions=dict(window_counters.versions),
                batch_size_mean_total=_ratio(totals.batch_rows, totals.batches),
                batch_fill_ratio_total=_ratio(totals.batch_rows, totals.batch_capacity),
            )
            self._reusable = (key, snapshot) if window_counters.requests == 0 else None
            return snapshot

    def merge_delta(self, delta: LoadDelta, batch_max_size: int | None = None) -> None:
        """Add a load worker's delta (its corrected latencies) to the current second."""
        latency = delta.latency.corrected
        counters = _Counters(
            delta.finished,
            delta.ok,
            Counter(delta.errors),
            Counter(delta.versions),
            delta.batches,
            delta.batch_rows,
            delta.batches * (batch_max_size or 1),
        )
        with self._lock:
            current = self._advance(self._clock())
            if latency is not None:
                current.recorder().add(latency)
            current.counters.add(counters)
            self._totals.add(counters)
            if batch_max_size is not None and delta.batches:
                self._batch_max_size = batch_max_size
            self._changes += 1
