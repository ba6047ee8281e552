"""A load run second by second: what workers streamed, bucketed by the second it arrived in.

Workers stream a delta every 250 ms; each goes whole into the second of the measured window in
which the parent received it, so the rows add up exactly to the run's totals and a second's
edges are good to about a quarter of a second. Only the current second keeps a histogram.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from core.metrics.latency import LatencyRecorder
from core.metrics.load import LoadDelta


@dataclass
class SecondRow:
    """One second of a run: counts, that second's latency percentiles (ms) and in flight."""

    second: int
    intended_rps: float | None = None
    issued: int = 0
    finished: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    late_sends: int = 0
    in_flight: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        """The row in the --timeseries file's field names."""
        return {
            "second": self.second,
            "intended_rps": self.intended_rps,
            "achieved_rps": self.issued,
            "finished": self.finished,
            "ok": self.ok,
            "errors": dict(self.errors),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "in_flight": self.in_flight,
            "late_sends": self.late_sends,
        }


class SecondSeries:
    """Accumulates deltas into one row per second of the measured window."""

    def __init__(self) -> None:
        self.rows: list[SecondRow] = []
        self._latency = LatencyRecorder()
        self._errors: Counter[str] = Counter()

    def add(self, delta: LoadDelta, elapsed_s: float, in_flight: int) -> None:
        """Count a delta that arrived elapsed_s into the window (earlier ones go to second 0)."""
        second = max(int(elapsed_s), 0)
        self._advance_to(second)
        row = self.rows[-1]
        row.issued += delta.issued
        row.finished += delta.finished
        row.ok += delta.ok
        row.late_sends += delta.late_sends
        row.in_flight = in_flight
        self._errors.update(delta.errors)
        corrected = delta.latency.corrected
        if corrected is not None:
            self._latency.add(corrected)

    def _advance_to(self, second: int) -> None:
        if self.rows and second <= self.rows[-1].second:
            return
        if self.rows:
            self._close(self.rows[-1])
        in_flight = self.rows[-1].in_flight if self.rows else 0
        start = self.rows[-1].second + 1 if self.rows else 0
        for empty_second in range(start, second):
            self.rows.append(SecondRow(empty_second, in_flight=in_flight))
        self.rows.append(SecondRow(second, in_flight=in_flight))

    def _close(self, row: SecondRow) -> None:
        row.errors = dict(sorted(self._errors.items()))
        if self._latency.count:
            summary = self._latency.summary()
            row.p50_ms, row.p90_ms, row.p99_ms = (
                round(value, 3) for value in (summary.p50_ms, summary.p90_ms, summary.p99_ms)
            )
        self._latency = LatencyRecorder()
        self._errors = Counter()

    def finish(self) -> list[SecondRow]:
        """Close the last second and return every row."""
        if self.rows:
            self._close(self.rows[-1])
        return self.rows
