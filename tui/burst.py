"""The console's burst screen: a load form, live progress, the report with a latency chart, and
past reports with side-by-side comparison. The load runs in core.load.burst's worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Input,
    Label,
    Sparkline,
    Static,
    TabbedContent,
    TabPane,
)

from core.bench.session import load_settings, prepare_target, run_to_report
from core.client.serving import ClientSettings, ModelSpec, ServingError
from core.load.burst import BurstError, BurstProgress, BurstRun
from core.load.spec import BURST_HELP, LoadSpec, parse_burst_args
from core.report.model import (
    BenchReport,
    default_reports_dir,
    list_reports,
    save_report,
)
from core.report.text import comparison_table, latency_chart_lines, report_text
from tui.format import bar
from tui.widgets.report_text import ReportView

DEFAULT_ARGS = "100rps 10s"
PROGRESS_WIDTH = 40  # cells of the progress bar


class BurstScreen(Screen[None]):
    """Burst load: form, live progress, report with latency chart, past reports and compare."""

    DEFAULT_CSS = """
    BurstScreen { layout: vertical; }
    BurstScreen #burst-args { margin: 0 1; }
    BurstScreen #burst-status { height: auto; padding: 0 1; color: $text-muted; }
    BurstScreen #burst-progress { padding: 0 1; }
    BurstScreen #burst-live { height: auto; padding: 0 1; }
    BurstScreen #burst-qps { height: 2; margin: 0 1; }
    BurstScreen TabbedContent { height: 1fr; }
    BurstScreen #burst-chart { height: auto; padding: 0 1; }
    BurstScreen #past-table { height: 1fr; }
    BurstScreen #compare-view { height: auto; }
    BurstScreen #burst-keys { dock: bottom; height: 1; background: $panel; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "abort_or_close", "abort / close"),
        # The burst keeps running behind the console; F5 there (or /burst) comes back here.
        Binding("f4", "back_to_console", "console"),
        # F5 opens this screen from the console and starts a run here; the app's ctrl+r is retry.
        Binding("f5", "start", "start"),
        Binding("m", "mark", "mark report"),
        Binding("c", "compare", "compare marked"),
    ]

    class Finished(Message):
        """A burst ended (also when aborted): its report, already saved. Bubbles to the app."""

        def __init__(self, report: BenchReport) -> None:
            super().__init__()
            self.report = report

    class Progress(Message):
        """Live figures of the running burst. Bubbles to the app (e.g. for its burst panel)."""

        def __init__(self, progress: BurstProgress) -> None:
            super().__init__()
            self.progress = progress

    class Failed(Message):
        """A burst could not run: why, for people."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(
        self,
        targets: list[str],
        model: ModelSpec,
        args: str = "",
        *,
        reports_dir: Path | None = None,
        autostart: bool = False,
        connection: ClientSettings | None = None,
    ) -> None:
        super().__init__()
        # The console's connection (TLS, token, headers); None = the app's client's, at start.
        self.connection = connection
        self.targets = list(targets)
        self.model = model
        self.initial_args = args.strip() or DEFAULT_ARGS
        self.autostart = autostart
        self.reports_dir = reports_dir or default_reports_dir()
        self.burst: BurstRun | None = None
        self.last_report: BenchReport | None = None
        self.marked: list[Path] = []
        self.past: dict[str, tuple[Path, BenchReport]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="burst-top"):
            # Enter in the field (or F5) starts a run: no Start button, no ProgressBar widget
            # (Textual's Button and ProgressBar, with their CSS, are ~0.4 MB the console would
            # keep while this screen stays installed); the progress is a line of text.
            yield Input(self.initial_args, placeholder=DEFAULT_ARGS, id="burst-args")
            yield Label(self._idle_line(), id="burst-status")
            yield Static(self._progress_line(0.0), id="burst-progress")
            yield Static("", id="burst-live")
            yield Sparkline([], id="burst-qps")
        with TabbedContent(initial="report-tab"):
            with TabPane("Report", id="report-tab"):
                yield Static("", id="burst-chart")
                yield ReportView(id="report-view")
            with TabPane("Past reports", id="past-tab"):
                yield DataTable(id="past-table", cursor_type="row")
                yield ReportView(id="compare-view")
        # One line of keys, not a Footer: a Footer's widget per binding (the console's too) is
        # ~0.6 MB the console would keep for as long as this screen stays installed.
        yield Static(self._keys_line(), id="burst-keys")

    def _keys_line(self) -> Content:
        """This screen's keys, as the footer would show them."""
        keys = [
            (binding.key, binding.description)
            for binding in self.BINDINGS
            if isinstance(binding, Binding)
        ]
        return Content(" ").join(
            Content.assemble(Content.styled(f" {key} ", "bold $accent"), description)
            for key, description in keys
        )

    def _idle_line(self) -> str:
        return f"{self.model.name} @ {', '.join(self.targets)}   {BURST_HELP}"

    def on_mount(self) -> None:
        table = self.query_one("#past-table", DataTable)
        # Text, not str: DataTable reads a str as Rich markup, whose emoji codes (~1 MB loaded
        # once) the console has no other use for, and a label could hold brackets.
        table.add_columns(
            *(Text(label) for label in (" ", "started", "run", "model", "QPS", "p99", "errors"))
        )
        self.refresh_past_reports()
        self.query_one("#burst-args", Input).focus()
        if self.autostart:
            self.action_start()

    @staticmethod
    def _progress_line(fraction: float) -> Content:
        return Content.assemble(
            Content.styled(bar(fraction, PROGRESS_WIDTH), "$accent"), f" {fraction * 100:3.0f}%"
        )

    def show_fraction(self, fraction: float) -> None:
        """Show how far the run is (0..1) on the progress line."""
        self.query_one("#burst-progress", Static).update(self._progress_line(fraction))

    def status(self, text: str) -> None:
        """Show one line under the form."""
        self.query_one("#burst-status", Label).update(text)

    # ---- form --------------------------------------------------------------------------------

    def current_spec(self) -> LoadSpec:
        """The form's load settings; ValueError with usage when they don't parse."""
        return parse_burst_args(self.query_one("#burst-args", Input).value)

    @on(Input.Submitted, "#burst-args")
    def action_start(self) -> None:
        """Start a burst with the form's settings."""
        if self.burst is not None:
            self.notify("a burst is already running; Esc aborts it", severity="warning")
            return
        try:
            spec = self.current_spec()
        except ValueError as error:
            self.status(str(error))
            return
        self.status(f"starting {spec.describe()} ...")
        self.show_fraction(0.0)
        self.run_burst(spec)

    def action_abort_or_close(self) -> None:
        """Esc: abort a running burst (its partial report is kept), or close the screen."""
        if self.burst is not None:
            self.burst.abort()
            self.status("aborting: finishing requests in flight ...")
        else:
            self.app.pop_screen()

    def action_back_to_console(self) -> None:
        """Show the console while the burst goes on (its Burst panel follows the run)."""
        self.app.pop_screen()

    @property
    def running(self) -> bool:
        """Whether a burst is under way."""
        return self.burst is not None

    # ---- the run (a worker: never touches widgets, posts messages) --------------------------

    @work(exclusive=True, group="burst")
    async def run_burst(self, spec: LoadSpec) -> None:
        """Run one burst in worker processes; post its progress and report."""
        settings = load_settings(self.targets, spec.timeout_s, self._connection())
        try:
            target = await prepare_target(settings, self.model)
            self.burst = BurstRun(spec, target, on_progress=self._forward_progress)
            report, _aborted = await run_to_report(self.burst, spec.describe())
        except (ServingError, BurstError, ValueError) as error:
            self.post_message(self.Failed(str(error)))
            return
        finally:
            self.burst = None
        save_report(report, directory=self.reports_dir)
        self.post_message(self.Finished(report))

    def _connection(self) -> ClientSettings | None:
        """The connection chat uses, so a burst reaches a server that needs TLS or a token."""
        if self.connection is not None:
            return self.connection
        client = getattr(getattr(self.app, "backend", None), "client", None)
        settings = getattr(client, "settings", None)
        return settings if isinstance(settings, ClientSettings) else None

    def _forward_progress(self, progress: BurstProgress) -> None:
        self.post_message(self.Progress(progress))

    @on(Progress)
    def show_progress(self, message: Progress) -> None:
        """Update the progress bar, live figures and QPS sparkline."""
        progress = message.progress
        if not self.is_current:
            return  # behind the console (F4): the app's Burst panel shows the run
        if progress.fraction is not None:
            self.show_fraction(progress.fraction)
        self.status(f"{progress.state}: Esc aborts")
        self.query_one("#burst-live", Static).update(progress.line())
        if self.burst is not None:
            history = self.burst.stats.qps_history()
            self.query_one("#burst-qps", Sparkline).data = list(history[-120:]) or [0.0]

    @on(Failed)
    def show_failure(self, message: Failed) -> None:
        """Say why the burst could not run."""
        self.status(f"burst failed: {message.reason}")
        message.stop()

    @on(Finished)
    def show_finished(self, message: Finished) -> None:
        """Show the finished report and list it with the past ones (the app hears it too)."""
        report = message.report
        self.last_report = report
        self.show_fraction(1.0)
        state = "aborted, partial report kept" if report.aborted else "done"
        self.status(f"{state}: {report.label}; Esc closes, F5 runs again")
        self.refresh_past_reports()
        self.show_report(report)

    def show_report(self, report: BenchReport) -> None:
        """Draw a report: the latency chart and the summary (the results table and notes)."""
        self.query_one("#burst-chart", Static).update("\n".join(latency_chart_lines(report)))
        self.query_one("#report-view", ReportView).show(report_text(report))
        self.query_one(TabbedContent).active = "report-tab"

    # ---- past reports ----------------------------------------------------------------------

    def refresh_past_reports(self) -> None:
        """List the saved reports, newest first, keeping the marks."""
        table = self.query_one("#past-table", DataTable)
        table.clear()
        self.past = {}
        for path, report in list_reports(self.reports_dir):
            key = str(path)
            self.past[key] = (path, report)
            errors = sum(report.errors.values())
            p99 = report.latency_ms.p99
            cells = (
                "●" if path in self.marked else " ",
                (report.started_at or "")[:19].replace("T", " "),
                report.label,
                report.model,
                f"{report.achieved_rps:,.1f}",
                "n/a" if p99 is None else f"{p99:,.1f} ms",
                f"{errors:,}",
            )
            table.add_row(*(Text(cell) for cell in cells), key=key)

    def _selected_past(self) -> tuple[Path, BenchReport] | None:
        table = self.query_one("#past-table", DataTable)
        if not self.past or table.cursor_row < 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.past.get(str(row_key.value))

    def action_mark(self) -> None:
        """Mark (or unmark) the selected past report for comparison."""
        selected = self._selected_past()
        if selected is None:
            return
        path = selected[0]
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        self.refresh_past_reports()

    def action_compare(self) -> None:
        """Compare the marked reports (or the selected one and the last run), oldest first."""
        chosen = [self.past[str(path)][1] for path in self.marked if str(path) in self.past]
        # Oldest first, so each change reads as before -> after.
        chosen.sort(key=lambda report: report.started_at or "")
        if len(chosen) < 2:
            selected = self._selected_past()
            if selected is not None and self.last_report is not None:
                chosen = [selected[1], self.last_report]
        if len(chosen) < 2:
            self.notify("mark two reports with m in Past reports to compare them")
            return
        self.query_one("#compare-view", ReportView).show(comparison_table(chosen))
        self.query_one(TabbedContent).active = "past-tab"

    @on(DataTable.RowSelected, "#past-table")
    def open_past_report(self, event: DataTable.RowSelected) -> None:
        """Enter on a past report shows it in the Report tab."""
        entry = self.past.get(str(event.row_key.value))
        if entry is not None:
            self.show_report(entry[1])
