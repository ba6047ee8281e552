"""The console against three real embedded servers under load from a separate bench process.

The panels must show the servers' own figures (server-side QPS within 10% of the offered rate),
split per replica in the replicas view; a replica that stops answering turns DOWN within 3 s
and comes back by itself; a killed replica shows DOWN while the others keep serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_status import MODEL, OFFERED_RATE, REPLICAS, Fleet, fleet, traffic  # noqa: F401
from tests.tui.conftest import make_config, remote_options, wait_for
from tui.app import DeepChatApp
from tui.replicas import ReplicasScreen
from tui.widgets.panels import LatencyPanel, ThroughputPanel

pytestmark = pytest.mark.slow


def console(fleet: Fleet, tmp_path: Path) -> DeepChatApp:  # noqa: F811
    """The console on the three replicas, each with its metrics URL (as --metrics gives)."""
    config = make_config(
        model_serving={
            "tensorflow_serving": {
                "host": "127.0.0.1",
                "targets": fleet.targets,
                "metrics_urls": fleet.metrics_urls,
            }
        },
        models=[{"name": "half", "model_name": MODEL}],
    )
    return DeepChatApp(remote_options(tmp_path, tuple(fleet.targets), config=config))


def panel_text(app: DeepChatApp, panel_type: type) -> str:
    return str(app.query_one(panel_type).render())


async def test_the_console_shows_the_servers_rate_per_replica_and_down_replicas(
    fleet: Fleet,  # noqa: F811
    traffic: subprocess.Popen[bytes],  # noqa: F811
    tmp_path: Path,
) -> None:
    app = console(fleet, tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        # A full 5 s window of the servers' own counters (the console itself sends nothing).
        await wait_for(
            pilot,
            lambda: (
                app.fleet_snapshot is not None and (app.fleet_snapshot.fleet.window_s or 0) >= 4.5
            ),
            60,
        )
        snapshot = app.fleet_snapshot
        assert snapshot is not None and snapshot.all_up
        assert snapshot.fleet.qps == pytest.approx(OFFERED_RATE, rel=0.10), snapshot.to_json()
        throughput = panel_text(app, ThroughputPanel)
        assert f"servers QPS {snapshot.fleet.qps:.0f}  up 3/3" in throughput
        assert "console QPS 0.0" in throughput
        assert "bucketed" in panel_text(app, LatencyPanel)

        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplicasScreen))
        screen = app.screen
        assert isinstance(screen, ReplicasScreen)
        table = screen.table
        await wait_for(pilot, lambda: table.row_count == REPLICAS)
        per_replica = [float(table.cell_text(target, "qps")) for target in fleet.targets]
        for qps in per_replica:
            assert qps == pytest.approx(OFFERED_RATE / REPLICAS, rel=0.15), per_replica
        assert all(table.cell_text(target, "state") == "up" for target in fleet.targets)
        assert table.cell_text(fleet.targets[0], "versions").endswith("AVAILABLE")

        # Alive and listening but answering nothing: DOWN within 3 s, back by itself.
        frozen = fleet.servers[1]
        assert frozen.pid is not None
        try:
            os.kill(frozen.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            await wait_for(pilot, lambda: table.cell_text(fleet.targets[1], "state") == "DOWN", 10)
            hung_after_s = time.monotonic() - stopped_at
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        continued_at = time.monotonic()
        await wait_for(pilot, lambda: table.cell_text(fleet.targets[1], "state") == "up", 10)
        back_after_s = time.monotonic() - continued_at

        # Killed: DOWN within 3 s while the other two keep serving.
        victim = fleet.servers[2]
        killed_at = time.monotonic()
        victim._kill()
        await wait_for(pilot, lambda: table.cell_text(fleet.targets[2], "state") == "DOWN", 10)
        killed_after_s = time.monotonic() - killed_at
        await pilot.pause(2.5)
        states = [table.cell_text(target, "state") for target in fleet.targets]
        assert states == ["up", "up", "DOWN"]
        for target in fleet.targets[:2]:
            assert float(table.cell_text(target, "qps")) > 0.3 * OFFERED_RATE / REPLICAS
        assert hung_after_s < 3.0 and killed_after_s < 3.0
        assert back_after_s < 3.0
        print(
            f"\nconsole: servers {snapshot.fleet.qps:.1f} req/s for {OFFERED_RATE:g} offered, "
            f"per replica {per_replica}; hung replica DOWN after {hung_after_s:.2f} s, back "
            f"{back_after_s:.2f} s after; killed replica DOWN after {killed_after_s:.2f} s"
        )
