"""The console's burst screen (tui.burst) with Pilot, against a real grpc.aio server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psutil
from textual.app import App
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import DataTable, Label, Static

from core.client.serving import ModelSpec
from core.report.model import BenchReport, build_report, save_report
from core.wire import protos
from tests.core.test_report import make_result
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401
from tui.burst import BurstScreen
from tui.widgets.report_text import ReportView


def text_signature() -> protos.meta_graph_pb2.SignatureDef:
    """The demo chat model's signature: text (DT_STRING [-1]) -> reply."""
    signature = protos.meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for tensors, alias in ((signature.inputs, "text"), (signature.outputs, "reply")):
        tensors[alias].name = f"{alias}:0"
        tensors[alias].dtype = protos.types_pb2.DT_STRING
        tensors[alias].tensor_shape.dim.add(size=-1)
    return signature


class BurstApp(App[None]):
    """A bare app that opens the burst screen and keeps what it posts."""

    def __init__(self, screen: BurstScreen) -> None:
        super().__init__()
        self.burst_screen = screen
        self.finished: list[BenchReport] = []
        self.progress_seen = 0

    def on_mount(self) -> None:
        self.push_screen(self.burst_screen)

    def on_burst_screen_finished(self, message: BurstScreen.Finished) -> None:
        self.finished.append(message.report)

    def on_burst_screen_progress(self, message: BurstScreen.Progress) -> None:
        self.progress_seen += 1


def screen_for(
    server: FaultServer, reports_dir: Path, args: str, *, autostart: bool = False
) -> BurstScreen:
    server.behaviour = Behaviour(
        signature_defs={"serving_default": text_signature()}, served_version=2
    )
    return BurstScreen(
        [server.target],
        ModelSpec("deepchat_model"),
        args,
        reports_dir=reports_dir,
        autostart=autostart,
    )


def drawn_text(widget: Widget) -> str:
    """What the widget draws on screen, as lines of text."""
    width, height = widget.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, width, height)))


async def wait_for(pilot: object, condition: object, rounds: int = 1500) -> None:
    for _ in range(rounds):
        if callable(condition) and condition():
            return
        await pilot.pause(0.01)  # type: ignore[attr-defined]
    raise AssertionError("condition not met in time")


async def test_burst_arguments_from_the_slash_command_start_at_once(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    app = BurstApp(screen_for(fault_server, tmp_path, "40rps 0.25s", autostart=True))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.finished)
        assert app.finished[0].requests == 10
        # F5 runs the same settings again (the app's ctrl+r stays "retry").
        await pilot.press("f5")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert app.finished[1].requests == 10


async def test_a_burst_runs_from_the_form_and_shows_its_report(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    app = BurstApp(screen_for(fault_server, tmp_path, "40rps 0.5s"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.finished)
        report = app.finished[0]
        assert report.requests == report.ok == 20
        assert report.versions == {"2": 20}
        assert app.progress_seen > 0
        # Prompts went to the signature's one string input.
        assert fault_server.calls_to("Predict")[0].request.inputs["text"].string_val
        chart = str(app.screen.query_one("#burst-chart", Static).render())
        assert "p99" in chart and "max" in chart and "█" in chart
        assert len(list(tmp_path.glob("*.json"))) == 1
        assert app.screen.query_one("#past-table", DataTable).row_count == 1
        # The summary: its title, the results table (header and the run's row) and the notes.
        await pilot.pause()
        summary = drawn_text(app.screen.query_one("#report-view", ReportView))
        lines = summary.splitlines()
        assert lines[0].strip() == f"deepchat_model @ {fault_server.target}: 40 rps const 0.5s"
        header = next(line for line in lines if "average latency" in line).split()
        assert header[:3] == ["stage", "QPS", "average"] and header[-3:] == [
            "p99.9",
            "max",
            "errors",
        ]
        row = next(line for line in lines if line.lstrip().startswith("40 rps const"))
        assert "100.00 %" in row and row.rstrip().endswith("none")
        assert "• errors: none" in summary and "• served by: v2 20" in summary


async def test_escape_aborts_a_running_burst_and_keeps_the_partial_report(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    screen = screen_for(fault_server, tmp_path, "50rps 60s")
    app = BurstApp(screen)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(fault_server.calls_to("Predict")) >= 10)
        assert screen.burst is not None
        workers = list(screen.burst.pids)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.finished)
        report = app.finished[0]
        assert report.aborted and 10 <= report.requests < 3000
        assert app.screen is screen  # Esc aborted the run; it did not close the screen
        assert not [pid for pid in workers if psutil.pid_exists(pid)]
        await pilot.press("escape")
        assert app.screen is not screen


async def test_bad_burst_arguments_show_the_usage(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    app = BurstApp(screen_for(fault_server, tmp_path, "200rps soon"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        status = str(app.screen.query_one("#burst-status", Label).render())
        assert "'soon'" in status and "usage: /burst" in status
        assert not fault_server.calls_to("Predict")


async def test_past_reports_are_listed_and_two_marked_ones_compared(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for minutes_ago, label, latencies in ((5, "seed", [20.0] * 45), (1, "ours", [5.0] * 185)):
        result = make_result(latencies)
        result.started_at = now - dt.timedelta(minutes=minutes_ago)
        save_report(build_report(result, label=label), directory=tmp_path)
    app = BurstApp(screen_for(fault_server, tmp_path, ""))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#past-table", DataTable)
        assert table.row_count == 2
        table.focus()
        await pilot.press("m", "down", "m", "c")
        await pilot.pause()
        compare = drawn_text(app.screen.query_one("#compare-view", ReportView)).splitlines()
        assert compare[0].split() == ["metric", "seed", "ours"]
        qps = next(line for line in compare if line.lstrip().startswith("QPS"))
        assert qps.split() == ["QPS", "45", "45", "->", "185", "(+311", "%)"]


async def test_a_burst_uses_the_consoles_connection_token_and_headers(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    from core.client.serving import ClientSettings

    screen = screen_for(fault_server, tmp_path, "40rps 0.25s", autostart=True)
    screen.connection = ClientSettings(
        targets=(fault_server.target,), bearer_token="console-token", headers=(("x-team", "ops"),)
    )
    app = BurstApp(screen)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.finished)
    predicts = fault_server.calls_to("Predict")
    assert predicts and all(
        call.metadata.get("authorization") == "Bearer console-token"
        and call.metadata.get("x-team") == "ops"
        for call in predicts
    )
