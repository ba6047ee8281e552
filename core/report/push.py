"""A run's figures pushed to a Prometheus Pushgateway, during the run and at its end.

Every push replaces the group job=deepchat_tfs_bench, instance=HOST (or --push-instance), so
the gateway always holds the latest figures. Metric names are listed in PUSHED_METRICS (the
README's reference). Pushing blocks on HTTP: callers run it in a thread.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.report.model import BenchReport

if TYPE_CHECKING:
    from core.load.burst import BurstProgress

JOB = "deepchat_tfs_bench"
PREFIX = "deepchat_tfs_bench_"
PUSHED_METRICS: Mapping[str, str] = {
    "running": "1 while the run goes on, 0 once it ended",
    "requests": "requests finished in the measured window",
    "ok": "requests answered OK",
    "errors": "failed requests, by TF Serving error code (label code)",
    "late_sends": "sends that left more than 2 ms after their intended time",
    "in_flight": "requests sent and not yet answered",
    "offered_rps": "the schedule's rate (open loop)",
    "achieved_rps": "requests sent per second",
    "latency_ms": "latency from the intended send time, by quantile (label quantile: "
    "0.5, 0.9, 0.95, 0.99, 0.999, 1 = max); live pushes give the last 2 s",
    "duration_seconds": "length of the measured window so far",
    "slo_passed": "1 when every --slo term was met, 0 when one was breached (final push only)",
}


class Pusher:
    """Pushes live progress and the final report to one Pushgateway URL."""

    def __init__(self, url: str, *, instance: str | None = None, label: str = "") -> None:
        self.url = url
        self.grouping = {"instance": instance or socket.gethostname()}
        self.label = label

    def _push(self, values: Mapping[str, float | None], errors: Mapping[str, int],
              latency: Mapping[str, float | None]) -> None:  # fmt: skip
        from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

        registry = CollectorRegistry()
        for name, value in values.items():
            if value is not None:
                Gauge(PREFIX + name, PUSHED_METRICS[name], registry=registry).set(value)
        error_gauge = Gauge(
            PREFIX + "errors", PUSHED_METRICS["errors"], ["code"], registry=registry
        )
        for code, count in errors.items():
            error_gauge.labels(code=code).set(count)
        latency_gauge = Gauge(
            PREFIX + "latency_ms", PUSHED_METRICS["latency_ms"], ["quantile"], registry=registry
        )
        for quantile, value in latency.items():
            if value is not None:
                latency_gauge.labels(quantile=quantile).set(value)
        push_to_gateway(self.url, job=JOB, registry=registry, grouping_key=self.grouping, timeout=5)

    def push_progress(self, progress: BurstProgress) -> None:
        """Push the live figures of a running run."""
        window = progress.window_latency
        self._push(
            {
                "running": 1.0,
                "requests": progress.finished,
                "ok": progress.ok,
                "late_sends": progress.late_sends,
                "in_flight": progress.in_flight,
                "offered_rps": progress.offered_rps,
                "achieved_rps": progress.achieved_rps,
                "duration_seconds": progress.elapsed_s,
            },
            progress.errors,
            {"0.5": window.p50_ms, "0.99": window.p99_ms} if window.count else {},
        )

    def push_report(self, report: BenchReport) -> None:
        """Push a finished run's figures."""
        latency = report.latency_ms
        passed = report.slo_passed
        self._push(
            {
                "running": 0.0,
                "requests": report.requests,
                "ok": report.ok,
                "late_sends": report.late_sends,
                "in_flight": 0.0,
                "offered_rps": report.offered_rps,
                "achieved_rps": report.achieved_rps,
                "duration_seconds": report.duration_s,
                "slo_passed": None if passed is None else float(passed),
            },
            report.errors,
            {"0.5": latency.p50, "0.9": latency.p90, "0.95": latency.p95, "0.99": latency.p99,
             "0.999": latency.p999, "1": latency.max},
        )  # fmt: skip
