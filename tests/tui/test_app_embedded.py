"""The console with the real embedded server and the demo chat model (child processes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from core.embedded.launcher import EmbeddedServer
from core.fleet.snapshot import BatchFigures
from tests.fixtures.servers import demo_model_base_path, demo_server  # noqa: F401
from tests.tui.conftest import make_config, remote_options, wait_for
from tests.tui.test_app_chat import answered, send, visible_text
from tui.app import DeepChatApp
from tui.options import build_options
from tui.widgets.panels import BatchPanel, MemoryPanel, ModelPanel

pytestmark = pytest.mark.slow


async def test_chat_with_the_demo_model_and_server_metrics(
    demo_server: EmbeddedServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    options = dataclasses.replace(
        remote_options(tmp_path, (demo_server.grpc_target,)), rest_url=demo_server.rest_url
    )
    app = DeepChatApp(options)
    async with app.run_test(size=(160, 48)) as pilot:
        # The servers' figures are rates over a window: the first sample is the baseline.
        await wait_for(pilot, lambda: app.fleet_snapshot is not None, 30)
        await send(app, pilot, "how does server side batching work?")
        await wait_for(pilot, lambda: len(answered(app)) == 1, 30)
        outcome = answered(app)[0].outcome
        assert outcome is not None and outcome.ok, outcome
        assert outcome.served_version == 2 and outcome.reply is not None
        assert outcome.reply.text.strip()
        assert "confidence" in visible_text(answered(app)[0])

        # The embedded server batches server-side; its Prometheus metrics reach the panel, with
        # the max batch size read off its buckets (no max_batch_sizes configured for a target).
        def server_batch() -> BatchFigures | None:
            figures = app.query_one(BatchPanel).fleet.figures
            return figures.batch if figures is not None else None

        await wait_for(
            pilot, lambda: (batch := server_batch()) is not None and batch.size_mean is not None, 15
        )
        batch = server_batch()
        assert batch is not None and batch.size_mean is not None and batch.size_mean >= 1
        assert batch.max_batch_size is not None and batch.max_batch_size_inferred
        assert "server 1.0 / " in str(app.query_one(BatchPanel).render())
        assert app.fleet_snapshot is not None and app.fleet_snapshot.all_up
        await wait_for(pilot, lambda: "v2 AVAILABLE ●" in str(app.query_one(ModelPanel).render()))
        assert "server  remote" in str(app.query_one(MemoryPanel).render())


async def test_embedded_start_up_chat_and_shutdown(
    demo_model_base_path: Path,  # noqa: F811
    tmp_path: Path,
    app_factory: Callable[..., DeepChatApp],
) -> None:
    config = make_config(embedded={"model_base_path": str(demo_model_base_path)})
    options = dataclasses.replace(
        build_options(config, data_dir=tmp_path / "data"), clock=lambda: "12:00:00"
    )
    app = DeepChatApp(options)
    async with app.run_test(size=(160, 48)) as pilot:
        # The first frame does not wait for the server: it says it is starting.
        assert app.server_state == "starting"
        assert "starting server" in str(app.query_one("#header").render())
        await send(app, pilot, "what is a version label?")  # typed while the model loads
        await wait_for(pilot, lambda: app.server_state == "up", 120)
        pid = app.session.server_pid
        assert pid is not None and psutil.pid_exists(pid)
        await wait_for(pilot, lambda: len(answered(app)) == 1, 30)
        outcome = answered(app)[0].outcome
        assert outcome is not None and outcome.ok and outcome.served_version == 2
        await wait_for(pilot, lambda: app.query_one(MemoryPanel).server_rss is not None, 10)
        # The embedded server is the fleet's one replica, local, so its RSS is known too.
        await wait_for(pilot, lambda: app.fleet_snapshot is not None, 10)
        assert app.fleet_snapshot is not None and app.fleet_snapshot.all_up
        assert app.fleet_snapshot.replicas[0].address == app.session.targets[0]
        assert (tmp_path / "data" / "server.log").exists()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, 30)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
