"""Reports from several machines merged into one, exactly: counts add, histograms add.

Each report carries its HDR histograms, so the merged percentiles are those of every request of
every run together, not an average of percentiles. Rates are over the union of the measured
windows (N hosts started together with `--start-at` share one window).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from core.metrics.latency import LatencyRecorder
from core.metrics.load import nested_origins, summarize_ms
from core.report.model import BatchFigures, BenchReport, Histograms, LatencyMs


def union_length(windows: Sequence[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) windows."""
    covered = 0.0
    current_start: float | None = None
    current_end = 0.0
    for start, end in sorted(windows):
        if current_start is None or start > current_end:
            if current_start is not None:
                covered += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None:
        covered += current_end - current_start
    return covered


def _histogram(report: BenchReport, name: str, source: str) -> LatencyRecorder | None:
    histograms = report.histograms
    encoded = getattr(histograms, name, None) if histograms is not None else None
    if encoded is None:
        return None
    try:
        return LatencyRecorder.decode(encoded)
    except ValueError as error:
        raise ValueError(f"{source}: histograms.{name}: {error}") from None


def merge_reports(
    reports: Sequence[BenchReport], sources: Sequence[str] | None = None, label: str | None = None
) -> BenchReport:
    """One report for runs made together; ValueError naming a report that cannot be merged."""
    names = (
        list(sources) if sources is not None else [f"report {i + 1}" for i in range(len(reports))]
    )
    if len(reports) < 2:
        raise ValueError(f"merge: expected at least 2 reports, got {len(reports)}")
    for report, source in zip(reports, names, strict=True):
        if report.histograms is None or report.started_epoch is None:
            raise ValueError(
                f"{source}: has no histograms or start time (written before reports could be "
                "merged); expected a report from this version of deepchat-tfs bench"
            )
    corrected, uncorrected, lag = LatencyRecorder(), LatencyRecorder(), LatencyRecorder()
    lag_complete = True
    for report, source in zip(reports, names, strict=True):
        for merged, name in ((corrected, "corrected"), (uncorrected, "uncorrected")):
            histogram = _histogram(report, name, source)
            assert histogram is not None
            merged.add(histogram)
        report_lag = _histogram(report, "schedule_lag", source)
        if report_lag is None:
            lag_complete = False
        else:
            lag.add(report_lag)
    windows = [
        (float(r.started_epoch or 0.0), float(r.started_epoch or 0.0) + r.duration_s)
        for r in reports
    ]
    duration_s = union_length(windows)
    issued = sum(r.issued if r.issued is not None else r.requests for r in reports)
    errors: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    origins: Counter[tuple[str, str]] = Counter()
    for report in reports:
        errors.update(report.errors)
        versions.update(report.versions)
        for code, by_origin in (report.error_origins or {}).items():
            origins.update({(code, origin): count for origin, count in by_origin.items()})
    # Reports written before origins were recorded add their errors by code alone.
    recorded = any(report.error_origins is not None for report in reports)
    offered = None
    if all(r.offered_rps is not None for r in reports) and duration_s > 0:
        offered = round(sum((r.offered_rps or 0.0) * r.duration_s for r in reports) / duration_s, 3)
    batches = sum(r.batch.batches for r in reports)
    rows = sum((r.batch.size_mean or 0.0) * r.batch.batches for r in reports)
    fills = sum((r.batch.fill_mean or 0.0) * r.batch.batches for r in reports)
    first_epoch = min(start for start, _ in windows)
    first = reports[0]
    return BenchReport(
        label=label or f"merged {len(reports)} runs",
        target=",".join(dict.fromkeys(r.target for r in reports)),
        model=",".join(dict.fromkeys(r.model for r in reports)),
        signature=first.signature,
        mode=first.mode,
        schedule=first.schedule,
        protocol=first.protocol,
        offered_rps=offered,
        achieved_rps=round(issued / duration_s, 3) if duration_s > 0 else 0.0,
        duration_s=round(duration_s, 3),
        requests=sum(r.requests for r in reports),
        issued=issued,
        ok=sum(r.ok for r in reports),
        errors=dict(sorted(errors.items())),
        error_origins=nested_origins(origins) if recorded else None,
        latency_ms=LatencyMs(**summarize_ms(corrected)),
        uncorrected_latency_ms=LatencyMs(**summarize_ms(uncorrected)),
        schedule_lag_ms=LatencyMs(**summarize_ms(lag)) if lag_complete else None,
        late_sends=sum(r.late_sends for r in reports),
        late_threshold_ms=first.late_threshold_ms,
        batch=BatchFigures(
            size_mean=round(rows / batches, 3) if batches else None,
            fill_mean=round(fills / batches, 3) if batches else None,
            max_size=first.batch.max_size,
            batches=batches,
        ),
        versions=dict(sorted(versions.items())),
        workers=sum(r.workers for r in reports),
        concurrency=sum(r.concurrency or 0 for r in reports) or None,
        timeout_s=first.timeout_s,
        started_epoch=round(first_epoch, 6),
        started_at=dt.datetime.fromtimestamp(first_epoch, dt.timezone.utc).isoformat(
            timespec="seconds"
        ),
        aborted=any(r.aborted for r in reports),
        failures=[failure for r in reports for failure in r.failures],
        histograms=Histograms(
            corrected=corrected.encode().decode("ascii"),
            uncorrected=uncorrected.encode().decode("ascii"),
            schedule_lag=lag.encode().decode("ascii") if lag_complete else None,
        ),
        merged_from=[
            {
                "source": source,
                "label": r.label,
                "target": r.target,
                "started_at": r.started_at,
                "requests": r.requests,
            }
            for r, source in zip(reports, names, strict=True)
        ],
    )
