"""Live panels: stats rendering, the model panel, server down and back, pause, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from core.client.monitor import Backoff, ModelMonitor, ModelState
from core.client.serving import VersionStatus
from core.metrics.stats import StatsCollector
from tests.fixtures.fault_servicer import FaultServer
from tests.fixtures.fleet import fleet_snapshot
from tests.tui.conftest import chat_behaviour, frozen_stats, make_config, wait_for
from tests.tui.test_app_chat import answered, send
from tui.app import DeepChatApp
from tui.live import poll_model
from tui.messages import (
    FleetSampled,
    MetricsSampled,
    ModelProblem,
    ModelStateChanged,
    ServerStateChanged,
)
from tui.widgets.panels import (
    BatchPanel,
    BurstPanel,
    LatencyPanel,
    MemoryPanel,
    ModelPanel,
    ThroughputPanel,
    burst_progress_lines,
)


def panel_text(app: DeepChatApp, panel_type: type) -> str:
    """The plain text a panel draws now."""
    return str(app.query_one(panel_type).render())


def load(stats: StatsCollector, count: int, latency_s: float, code: str = "OK") -> None:
    """Record finished requests into stats."""
    for _ in range(count):
        stats.record(latency_s, code, served_version=2 if code == "OK" else None)


async def test_panels_render_one_snapshot_with_thresholds(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    stats, _ = frozen_stats()
    load(stats, 90, 0.004)
    load(stats, 9, 0.150)  # above the 100 ms warn threshold
    load(stats, 1, 0.900)  # above the 500 ms crit threshold
    load(stats, 3, 0.010, code="UNAVAILABLE")
    stats.record_batch(24, 32)
    app = app_factory(stats=stats)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "QPS" in panel_text(app, ThroughputPanel))
        throughput = panel_text(app, ThroughputPanel)
        assert "UNAVAILABLE 3" in throughput and "ok 97.1 %" in throughput
        latency_panel = app.query_one(LatencyPanel)
        latency = panel_text(app, LatencyPanel)
        assert "p50 4.0" in latency and "n 103" in latency
        spans = latency_panel.render().spans
        styles = {str(span.style) for span in spans}
        assert "bold $error" in styles and "$warning" in styles and "$success" in styles
        assert "client 24.0 / 32   75%" in panel_text(app, BatchPanel)
        assert latency_panel.border_title == "Latency ms · 10 s window"


async def test_model_panel_shows_versions_labels_and_notifies_new_versions(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    chat_server.behaviour = chat_behaviour(version_states={1: "AVAILABLE", 2: "LOADING"})
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "v2 LOADING" in panel_text(app, ModelPanel))
        text = panel_text(app, ModelPanel)
        assert "v1 AVAILABLE" in text and "serving_default  text → confidence, reply" in text
        assert "stable→2" in text  # the fault server resolves every label to its served version
        chat_server.behaviour.version_states = {1: "END", 2: "AVAILABLE"}
        await wait_for(pilot, lambda: "v2 AVAILABLE" in panel_text(app, ModelPanel), 10)
        await wait_for(
            pilot,
            lambda: any("version 2 is AVAILABLE" in n.message for n in app._notifications),
        )
        await send(app, pilot, "which version?")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        await wait_for(pilot, lambda: "v2 AVAILABLE ●" in panel_text(app, ModelPanel))
        assert "served v2 ×1" in panel_text(app, ModelPanel)


async def test_server_down_marks_panels_and_recovers(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.server_state == "up")
        chat_server.behaviour = chat_behaviour(
            error=(grpc.StatusCode.UNAVAILABLE, "connection refused")
        )
        await wait_for(pilot, lambda: app.server_state == "down", 15)
        assert all(panel.has_class("-down") for panel in app.panels())
        assert "server down" in str(app.query_one("#header").render())
        assert "reconnecting in" in str(app.query_one("#header").render())
        chat_server.behaviour = chat_behaviour()
        await wait_for(pilot, lambda: app.server_state == "up", 20)
        assert not any(panel.has_class("-down") for panel in app.panels())
        assert app.is_running


async def test_poll_loop_backs_off_while_down_and_resets_when_back(
    chat_server: FaultServer,
) -> None:
    from core.client.serving import ClientSettings, ModelSpec, ServingClient

    posted: list[object] = []
    chat_server.behaviour = chat_behaviour(error=(grpc.StatusCode.UNAVAILABLE, "down"))
    settings = ClientSettings(targets=(chat_server.target,), max_retries=0)
    async with ServingClient(settings) as client:
        monitor = ModelMonitor(client, ModelSpec("deepchat_model"))
        backoff = Backoff(initial_s=0.01, max_s=0.04, jitter=0.0)
        task = asyncio.create_task(
            poll_model(lambda: monitor, posted.append, interval_s=0.01, backoff=backoff)
        )
        try:
            for _ in range(500):
                if sum(isinstance(m, ServerStateChanged) for m in posted) >= 4:
                    break
                await asyncio.sleep(0.01)
            downs = [m for m in posted if isinstance(m, ServerStateChanged)]
            assert [m.state for m in downs[:4]] == ["down"] * 4
            assert "reconnecting in 0.0 s" in downs[0].detail
            assert backoff.failures >= 4
            chat_server.behaviour = chat_behaviour()
            for _ in range(500):
                if any(isinstance(m, ModelStateChanged) for m in posted):
                    break
                await asyncio.sleep(0.01)
            assert any(isinstance(m, ModelStateChanged) for m in posted)
            assert backoff.failures == 0
        finally:
            task.cancel()


async def test_pause_freezes_panels_until_resumed(app_factory: Callable[..., DeepChatApp]) -> None:
    stats, _ = frozen_stats()
    app = app_factory(stats=stats)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "no errors in 0" in panel_text(app, ThroughputPanel))
        await pilot.press("ctrl+o")
        assert app.paused
        load(stats, 5, 0.002)
        await pilot.pause(0.6)  # more than two refresh periods at 4 Hz
        assert "no errors in 0" in panel_text(app, ThroughputPanel)
        await pilot.press("f2")
        await wait_for(pilot, lambda: "no errors in 5" in panel_text(app, ThroughputPanel))


async def test_metrics_memory_and_problems_from_messages(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert "server n/a (waiting for the servers' metrics)" in panel_text(app, BatchPanel)
        app.post_message(FleetSampled(fleet_snapshot()))
        app.post_message(MetricsSampled(82 * 2**20, 610 * 2**20))
        await wait_for(pilot, lambda: "server 21.4 / 32" in panel_text(app, BatchPanel))
        assert "queueing 0.40 ms" in panel_text(app, BatchPanel)
        assert "servers QPS 1,816  up 3/4  RESOURCE_EXHAUSTED 3" in panel_text(app, ThroughputPanel)
        assert "servers p50 3.1  p99 95  bucketed 5 s" in panel_text(app, LatencyPanel)
        assert "console 82 MB" in panel_text(app, MemoryPanel)
        assert "server  610 MB" in panel_text(app, MemoryPanel)
        app.post_message(FleetSampled(None, "nothing to sample"))
        await wait_for(pilot, lambda: "n/a (nothing to sample)" in panel_text(app, BatchPanel))
        app.post_message(ModelProblem("NOT_FOUND", "Servable not found for request: Latest(x)"))
        await wait_for(pilot, lambda: "NOT_FOUND" in panel_text(app, ModelPanel))
        state = ModelState(
            "deepchat_model",
            (VersionStatus(1, "AVAILABLE", "OK", ""),),
            None,
        )
        app.post_message(ModelStateChanged(state))
        await wait_for(pilot, lambda: "v1 AVAILABLE" in panel_text(app, ModelPanel))
        assert "metadata not available" in panel_text(app, ModelPanel)


def test_burst_lines_summarise_progress() -> None:
    from core.load.burst import BurstProgress
    from core.metrics.latency import LatencySummary

    progress = BurstProgress(
        state="running",
        elapsed_s=12.0,
        planned_s=30.0,
        issued=2400,
        finished=2390,
        ok=2388,
        errors={"UNAVAILABLE": 2},
        late_sends=0,
        in_flight=10,
        offered_rps=200.0,
        achieved_rps=199.0,
        window_qps=200.0,
        window_latency=LatencySummary(100, 3.0, 5.0, 6.0, 9.5, 12.0, 14.0, 3.5),
    )
    assert burst_progress_lines(progress) == [
        "running 12 / 30 s",
        "200 → 199 rps  p99 9.5 ms",
        "UNAVAILABLE 2",
    ]
    panel = BurstPanel("hint")
    panel.show(["\x1b[31mred\x1b[0m line"])
    assert panel.summary == ["red line"]


async def test_a_session_that_cannot_start_is_shown_not_raised(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    from tui.messages import SessionFailed

    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        app.post_message(SessionFailed("exporting the demo model failed\n--- last lines ---\nboom"))
        await wait_for(pilot, lambda: app.server_state == "failed")
        header = str(app.query_one("#header").render())
        assert "server failed exporting the demo model failed" in header
        assert "UNAVAILABLE" in panel_text(app, ModelPanel)
        assert all(panel.has_class("-down") for panel in app.panels())
        assert any("exporting the demo model failed" in n.message for n in app._notifications)


def test_client_batch_line_says_yet_only_before_the_first_batch() -> None:
    stats, clock = frozen_stats()
    panel = BatchPanel()
    panel.show(stats.snapshot())
    assert str(panel.lines(60)[0]) == "client no batches yet"
    stats.record_batch(3, 32)
    panel.show(stats.snapshot())
    assert str(panel.lines(60)[0]).startswith("client 3.0 / 32")
    clock.now += 30.0  # the batch leaves the 10 s window
    panel.show(stats.snapshot())
    assert str(panel.lines(60)[0]) == "client no batches in the last 10 s"
    assert str(panel.lines(20)[0]) == "client none in 10 s"  # narrow


def test_server_figures_not_exported_or_not_measured_yet_are_said_never_zero() -> None:
    import dataclasses

    from core.fleet.snapshot import ServerFigures

    snapshot = fleet_snapshot(down=None)
    batching = ":tensorflow:serving:batching_session:processed_batch_size"
    unbatched = dataclasses.replace(
        snapshot, fleet=ServerFigures(window_s=5.0, qps=60.0, not_exported=(batching,))
    )
    batch_panel = BatchPanel()
    batch_panel.fleet.take(unbatched, "")
    assert "server n/a (not exported)" in str(batch_panel.lines(60)[1])
    first = dataclasses.replace(snapshot, fleet=ServerFigures())  # one sample: no rates yet
    throughput = ThroughputPanel()
    throughput.fleet.take(first, "")
    assert "servers QPS measuring…  up 4/4" in str(throughput.lines(60)[0])
    latency = LatencyPanel(100.0, 500.0)
    latency.fleet.take(first, "")
    assert "servers measuring…" in str(latency.lines(60)[0])


async def test_an_idle_console_redraws_no_panel_until_its_figures_change(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    stats, clock = frozen_stats()
    app = app_factory(stats=stats, config=make_config(ui={"refresh_hz": 20}))
    shown: list[object] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: "no errors in 0" in panel_text(app, ThroughputPanel))
        panel = app.query_one(ThroughputPanel)
        original = panel.show
        panel.show = lambda snapshot: (shown.append(snapshot), original(snapshot))  # type: ignore[method-assign]
        clock.now += 0.3  # time passes inside one second: only taken_at moves
        await pilot.pause(0.3)  # six refresh periods at 20 Hz
        assert shown == []
        load(stats, 5, 0.002)
        await wait_for(pilot, lambda: "no errors in 5" in panel_text(app, ThroughputPanel))
        assert len(shown) == 1


async def test_the_console_freezes_its_start_up_heap_once_serving(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    import gc

    import tui.app
    from tui.messages import SessionStarted

    gc.unfreeze()
    tui.app._FROZEN_STAGES.clear()
    app = app_factory()
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            assert gc.get_freeze_count() == 0
            app.post_message(SessionStarted(("127.0.0.1:1",)))
            await wait_for(pilot, lambda: gc.get_freeze_count() > 0)
            # Everything Textual and the console loaded is out of the collector's walks.
            assert gc.get_freeze_count() > 20_000
    finally:
        gc.unfreeze()


async def test_after_the_first_frame_the_collector_runs_and_the_footer_and_chat_rules_load(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    import gc

    from textual.widgets import Footer

    from tui.app import CHAT_CSS_PATH

    gc.disable()  # as tui.main starts the console
    try:
        app = app_factory()
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: bool(app.query(Footer)))
            assert gc.isenabled()
            assert app.stylesheet.has_source(str(CHAT_CSS_PATH))
            # The footer is in the bar that held its row, and composes its keys.
            footer = app.query_one(Footer)
            assert footer.parent is app.query_one("#footer-bar")
            await wait_for(pilot, lambda: bool(footer.children))
    finally:
        gc.enable()
