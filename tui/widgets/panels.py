"""The live ops panels: throughput, latency, batch fill, model, burst and memory.

Each panel keeps the last data it was given and renders it to fit its width; the app feeds them
from one StatsSnapshot per refresh (the console's own traffic) and from worker messages (the
servers' own figures, a FleetSnapshot). A panel only repaints when what it
would draw changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.content import Content
from textual.widget import Widget

if TYPE_CHECKING:
    from core.client.monitor import ModelState
    from core.fleet.snapshot import FleetSnapshot, ServerFigures
    from core.load.burst import BurstProgress
    from core.metrics.latency import LatencySummary
    from core.metrics.stats import StatsSnapshot
    from core.report.model import BenchReport
from tui.format import (
    CRIT_STYLE,
    DIM_STYLE,
    OK_STYLE,
    VERSION_STATE_STYLES,
    bar,
    format_bytes,
    format_ms,
    format_percent,
    format_rate,
    labelled,
    latency_style,
    sparkline,
    success_style,
)


class Panel(Widget):
    """A bordered panel whose lines are built from its data and its current width."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = title
        self._drawn: Content | None = None

    def lines(self, width: int) -> Sequence[Content | str]:
        """The panel's lines for a content width."""
        return ()

    def render(self) -> Content:
        width = max(self.content_size.width, 1)
        return Content("\n").join(
            line if isinstance(line, Content) else Content(line) for line in self.lines(width)
        )

    def changed(self) -> None:
        """Repaint if the new data draws differently from what is on screen."""
        drawn = self.render()
        if drawn != self._drawn:
            self._drawn = drawn
            self.refresh()


def sanitize_text(text: str) -> str:
    """The chat sanitizer, imported on first use (panels draw before numpy is loaded)."""
    from core.chat.adapters import sanitize_text as sanitize

    return sanitize(text)


def _dim(text: str) -> Content:
    return Content.styled(text, DIM_STYLE)


REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"


class FleetView:
    """What the Throughput, Latency and Batch panels know of the servers' side."""

    def __init__(self) -> None:
        self.snapshot: FleetSnapshot | None = None
        self.detail = "waiting for the servers' metrics"

    def take(self, snapshot: FleetSnapshot | None, detail: str) -> None:
        """Keep a new sample (None with a detail saying why there is none)."""
        self.snapshot = snapshot
        self.detail = detail

    @property
    def figures(self) -> ServerFigures | None:
        """The fleet's figures, None before the first sample."""
        return self.snapshot.fleet if self.snapshot is not None else None

    def missing(self, family: str) -> str:
        """Why a figure from this metric family is not shown: not exported, measuring, ..."""
        figures = self.figures
        if figures is None:
            return self.detail
        if family in figures.not_exported:
            return "not exported"
        rows = self.snapshot.replicas if self.snapshot is not None else ()
        if not rows:
            return "no replicas"
        if all(row.figures.metrics_error for row in rows):
            return "metrics unreachable"
        if figures.window_s is None:
            return "measuring…"
        return "no requests"


def _fit(width: int, *candidates: Content) -> Content:
    """The first candidate that fits the width, else the last one cut with an ellipsis."""
    for candidate in candidates:
        if candidate.cell_length <= width:
            return candidate
    return candidates[-1].truncate(width, ellipsis=True)


def _errors_content(errors: dict[str, float] | dict[str, int]) -> Content:
    ordered = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    return Content.assemble(
        *(
            Content.assemble(
                "  " if index else "", Content.styled(code, CRIT_STYLE), f" {count:,.0f}"
            )
            for index, (code, count) in enumerate(ordered)
        )
    )


class ThroughputPanel(Panel):
    """The servers' QPS (fleet total) with its sparkline and errors, the console's own beside it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Throughput", id=id)
        self.snapshot: StatsSnapshot | None = None
        self.fleet = FleetView()
        self.server_history: deque[float] = deque(maxlen=300)

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot (the console's traffic)."""
        self.snapshot = snapshot
        self.changed()

    def show_fleet(self, snapshot: FleetSnapshot | None, detail: str = "") -> None:
        """Take a new fleet sample (the servers' traffic)."""
        self.fleet.take(snapshot, detail)
        if snapshot is not None and snapshot.fleet.qps is not None:
            self.server_history.append(snapshot.fleet.qps)
        self.changed()

    def _servers_line(self, width: int) -> Content:
        fleet = self.fleet
        figures = fleet.figures
        label = _dim("servers ")
        if fleet.snapshot is None or figures is None:
            return _fit(width, Content.assemble(label, _dim(fleet.detail)))
        rows = fleet.snapshot.replicas
        up = sum(row.up for row in rows)
        up_pair = ("up", f"{up}/{len(rows)}", OK_STYLE if up == len(rows) else f"bold {CRIT_STYLE}")
        if figures.qps is None:
            return _fit(
                width,
                Content.assemble(
                    label, _dim(f"QPS {fleet.missing(REQUEST_COUNT)}  "), labelled([up_pair])
                ),
            )
        rate = labelled([("QPS", format_rate(figures.qps), "bold"), up_pair])
        line = Content.assemble(label, rate)
        if figures.errors:
            # Narrow panels keep the error codes and drop the label first.
            errors = _errors_content(dict(figures.errors))
            return _fit(
                width,
                Content.assemble(line, "  ", errors),
                Content.assemble(rate, "  ", errors),
            )
        return _fit(width, line)

    def _console_line(self, width: int) -> Content:
        snapshot = self.snapshot
        label = _dim("console ")
        if snapshot is None:
            return Content.assemble(label, _dim("no requests yet"))
        pairs = [
            ("QPS", format_rate(snapshot.qps), "bold"),
            ("ok", format_percent(snapshot.success_rate), success_style(snapshot.success_rate)),
            ("in flight", str(snapshot.in_flight), "bold" if snapshot.in_flight else ""),
        ]
        tail = (
            _errors_content(snapshot.errors_by_code)
            if snapshot.errors_by_code
            else _dim(f"no errors in {snapshot.requests_total:,}")
        )
        # Narrow panels drop the in-flight count first, then the error summary (unless errors).
        for shown, with_tail in (
            (pairs, True),
            (pairs[:2], True),
            (pairs[:1], True),
            (pairs[:2], False),
        ):
            line = Content.assemble(label, labelled(shown))
            if with_tail:
                line = Content.assemble(line, "  ", tail)
            if line.cell_length <= width:
                break
        return _fit(width, line)

    def lines(self, width: int) -> Sequence[Content | str]:
        servers = self.fleet.snapshot is not None
        history = (
            list(self.server_history)
            if servers
            else (self.snapshot.qps_history if self.snapshot is not None else [])
        )
        span = f" {len(history) // 60} min" if len(history) >= 120 else f" {len(history)} s"
        spark = Content.assemble(
            Content.styled(sparkline(history, width - len(span)), "$accent"), _dim(span)
        )
        return [self._servers_line(width), spark, self._console_line(width)]


class LatencyPanel(Panel):
    """The servers' bucketed p50/p99 and the console's own percentiles, against the thresholds."""

    def __init__(self, warn_ms: float, crit_ms: float, *, id: str | None = None) -> None:
        super().__init__("Latency ms", id=id)
        self.warn_ms = warn_ms
        self.crit_ms = crit_ms
        self.snapshot: StatsSnapshot | None = None
        self.fleet = FleetView()

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot (the console's requests)."""
        self.snapshot = snapshot
        title = f"Latency ms · {snapshot.window_s:g} s window"
        if self.border_title != title:  # setting it, even unchanged, repaints the panel
            self.border_title = title
        self.changed()

    def show_fleet(self, snapshot: FleetSnapshot | None, detail: str = "") -> None:
        """Take a new fleet sample (the servers' request_latency histograms)."""
        self.fleet.take(snapshot, detail)
        self.changed()

    def _value(self, label: str, milliseconds: float | None) -> tuple[str, str, str]:
        return (
            label,
            format_ms(milliseconds),
            latency_style(milliseconds, self.warn_ms, self.crit_ms),
        )

    def _servers_line(self, width: int) -> Content:
        figures = self.fleet.figures
        label = _dim("servers ")
        if figures is None or figures.latency.p50_ms is None:
            return _fit(width, Content.assemble(label, _dim(self.fleet.missing(REQUEST_LATENCY))))
        latency = figures.latency
        values = labelled([self._value("p50", latency.p50_ms), self._value("p99", latency.p99_ms)])
        window = f" {figures.window_s:.0f} s" if figures.window_s else ""
        # Percentiles interpolated from histogram buckets say so, in fewer letters when narrow.
        notes = (f"  bucketed{window}", "  bucketed", " ~bkt") if latency.bucketed else (window,)
        return _fit(width, *(Content.assemble(label, values, _dim(note)) for note in notes))

    def lines(self, width: int) -> Sequence[Content | str]:
        servers = self._servers_line(width)
        snapshot = self.snapshot
        label = _dim("console ")
        if snapshot is None or snapshot.latency.count == 0:
            window = f"{snapshot.window_s:g} s" if snapshot is not None else "the window"
            return [servers, Content.assemble(label, _dim(f"no requests in the last {window}"))]
        latency = snapshot.latency
        tail = [self._value("p99.9", latency.p999_ms), self._value("max", latency.max_ms)]
        return [
            servers,
            _fit(
                width,
                Content.assemble(
                    label,
                    labelled(
                        [self._value("p50", latency.p50_ms), self._value("p99", latency.p99_ms)]
                    ),
                ),
            ),
            _fit(
                width,
                Content.assemble(
                    _dim("        "), labelled([*tail, ("n", f"{latency.count:,}", "")])
                ),
                Content.assemble(_dim("        "), labelled(tail)),
                labelled(tail),
            ),
        ]


class BatchPanel(Panel):
    """Client micro-batcher fill and the servers' batch fill from their batching metrics."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Batch fill", id=id)
        self.snapshot: StatsSnapshot | None = None
        self.fleet = FleetView()

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot (client side)."""
        self.snapshot = snapshot
        self.changed()

    def show_fleet(self, snapshot: FleetSnapshot | None, detail: str = "") -> None:
        """Take a new fleet sample (server side: its own max batch size, maybe inferred)."""
        self.fleet.take(snapshot, detail)
        self.changed()

    @staticmethod
    def _fill_line(
        name: str,
        mean: float | None,
        maximum: str,
        ratio: float | None,
        width: int,
    ) -> Content:
        if mean is None or ratio is None:
            return Content.assemble(_dim(f"{name:<7}"), "n/a")
        figures = f"{mean:.1f} / {maximum}  {ratio * 100:3.0f}% "
        return Content.assemble(
            _dim(f"{name:<7}"),
            figures,
            Content.styled(bar(ratio, width - 7 - len(figures)), "$accent"),
        )

    def lines(self, width: int) -> Sequence[Content | str]:
        snapshot = self.snapshot
        if snapshot is None or snapshot.batch_size_mean is None:
            # "yet" only before the first batch; after it, the window is what is empty.
            idle: tuple[str, ...]
            if snapshot is not None and snapshot.batches_total:
                window = f"{snapshot.window_s:g} s"
                idle = (f"no batches in the last {window}", f"none in {window}")
            else:
                idle = ("no batches yet",)
            client = _fit(width, *(Content.assemble(_dim("client "), _dim(text)) for text in idle))
        else:
            client = self._fill_line(
                "client",
                snapshot.batch_size_mean,
                str(snapshot.batch_max_size),
                snapshot.batch_fill_ratio,
                width,
            )
        figures = self.fleet.figures
        batch = figures.batch if figures is not None else None
        queueing: Content | str = ""
        if batch is None or batch.size_mean is None:
            why = self.fleet.missing(PROCESSED_BATCH_SIZE)
            server_line = _fit(width, Content.assemble(_dim("server "), "n/a ", _dim(f"({why})")))
        elif batch.fill is None:
            server_line = Content.assemble(
                _dim("server "), f"{batch.size_mean:.1f} / ?", _dim("  (max batch size unknown)")
            )
        else:
            maximum = f"{batch.max_batch_size}{'?' if batch.max_batch_size_inferred else ''}"
            server_line = self._fill_line("server", batch.size_mean, maximum, batch.fill, width)
            if batch.max_batch_size_inferred:
                queueing = _dim("? max inferred from the batch sizes seen")
        if batch is not None and batch.queuing_ms_mean is not None:
            queueing = Content.assemble(
                _dim("queueing "),
                f"{format_ms(batch.queuing_ms_mean)} ms",
                _dim("  max inferred") if batch.max_batch_size_inferred else "",
            )
        return [client, server_line, queueing]


class ModelPanel(Panel):
    """Versions with TF Serving's state names, labels, the signature, and who served replies."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Model", id=id)
        self.state: ModelState | None = None
        self.signature_name = "serving_default"
        self.pinned = "latest"
        self.last_served: int | None = None
        self.served_counts: dict[int, int] = {}
        self.problem: str | None = None

    def show(
        self,
        state: ModelState | None,
        *,
        signature_name: str,
        pinned: str,
        problem: str | None = None,
    ) -> None:
        """Take a model poll (or a problem reading it) and what the chat is pinned to."""
        state = state if state is not None else self.state
        if (state, signature_name, pinned, problem) == (
            self.state,
            self.signature_name,
            self.pinned,
            self.problem,
        ):
            return  # the poll of every second, unchanged: not even a render to compare
        self.state = state
        self.signature_name = signature_name
        self.pinned = pinned
        self.problem = problem
        self.changed()

    def show_served(self, last_served: int | None, served_counts: dict[int, int]) -> None:
        """Which version served the last reply, and counts by version."""
        self.last_served = last_served
        self.served_counts = dict(served_counts)
        self.changed()

    def lines(self, width: int) -> Sequence[Content | str]:
        state = self.state
        if state is None:
            return [self.problem or _dim("waiting for the server…")]
        title = f"Model · {state.model_name}"
        if self.border_title != title:
            self.border_title = title
        signature = state.metadata.signatures.get(self.signature_name) if state.metadata else None
        if signature is None:
            tensors: Content = (
                Content.styled(f"{self.signature_name}: no such signature", CRIT_STYLE)
                if state.metadata
                else _dim(f"{self.signature_name}: metadata not available")
            )
        else:
            tensors = Content.assemble(
                _dim(f"{self.signature_name}  "),
                ", ".join(signature.inputs),
                _dim(" → "),
                ", ".join(signature.outputs),
            )
        versions: list[Content | str] = []
        for status in state.versions:
            marker = " ●" if status.version == self.last_served else ""
            style = VERSION_STATE_STYLES.get(status.state, "")
            versions.append(Content.styled(f"v{status.version} {status.state}{marker}", style))
        for label, version in sorted(state.labels.items()):
            versions.append(_dim(f"{sanitize_text(label)}→{version}"))
        version_line = (
            Content("  ").join(
                item if isinstance(item, Content) else Content(item) for item in versions
            )
            if versions
            else _dim("no versions")
        )
        served = ", ".join(
            f"v{version} ×{count:,}" for version, count in sorted(self.served_counts.items())
        )
        chat_line = Content.assemble(
            _dim("chat "), self.pinned, _dim("  served "), served or _dim("nothing yet")
        )
        lines: list[Content | str] = [tensors, version_line, chat_line]
        if self.problem:
            lines[2] = Content.styled(self.problem, CRIT_STYLE)
        return lines


class MemoryPanel(Panel):
    """RSS of the console and of the local server process."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Memory", id=id)
        self.console_rss: int | None = None
        self.server_rss: int | None = None
        self.server_note = "starting"

    def show(self, console_rss: int | None, server_rss: int | None, server_note: str) -> None:
        """Take new RSS samples; server_note explains a missing server figure."""
        self.console_rss = console_rss
        self.server_rss = server_rss
        self.server_note = server_note
        self.changed()

    def lines(self, width: int) -> Sequence[Content | str]:
        server = format_bytes(self.server_rss) if self.server_rss is not None else self.server_note
        return [
            Content.assemble(_dim("console "), format_bytes(self.console_rss)),
            Content.assemble(_dim("server  "), server),
        ]


class BurstPanel(Panel):
    """Idle hint, or the summary of the last burst."""

    def __init__(self, hint: str, *, id: str | None = None) -> None:
        super().__init__("Burst", id=id)
        self.hint = hint
        self.summary: Sequence[str] = ()

    def show(self, summary: Sequence[str]) -> None:
        """Show a finished (or running) burst's summary lines."""
        self.summary = [sanitize_text(line) for line in summary]
        self.changed()

    def lines(self, width: int) -> Sequence[Content | str]:
        if not self.summary:
            return [_dim("idle"), _dim(self.hint)]
        return list(self.summary)


def _errors_text(errors: dict[str, int]) -> str:
    if not errors:
        return "no errors"
    return "  ".join(f"{code} {count:,}" for code, count in sorted(errors.items()))


def burst_progress_lines(progress: BurstProgress) -> list[str]:
    """A running burst: state and time, offered vs achieved rate, live p99, errors."""
    planned = f" / {progress.planned_s:.0f}" if progress.planned_s else ""
    offered = f"{format_rate(progress.offered_rps)} → " if progress.offered_rps else ""
    latency: LatencySummary = progress.window_latency
    return [
        f"{progress.state} {progress.elapsed_s:.0f}{planned} s",
        f"{offered}{format_rate(progress.achieved_rps)} rps  p99 {format_ms(latency.p99_ms)} ms",
        _errors_text(progress.errors),
    ]


def burst_report_lines(report: BenchReport) -> list[str]:
    """A finished burst: label, achieved rate and p99, errors."""
    state = "aborted" if report.aborted else "last"
    return [
        f"{state}: {report.label or report.mode}",
        f"{format_rate(report.achieved_rps)} rps  p99 {format_ms(report.latency_ms.p99)} ms",
        _errors_text(report.errors),
    ]
