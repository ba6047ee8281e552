"""The live ops panels: throughput, latency, batch fill, model, burst and memory.

Each panel keeps the last data it was given and renders it to fit its width; the app feeds them
from one StatsSnapshot per refresh and from worker messages. A panel only repaints when what it
would draw changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.content import Content
from textual.widget import Widget

if TYPE_CHECKING:
    from core.client.monitor import ModelState
    from core.client.scrape import ServerBatching
    from core.load.burst import BurstProgress
    from core.metrics.latency import LatencySummary
    from core.metrics.stats import StatsSnapshot
    from core.report.model import BenchReport
from tui.format import (
    CRIT_STYLE,
    DIM_STYLE,
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


class ThroughputPanel(Panel):
    """QPS with a sparkline, success rate, in-flight requests and errors by code."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Throughput", id=id)
        self.snapshot: StatsSnapshot | None = None

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot."""
        self.snapshot = snapshot
        self.changed()

    def lines(self, width: int) -> Sequence[Content | str]:
        snapshot = self.snapshot
        if snapshot is None:
            return [_dim("no requests yet")]
        rate_pair = ("QPS", format_rate(snapshot.qps), "bold")
        ok_pair = (
            "ok",
            format_percent(snapshot.success_rate),
            success_style(snapshot.success_rate),
        )
        flight_pair = ("in flight", str(snapshot.in_flight), "bold" if snapshot.in_flight else "")
        first = labelled([rate_pair, ok_pair, flight_pair])
        # Narrow panels move the in-flight count to the errors line rather than cropping it.
        flight_first = first.cell_length > width
        if flight_first:
            first = labelled([rate_pair, ok_pair])
        history = snapshot.qps_history
        span = f" {len(history) // 60} min" if len(history) >= 120 else f" {len(history)} s"
        spark = Content.assemble(
            Content.styled(sparkline(history, width - len(span)), "$accent"), _dim(span)
        )
        errors = sorted(snapshot.errors_by_code.items(), key=lambda item: (-item[1], item[0]))
        if errors:
            error_line = Content.assemble(
                *(
                    Content.assemble(
                        "  " if index else "",
                        Content.styled(code, CRIT_STYLE),
                        f" {count:,}",
                    )
                    for index, (code, count) in enumerate(errors)
                )
            )
        else:
            error_line = _dim(f"no errors in {snapshot.requests_total:,} requests")
        if flight_first:
            error_line = Content.assemble(labelled([flight_pair]), "  ", error_line)
        return [first, spark, error_line]


class LatencyPanel(Panel):
    """Windowed latency percentiles coloured against the configured thresholds."""

    def __init__(self, warn_ms: float, crit_ms: float, *, id: str | None = None) -> None:
        super().__init__("Latency ms", id=id)
        self.warn_ms = warn_ms
        self.crit_ms = crit_ms
        self.snapshot: StatsSnapshot | None = None

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot."""
        self.snapshot = snapshot
        title = f"Latency ms · {snapshot.window_s:g} s window"
        if self.border_title != title:  # setting it, even unchanged, repaints the panel
            self.border_title = title
        self.changed()

    def _value(self, label: str, milliseconds: float) -> tuple[str, str, str]:
        return (
            label,
            format_ms(milliseconds),
            latency_style(milliseconds, self.warn_ms, self.crit_ms),
        )

    def lines(self, width: int) -> Sequence[Content | str]:
        snapshot = self.snapshot
        if snapshot is None or snapshot.latency.count == 0:
            window = f"{snapshot.window_s:g} s" if snapshot is not None else "the window"
            return [_dim(f"no requests in the last {window}")]
        latency = snapshot.latency
        return [
            labelled([self._value("p50", latency.p50_ms), self._value("p90", latency.p90_ms)]),
            labelled([self._value("p99", latency.p99_ms), self._value("p99.9", latency.p999_ms)]),
            labelled([self._value("max", latency.max_ms), ("n", f"{latency.count:,}", "")]),
        ]


class BatchPanel(Panel):
    """Client micro-batcher fill and the server's batch fill scraped from its metrics."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Batch fill", id=id)
        self.snapshot: StatsSnapshot | None = None
        self.server: ServerBatching | None = None
        self.server_detail = "waiting for metrics"

    def show(self, snapshot: StatsSnapshot) -> None:
        """Take a new stats snapshot (client side)."""
        self.snapshot = snapshot
        self.changed()

    def show_server(self, server: ServerBatching | None, detail: str) -> None:
        """Take the server side (None with a detail such as 'no metrics')."""
        self.server = server
        self.server_detail = detail
        self.changed()

    @staticmethod
    def _fill_line(
        name: str, mean: float | None, maximum: int | None, ratio: float | None, width: int
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
            client = Content.assemble(_dim("client "), _dim("no batches yet"))
        else:
            client = self._fill_line(
                "client",
                snapshot.batch_size_mean,
                snapshot.batch_max_size,
                snapshot.batch_fill_ratio,
                width,
            )
        server = self.server
        if server is None or server.fill_ratio is None:
            server_line = Content.assemble(_dim("server "), "n/a ", _dim(f"({self.server_detail})"))
            queueing: Content | str = ""
        else:
            server_line = self._fill_line(
                "server", server.batch_size_mean, server.max_batch_size, server.fill_ratio, width
            )
            queueing = (
                Content.assemble(_dim("queueing "), f"{format_ms(server.queuing_latency_ms)} ms")
                if server.queuing_latency_ms is not None
                else ""
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
        if state is not None:
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
