"""What a load run measured: per-worker recording, the deltas workers stream, and merged totals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from core.metrics.latency import LatencyRecorder, LatencySummary, pack_latencies

# A send that leaves more than this after its intended time is counted as late. asyncio's timers
# wake up to ~1.1 ms after the due time on Linux (epoll rounds its timeout up to whole ms), so
# 2 ms separates ordinary timer jitter from a send that really was held back.
LATE_THRESHOLD_S = 0.002


def summarize_ms(latency: LatencyRecorder) -> dict[str, float | None]:
    """p50/p90/p95/p99/p999/max/mean in milliseconds; every value None when nothing was recorded."""
    return latency_ms(latency.summary())


def latency_ms(summary: LatencySummary) -> dict[str, float | None]:
    """A LatencySummary as the report's latency_ms dict; every value None when count is 0."""
    values = {
        "p50": summary.p50_ms,
        "p90": summary.p90_ms,
        "p95": summary.p95_ms,
        "p99": summary.p99_ms,
        "p999": summary.p999_ms,
        "max": summary.max_ms,
        "mean": summary.mean_ms,
    }
    if summary.count == 0:
        return dict.fromkeys(values)
    return {key: round(value, 3) for key, value in values.items()}


def nested_origins(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """(code, origin) counts as {code: {origin: count}}, codes and origins sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (code, origin), count in sorted(counts.items()):
        if count:
            nested.setdefault(code, {})[origin] = count
    return nested


@dataclass
class LoadDelta:
    """What one worker measured since its previous delta; picklable, streamed to the parent."""

    worker: int
    issued: int = 0
    finished: int = 0
    ok: int = 0
    late_sends: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # The errors again by (code, origin): "server", "transport" or "client" (core.client.errors).
    error_origins: dict[tuple[str, str], int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    batch_rows: int = 0
    in_flight: int = 0
    # This interval's corrected / uncorrected latencies and schedule lag (LatencyRecorder.pack()).
    corrected: bytes = b""
    uncorrected: bytes = b""
    schedule_lag: bytes = b""
    # Set on a worker's last delta: the time its load phase ended (monotonic seconds).
    done: bool = False
    load_phase_end: float | None = None
    failure: str | None = None
    # A warm-up delta: measured before the run's window, kept apart from its figures.
    warmup: bool = False

    @cached_property
    def latency(self) -> DeltaLatency:
        """This delta's histograms decoded, once for every consumer (the run's totals, its
        second-by-second series and the console's stats all read the same recorders).

        Read-only: add() them into other recorders, never record into them. Decoded on first
        use, in the process that reads the delta; not pickled with it.
        """
        return DeltaLatency(
            _decoded(self.corrected), _decoded(self.uncorrected), _decoded(self.schedule_lag)
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("latency", None)
        return state


@dataclass(frozen=True)
class DeltaLatency:
    """A LoadDelta's histograms, decoded; None for one the delta does not carry."""

    corrected: LatencyRecorder | None
    uncorrected: LatencyRecorder | None
    schedule_lag: LatencyRecorder | None


def _decoded(encoded: bytes) -> LatencyRecorder | None:
    return LatencyRecorder.unpack(encoded) if encoded else None


class LoadRecorder:
    """Records one worker's sends and replies and hands them out as deltas."""

    def __init__(self, worker: int = 0, *, warmup: bool = False) -> None:
        self.worker = worker
        self.warmup = warmup
        self._delta = LoadDelta(worker, warmup=warmup)
        self._errors: Counter[str] = Counter()
        self._error_origins: Counter[tuple[str, str]] = Counter()
        self._versions: Counter[int] = Counter()
        # This interval's latencies in seconds, binned into histograms once per delta.
        self._corrected: list[float] = []
        self._uncorrected: list[float] = []
        self._schedule_lag: list[float] = []
        self.in_flight = 0
        self.issued_total = 0

    def sent(self, intended_at: float, sent_at: float) -> None:
        """Count a send that left at sent_at for a slot due at intended_at."""
        self._delta.issued += 1
        self.issued_total += 1
        self.in_flight += 1
        lag = sent_at - intended_at
        if lag > LATE_THRESHOLD_S:
            self._delta.late_sends += 1
        self._schedule_lag.append(lag if lag > 0.0 else 0.0)

    def finished(
        self,
        intended_at: float,
        sent_at: float,
        finished_at: float,
        code: str = "OK",
        served_version: int | None = None,
        *,
        origin: str | None = None,
    ) -> None:
        """Count a reply (or failure) and its latency from the intended and the actual send time.

        origin says where a failure's status came from ("server", "transport" or "client");
        a failure without one is counted by code alone.
        """
        self.in_flight -= 1
        self._delta.finished += 1
        if code == "OK":
            self._delta.ok += 1
            if served_version is not None:
                self._versions[served_version] += 1
        else:
            self._errors[code] += 1
            if origin is not None:
                self._error_origins[code, origin] += 1
        corrected, uncorrected = finished_at - intended_at, finished_at - sent_at
        self._corrected.append(corrected if corrected > 0.0 else 0.0)
        self._uncorrected.append(uncorrected if uncorrected > 0.0 else 0.0)

    def batch_sent(self, rows: int) -> None:
        """Count one client-side batch RPC carrying the given number of rows."""
        self._delta.batches += 1
        self._delta.batch_rows += rows

    def take_delta(self, *, done: bool = False, load_phase_end: float | None = None) -> LoadDelta:
        """Everything recorded since the last call; starts a new interval."""
        delta = self._delta
        delta.errors = dict(self._errors)
        delta.error_origins = dict(self._error_origins)
        delta.versions = dict(self._versions)
        delta.in_flight = self.in_flight
        delta.corrected = pack_latencies(self._corrected)
        delta.uncorrected = pack_latencies(self._uncorrected)
        delta.schedule_lag = pack_latencies(self._schedule_lag)
        delta.done = done
        delta.load_phase_end = load_phase_end
        self._delta = LoadDelta(self.worker, warmup=self.warmup)
        self._errors.clear()
        self._error_origins.clear()
        self._versions.clear()
        self._corrected, self._uncorrected, self._schedule_lag = [], [], []
        return delta


class LoadTotals:
    """Deltas from every worker merged: the whole run so far."""

    def __init__(self) -> None:
        self.issued = 0
        self.finished = 0
        self.ok = 0
        self.late_sends = 0
        self.errors: Counter[str] = Counter()
        # (code, origin) -> count; see LoadDelta.error_origins.
        self.error_origins: Counter[tuple[str, str]] = Counter()
        self.versions: Counter[int] = Counter()
        self.batches = 0
        self.batch_rows = 0
        self.corrected = LatencyRecorder()
        self.uncorrected = LatencyRecorder()
        self.schedule_lag = LatencyRecorder()
        self._in_flight_by_worker: dict[int, int] = {}

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered, over all workers, as of their last deltas."""
        return sum(self._in_flight_by_worker.values())

    def add(self, delta: LoadDelta) -> None:
        """Merge one worker's delta."""
        self.issued += delta.issued
        self.finished += delta.finished
        self.ok += delta.ok
        self.late_sends += delta.late_sends
        self.errors.update(delta.errors)
        self.error_origins.update(delta.error_origins)
        self.versions.update(delta.versions)
        self.batches += delta.batches
        self.batch_rows += delta.batch_rows
        self._in_flight_by_worker[delta.worker] = delta.in_flight
        latency = delta.latency
        for recorder, decoded in (
            (self.corrected, latency.corrected),
            (self.uncorrected, latency.uncorrected),
            (self.schedule_lag, latency.schedule_lag),
        ):
            if decoded is not None:
                recorder.add(decoded)

    def errors_by_origin(self) -> dict[str, dict[str, int]]:
        """Each error code's count by origin, {code: {origin: count}}, sorted by code."""
        return nested_origins(self.error_origins)

    @property
    def batch_size_mean(self) -> float | None:
        """Mean rows per client-side batch RPC; None without client batching."""
        return self.batch_rows / self.batches if self.batches else None
