"""Load-run reports as text: the Markdown results table, side-by-side comparison, latency chart.

Each report and comparison is first built as text parts (ReportText, TextTable: cells and
notes, no markup), then written as Markdown; the console's burst screen draws the same parts
as tables without parsing Markdown (tui.widgets.report_text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.report.model import ORIGIN_ORDER, UNRECORDED_ORIGIN, BenchReport, code_origins
from core.report.slo import SloCheck

# --- Text parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TextTable:
    """A table as plain text cells: the header, the rows, and which columns hold figures."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    figures: tuple[bool, ...]
    """Per column: whether it holds figures (right-aligned)."""

    def markdown(self) -> str:
        """The table in Markdown, one line per row."""
        lines = [
            "| " + " | ".join(self.header) + " |",
            "|" + "".join("---:|" if figure else "---|" for figure in self.figures),
            *("| " + " | ".join(row) + " |" for row in self.rows),
        ]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReportText:
    """One run's summary as text: a title, the results table, notes, and the errors by code."""

    title: str
    results: TextTable
    notes: tuple[str, ...]
    errors: TextTable | None

    def markdown(self) -> str:
        """The summary in Markdown: a heading, the table, a bullet list, the errors table."""
        lines = [
            f"## {self.title}",
            "",
            self.results.markdown().rstrip("\n"),
            "",
            *(f"- {note}" for note in self.notes),
        ]
        if self.errors is not None:
            lines += ["", self.errors.markdown().rstrip("\n")]
        return "\n".join(lines) + "\n"


# --- Markdown -------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return (
        "n/a" if value is None else f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.2f} s"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


_RESULTS_HEADER = (
    "stage",
    "QPS",
    "average latency",
    "p95",
    "success rate",
    "p50",
    "p99",
    "p99.9",
    "max",
    "errors",
)
_RESULTS_FIGURES = (False, *(True,) * 8, False)


def _errors_text(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {count:,}" for code, count in errors.items()) or "none"


# How the errors line names each origin, and the errors table's column for it.
_ORIGIN_PHRASES = {
    "server": "answered by the server",
    "transport": "lost in transport (no answer: connection refused, reset or closed)",
    "client": "given up by the client (its deadline or a cancel)",
    UNRECORDED_ORIGIN: "of unrecorded origin",
}
_ORIGIN_COLUMNS = {
    "server": "server answered",
    "transport": "transport",
    "client": "client",
    UNRECORDED_ORIGIN: "unrecorded",
}


def errors_line(report: BenchReport) -> str:
    """The share of requests that failed and where the failures came from, in one line.

    e.g. "errors: 1,234 of 1,600 requests failed (77.13 %): 1,200 answered by the server,
    34 given up by the client (its deadline or a cancel)"; by code for a report that has
    no origins (written before they were recorded).
    """
    failed = report.error_count
    if failed == 0:
        return "errors: none"
    share = failed / report.requests if report.requests else None
    text = f"errors: {failed:,} of {report.requests:,} requests failed ({_percent(share)})"
    by_origin = report.errors_by_origin
    if by_origin is None:
        return f"{text}: {_errors_text(report.errors)}"
    parts = [
        f"{count:,} {_ORIGIN_PHRASES.get(origin, origin)}" for origin, count in by_origin.items()
    ]
    return f"{text}: {', '.join(parts)}"


def errors_by_code(report: BenchReport) -> TextTable | None:
    """One row per error code with its count, its share of the requests and, when the report
    records them, its count by origin (None without errors)."""
    if not report.errors:
        return None
    origins = report.error_origins
    columns: list[str] = []
    if origins is not None:
        present = {o for c, n in report.errors.items() for o in code_origins(c, n, origins)}
        # server, transport and client always; "unrecorded" only for a report that has some.
        columns = [o for o in ORIGIN_ORDER if o != UNRECORDED_ORIGIN or o in present]
        columns += sorted(present - set(ORIGIN_ORDER))
    header = ("error", "count", "share of requests", *(_ORIGIN_COLUMNS.get(o, o) for o in columns))
    rows = []
    for code, count in report.errors.items():
        share = count / report.requests if report.requests else None
        cells = [code, f"{count:,}", _percent(share)]
        if origins is not None:
            split = code_origins(code, count, origins)
            cells += [f"{split.get(origin, 0):,}" for origin in columns]
        rows.append(tuple(cells))
    return TextTable(header, tuple(rows), (False, *(True,) * (len(header) - 1)))


def errors_table(report: BenchReport) -> str:
    """Markdown: errors_by_code(report)'s table ("" without errors)."""
    table = errors_by_code(report)
    return "" if table is None else table.markdown()


def _results_row(report: BenchReport, stage: str | None = None) -> tuple[str, ...]:
    latency = report.latency_ms
    return (
        stage or report.label or report.mode,
        _rate(report.achieved_rps),
        _ms(latency.mean),
        _ms(latency.p95),
        _percent(report.success_rate),
        _ms(latency.p50),
        _ms(latency.p99),
        _ms(latency.p999),
        _ms(latency.max),
        _errors_text(report.errors),
    )


def results_table(reports: Sequence[BenchReport], stages: Sequence[str] | None = None) -> TextTable:
    """The results table with one row per report (e.g. the settings of a sweep)."""
    rows = tuple(
        _results_row(report, stages[index] if stages else None)
        for index, report in enumerate(reports)
    )
    return TextTable(_RESULTS_HEADER, rows, _RESULTS_FIGURES)


def table_row(report: BenchReport, stage: str | None = None) -> str:
    """One row of the results table, in Markdown."""
    return "| " + " | ".join(_results_row(report, stage)) + " |\n"


def render_table(reports: Sequence[BenchReport], stages: Sequence[str] | None = None) -> str:
    """The results table in Markdown."""
    return results_table(reports, stages).markdown()


def report_text(report: BenchReport) -> ReportText:
    """The summary of one run: the results table plus, as notes, what the table leaves out."""
    offered = f"{report.offered_rps:,.1f} req/s offered, " if report.offered_rps is not None else ""
    protocol = " (REST)" if report.protocol == "rest" else ""
    notes = [
        f"{report.mode} loop, {offered}{report.achieved_rps:,.1f} req/s achieved over "
        f"{report.duration_s:,.1f} s; {report.requests:,} requests, {report.ok:,} ok",
        errors_line(report),
    ]
    if report.mode == "open":
        lag = report.schedule_lag_ms
        lag_text = f", schedule lag p99 {_ms(lag.p99)}" if lag is not None else ""
        notes.append(
            f"late sends (left > {report.late_threshold_ms or 0:g} ms after their intended "
            f"time): {report.late_sends:,}{lag_text}; latency counts from the intended send time; "
            f"uncorrected p50 {_ms(report.uncorrected_latency_ms.p50)}, "
            f"p99 {_ms(report.uncorrected_latency_ms.p99)}"
        )
    if report.batch.size_mean is not None:
        notes.append(
            f"client batching: {report.batch.size_mean:,.1f} rows per RPC, "
            f"fill {_percent(report.batch.fill_mean)}"
        )
    if report.versions:
        served = ", ".join(f"v{version} {count:,}" for version, count in report.versions.items())
        notes.append(f"served by: {served}")
    if report.warmup is not None:
        warm = report.warmup
        notes.append(
            f"warm-up (not in the figures above): {warm.duration_s:g} s, "
            f"{warm.requests:,} requests, {warm.ok:,} ok, errors: {_errors_text(warm.errors)}, "
            f"p50 {_ms(warm.latency_ms.p50)}, p99 {_ms(warm.latency_ms.p99)}"
        )
    if report.server is not None:
        notes.append("the server saw: " + server_text(report.server))
    if report.merged_from:
        sources = ", ".join(str(part.get("source")) for part in report.merged_from)
        notes.append(f"merged from {len(report.merged_from)} reports: {sources}")
    if report.slo is not None:
        verdict = "met" if report.slo_passed else "BREACHED"
        checks = "; ".join(
            SloCheck(o.term, o.actual, o.unit, o.passed).describe() for o in report.slo
        )
        notes.append(f"SLO {verdict}: {checks}")
    if report.aborted:
        reason = f" ({report.abort_reason})" if report.abort_reason else ""
        notes.append(f"aborted: partial results{reason}")
    notes.extend(f"failure: {failure}" for failure in report.failures)
    return ReportText(
        title=f"{report.model} @ {report.target}{protocol}: {report.label}",
        results=results_table([report]),
        notes=tuple(notes),
        errors=errors_by_code(report),
    )


def render_markdown(report: BenchReport) -> str:
    """The Markdown summary of one run: report_text(report) as a heading, tables and a list."""
    return report_text(report).markdown()


def server_text(server: Mapping[str, Any]) -> str:
    """The report's server section in one line."""
    latency = server.get("request_latency_ms") or {}
    queuing = server.get("queuing_latency_ms") or {}
    parts = [
        f"{_rate(server.get('request_rate'))} req/s ({server.get('requests', 0):,} requests)",
        f"request_latency p50 {_ms(latency.get('p50'))}, p99 {_ms(latency.get('p99'))}",
    ]
    if server.get("batch_size_mean") is not None:
        parts.append(f"batch size mean {server['batch_size_mean']:,.1f}")
    if queuing.get("mean") is not None:
        parts.append(f"queueing mean {_ms(queuing.get('mean'))}, p99 {_ms(queuing.get('p99'))}")
    return "; ".join(parts)


# --- Compare --------------------------------------------------------------------------------

# (row label, attribute path in a report, unit)
_COMPARED: tuple[tuple[str, str, str], ...] = (
    ("QPS", "achieved_rps", ""),
    ("average latency", "latency_ms.mean", "ms"),
    ("p50", "latency_ms.p50", "ms"),
    ("p95", "latency_ms.p95", "ms"),
    ("p99", "latency_ms.p99", "ms"),
    ("p99.9", "latency_ms.p999", "ms"),
    ("max", "latency_ms.max", "ms"),
    ("success rate", "success_rate", "%"),
    ("errors", "error_count", ""),
    ("server-answered errors", "server_errors", ""),
    ("transport errors", "transport_errors", ""),
    ("client errors", "client_errors", ""),
    ("late sends", "late_sends", ""),
    ("batch size", "batch.size_mean", ""),
    ("server req/s", "server.request_rate", ""),
    ("server p99", "server.request_latency_ms.p99", "ms"),
)


def _read(report: BenchReport, path: str) -> float | None:
    value: Any = report
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return float(value)


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return _ms(value)
    if unit == "%":
        return _percent(value)
    return f"{value:,.1f}" if value % 1 else f"{value:,.0f}"


def _change(before: float | None, after: float | None, unit: str) -> str:
    if before is None or after is None:
        return ""
    arrow = f"{_format(before, unit)} -> {_format(after, unit)}"
    if unit == "%":
        return f"{arrow} ({(after - before) * 100:+.2f} pt)"
    if before == 0:
        return arrow
    return f"{arrow} ({(after - before) / before * 100:+.0f} %)"


def comparison_table(
    reports: Sequence[BenchReport], names: Sequence[str] | None = None
) -> TextTable:
    """The reports side by side, one column each, each later one with its change from the first."""
    if len(reports) < 2:
        raise ValueError(f"compare: expected at least 2 reports, got {len(reports)}")
    titles = list(names) if names else [report.label or report.model for report in reports]
    rows: list[tuple[str, ...]] = []
    if len({report.protocol for report in reports}) > 1:
        rows.append(("protocol", *(report.protocol for report in reports)))
    for label, path, unit in _COMPARED:
        values = [_read(report, path) for report in reports]
        if all(value is None for value in values):
            continue
        cells = [_format(values[0], unit)]
        cells += [_change(values[0], value, unit) or _format(value, unit) for value in values[1:]]
        rows.append((label, *cells))
    return TextTable(("metric", *titles), tuple(rows), (False, *(True,) * len(reports)))


def compare_reports(reports: Sequence[BenchReport], names: Sequence[str] | None = None) -> str:
    """Markdown: comparison_table(reports, names)."""
    return comparison_table(reports, names).markdown()


# --- Latency chart --------------------------------------------------------------------------

_CHART_ROWS = (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"))
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _bar(fraction: float, width: int) -> str:
    """A horizontal bar of `fraction` of `width` cells, in eighths of a cell."""
    eighths = round(max(min(fraction, 1.0), 0.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def latency_chart_lines(report: BenchReport, width: int = 48) -> list[str]:
    """The latency distribution as text bars, p50 to max, corrected and uncorrected.

    Bars are on a log scale from 0.1 ms to the run's max, so a 10 ms p50 beside a 2 s p99
    (a stall) both stay readable.
    """
    latency, raw = report.latency_ms, report.uncorrected_latency_ms
    if latency.max is None:
        return ["no latencies recorded"]
    floor_ms = 0.1
    top = math.log10(max(latency.max, floor_ms * 10) / floor_ms)

    def scaled(value: float | None) -> float:
        return 0.0 if value is None else math.log10(max(value, floor_ms) / floor_ms) / top

    lines = [f"latency distribution (log scale, ms){'':>{max(width - 27, 1)}}  corrected  sent-at"]
    for label, key in (*_CHART_ROWS, ("max", "max")):
        value, uncorrected = getattr(latency, key), getattr(raw, key)
        bar = _bar(scaled(value), width)
        lines.append(f"{label:>6} {bar:<{width}} {_ms(value):>10} {_ms(uncorrected):>10}")
    return lines
