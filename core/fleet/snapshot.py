"""What a fleet sample shows: FleetSnapshot with fleet totals and one ReplicaRow per replica.

Immutable values a UI reads; a figure a server does not export is None with its name listed in
`not_exported`, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LatencyFigures:
    """Request latency percentiles in ms; bucketed = interpolated from histogram buckets."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    bucketed: bool = True

    def to_json(self) -> dict[str, Any]:
        """{"p50": ms, "p99": ms, "bucketed": bool}."""
        return {"p50": _round(self.p50_ms), "p99": _round(self.p99_ms), "bucketed": self.bucketed}


@dataclass(frozen=True)
class BatchFigures:
    """Server-side batching over the window: mean processed batch size and fill of the maximum."""

    size_mean: float | None = None
    max_batch_size: int | None = None
    max_batch_size_inferred: bool = False
    """True when max_batch_size was read off the processed_batch_size buckets, not configured."""
    padding_mean: float | None = None
    queuing_ms_mean: float | None = None

    @property
    def fill(self) -> float | None:
        """Mean batch size over the maximum (0..1); None when either is unknown."""
        if self.size_mean is None or not self.max_batch_size:
            return None
        return self.size_mean / self.max_batch_size

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON values."""
        return {
            "size_mean": _round(self.size_mean),
            "fill": _round(self.fill, 3),
            "max_batch_size": self.max_batch_size,
            "max_batch_size_inferred": self.max_batch_size_inferred,
            "padding_mean": _round(self.padding_mean),
            "queuing_ms_mean": _round(self.queuing_ms_mean),
        }


@dataclass(frozen=True)
class GpuFigures:
    """DCGM exporter figures for the replica's GPUs (from Prometheus)."""

    utilization_pct: float | None = None
    memory_used_mib: float | None = None


@dataclass(frozen=True)
class ServerFigures:
    """What a metrics source measured for one replica (or the fleet) over the window."""

    window_s: float | None = None
    """Seconds the rates are over; None before two samples exist (rates unknown yet)."""
    qps: float | None = None
    latency: LatencyFigures = field(default_factory=LatencyFigures)
    errors: Mapping[str, float] = field(default_factory=dict)
    """Failed requests in the window by TF Serving status code (e.g. NOT_FOUND)."""
    batch: BatchFigures = field(default_factory=BatchFigures)
    gpu: GpuFigures | None = None
    not_exported: tuple[str, ...] = ()
    """Metric families this server does not export (their figures are None, not 0)."""
    metrics_error: str | None = None
    """Why the metrics could not be read, when they could not."""


@dataclass(frozen=True)
class ReplicaRow:
    """One replica as the replicas table shows it."""

    address: str
    target: str
    up: bool
    figures: ServerFigures = field(default_factory=ServerFigures)
    versions: Mapping[int, str] = field(default_factory=dict)
    """Model version -> state (AVAILABLE, LOADING, ...) from this replica's GetModelStatus."""
    error: str | None = None
    """Why the replica is down (or its status unreadable)."""
    rss_bytes: int | None = None
    """Resident memory of the server process when it runs on this machine."""

    @property
    def available_versions(self) -> tuple[int, ...]:
        """Versions in state AVAILABLE, ascending."""
        return tuple(sorted(v for v, state in self.versions.items() if state == "AVAILABLE"))

    def to_json(self) -> dict[str, Any]:
        """The row as `status --json` writes it."""
        figures = self.figures
        row: dict[str, Any] = {
            "target": self.address,
            "configured_target": self.target,
            "up": self.up,
            "qps": _round(figures.qps),
            "latency_ms": figures.latency.to_json(),
            "errors": {code: _round(n) for code, n in sorted(figures.errors.items())},
            "versions": {str(v): state for v, state in sorted(self.versions.items())},
            "batch": figures.batch.to_json(),
            "not_exported": list(figures.not_exported),
        }
        if figures.gpu is not None:
            row["gpu"] = {
                "utilization_pct": _round(figures.gpu.utilization_pct),
                "memory_used_mib": _round(figures.gpu.memory_used_mib),
            }
        if self.rss_bytes is not None:
            row["rss_bytes"] = self.rss_bytes
        if self.error is not None:
            row["error"] = self.error
        if figures.metrics_error is not None:
            row["metrics_error"] = figures.metrics_error
        return row


@dataclass(frozen=True)
class FleetSnapshot:
    """One sample of the fleet: totals over every replica and one row per replica."""

    taken_at: float
    """time.time() when the sample finished."""
    source: str
    """'scrape' (each replica's metrics endpoint) or 'prometheus URL'."""
    model_name: str | None
    fleet: ServerFigures
    replicas: tuple[ReplicaRow, ...]
    problems: tuple[str, ...] = ()
    """Fleet-wide problems worth showing (a name that did not resolve, Prometheus unreachable)."""

    @property
    def all_up(self) -> bool:
        """Whether there is at least one replica and every one is up."""
        return bool(self.replicas) and all(row.up for row in self.replicas)

    @property
    def version_skew(self) -> bool:
        """Whether the up replicas serve different sets of AVAILABLE versions (a rollout)."""
        sets = {row.available_versions for row in self.replicas if row.up and row.versions}
        return len(sets) > 1

    def to_json(self) -> dict[str, Any]:
        """The snapshot as `status --json` writes it."""
        fleet = self.fleet
        return {
            "source": self.source,
            "model": self.model_name,
            "window_s": _round(fleet.window_s),
            "fleet": {
                "qps": _round(fleet.qps),
                "latency_ms": fleet.latency.to_json(),
                "errors": {code: _round(n) for code, n in sorted(fleet.errors.items())},
                "batch": fleet.batch.to_json(),
                "replicas_up": sum(row.up for row in self.replicas),
                "replicas": len(self.replicas),
                "version_skew": self.version_skew,
                "not_exported": list(fleet.not_exported),
            },
            "replicas": [row.to_json() for row in self.replicas],
            "problems": list(self.problems),
        }


def _round(value: float | None, digits: int = 2) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, digits)
