"""The replicas view: cells from a FleetSnapshot, version skew, diffed updates, how to open it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from core.fleet.snapshot import ServerFigures
from tests.fixtures.fleet import fleet_snapshot, replica_figures
from tests.tui.conftest import wait_for
from tui.app import DeepChatApp
from tui.messages import FleetSampled
from tui.replicas import ReplicasScreen
from tui.widgets.replicas import ReplicasTable, majority_versions, replica_cells


def test_cells_colour_latency_and_mark_the_skewed_and_down_replicas() -> None:
    snapshot = fleet_snapshot()
    majority = majority_versions(snapshot)
    assert majority == (2,)
    cells = [replica_cells(row, majority, 100.0, 500.0) for row in snapshot.replicas]
    assert cells[0]["state"][0] == "up" and cells[0]["qps"][0] == "612"
    assert cells[0]["batch"][0] == "67% 21.4/32"
    assert cells[0]["gpu"][0] == "71% 10,240 MiB" and cells[0]["rss"][0] == "612 MB"
    assert cells[1]["p99"] == ("140", "$warning")
    assert cells[2]["p99"] == ("620", "bold $error")
    assert cells[1]["errors"][0] == "RESOURCE_EXHAUSTED 3"
    assert cells[2]["versions"][0] == "v2 END v3 AVAILABLE  ≠ fleet"
    assert "≠" not in cells[0]["versions"][0]
    assert cells[3]["state"] == ("DOWN", "bold $error")
    assert cells[3]["errors"][0] == "UNAVAILABLE"
    # Batching not exported: said so, never 0.
    not_exported = dataclasses.replace(
        snapshot.replicas[0],
        figures=ServerFigures(window_s=5.0, qps=1.0, not_exported=(":tensorflow:serving:x",)),
    )
    assert replica_cells(not_exported, majority, 100.0, 500.0)["batch"][0] == "not exported"


async def test_f3_opens_the_replicas_view_and_rows_are_diffed(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        app.post_message(FleetSampled(fleet_snapshot()))
        await wait_for(pilot, lambda: app.fleet_snapshot is not None)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplicasScreen))
        table = app.screen.query_one(ReplicasTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        assert table.cell_text("10.0.0.14:8500", "state") == "DOWN"
        # The down replica comes back and the skewed one catches up: only changed cells change.
        back = fleet_snapshot(down=None, skewed=None)
        rows = list(back.replicas)
        rows[3] = dataclasses.replace(rows[3], figures=replica_figures(590.0, 3.0, 9.0))
        app.post_message(FleetSampled(dataclasses.replace(back, replicas=tuple(rows))))
        await wait_for(pilot, lambda: table.cell_text("10.0.0.14:8500", "state") == "up")
        assert table.row_count == 4
        assert 0 < table.cell_updates < 4 * 10
        assert table.cell_text("10.0.0.13:8500", "versions") == "v1 END v2 AVAILABLE"
        # A replica that leaves (a pod gone) leaves the table.
        app.post_message(FleetSampled(dataclasses.replace(back, replicas=tuple(rows[:3]))))
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReplicasScreen))
        # F3 toggles: open again, then F3 closes it.
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplicasScreen))
        await pilot.press("f3")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReplicasScreen))


async def test_slash_replicas_opens_the_view_before_any_sample(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    app = app_factory()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.slash.run_line("/replicas")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplicasScreen))
        screen = app.screen
        assert isinstance(screen, ReplicasScreen)
        app.post_message(FleetSampled(fleet_snapshot()))
        await wait_for(pilot, lambda: screen.table.row_count == 4)
