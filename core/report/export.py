"""Files for other tools: the per-second time series (CSV or JSON Lines) and HdrHistogram's
percentile distribution (.hgrm, as wrk2 prints it and HdrHistogram's plotters read it)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from core.metrics.latency import LatencyRecorder
from core.metrics.timeseries import SecondRow
from core.report.model import BenchReport

TIMESERIES_SUFFIXES = (".csv", ".jsonl")
TIMESERIES_COLUMNS = (
    "second",
    "intended_rps",
    "achieved_rps",
    "finished",
    "ok",
    "errors",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "in_flight",
    "late_sends",
)


def check_timeseries_path(path: Path) -> None:
    """ValueError unless the file name ends in .csv or .jsonl."""
    if path.suffix.lower() not in TIMESERIES_SUFFIXES:
        raise ValueError(
            f"--timeseries {path}: expected a file name ending in .csv or .jsonl, "
            f"got {path.suffix or 'no extension'}"
        )


def timeseries_text(rows: Sequence[SecondRow], suffix: str) -> str:
    """The rows as CSV (one errors_CODE column per error code seen) or JSON Lines."""
    if suffix.lower() == ".jsonl":
        return "".join(json.dumps(row.as_dict()) + "\n" for row in rows)
    codes = sorted({code for row in rows for code in row.errors})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [c for c in TIMESERIES_COLUMNS if c != "errors"]
    writer.writerow([*columns[:5], "errors", *(f"errors_{code}" for code in codes), *columns[5:]])
    for row in rows:
        values = row.as_dict()
        cells = ["" if values[c] is None else values[c] for c in columns]
        errors = [row.errors.get(code, 0) for code in codes]
        writer.writerow([*cells[:5], sum(row.errors.values()), *errors, *cells[5:]])
    return buffer.getvalue()


def write_timeseries(rows: Sequence[SecondRow], path: Path) -> Path:
    """Write the per-second rows to a .csv or .jsonl file."""
    check_timeseries_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(timeseries_text(rows, path.suffix), encoding="utf-8")
    return path


def hgrm_text(report: BenchReport, corrected: bool = True) -> str:
    """The run's latency as HdrHistogram's percentile distribution, in milliseconds."""
    if report.histograms is None:
        raise ValueError("the report has no histograms; expected one from this version of bench")
    encoded = report.histograms.corrected if corrected else report.histograms.uncorrected
    # Recorded in µs; a scaling ratio of 1000 prints milliseconds, as wrk2 does.
    return LatencyRecorder.decode(encoded).percentile_distribution(1000.0)


def write_hgrm(report: BenchReport, path: Path) -> Path:
    """Write the corrected latency distribution to an .hgrm file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hgrm_text(report), encoding="utf-8")
    return path
