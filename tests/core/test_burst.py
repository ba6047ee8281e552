"""Load runs across worker processes (core.load.burst): merged results, abort, no orphans."""

from __future__ import annotations

import asyncio

import numpy as np
import psutil
import pytest

from core.client.serving import ClientSettings, ModelSpec
from core.load.burst import BurstError, BurstProgress, BurstRun, BurstTarget
from core.load.spec import LoadSpec
from core.report.model import REPORT_FIELDS, build_report, validate_report
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401

ROW = {"x": np.ones((1, 3), np.float32)}


def target_of(
    server: FaultServer, inputs: tuple[dict[str, np.ndarray], ...] = (ROW,)
) -> BurstTarget:
    settings = ClientSettings(targets=(server.target,), max_retries=0)
    return BurstTarget(settings, ModelSpec("m"), inputs)


def children_alive(pids: list[int]) -> list[int]:
    return [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]


async def test_two_workers_share_an_open_loop_run_exactly(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(served_version=3)
    updates: list[BurstProgress] = []
    spec = LoadSpec(rate=200, duration_s=1.0, workers=2)
    run = BurstRun(spec, target_of(fault_server), on_progress=updates.append)
    result = await run.run()
    totals = result.totals
    assert totals.issued == totals.finished == totals.ok == 200
    assert dict(totals.versions) == {3: 200}
    assert len(fault_server.calls_to("Predict")) == 200
    assert result.load_phase_s == pytest.approx(1.0, abs=0.25)
    assert result.offered_rps == 200
    assert updates and updates[-1].state == "done" and updates[-1].issued == 200
    assert children_alive(run.pids) == []
    # The console's burst panel reads the same traffic from run.stats.
    assert run.stats.snapshot().requests_total == 200


async def test_the_report_of_a_run_has_every_field_and_validates(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(served_version=3)
    result = await BurstRun(LoadSpec(rate=100, duration_s=0.5), target_of(fault_server)).run()
    report = build_report(result)
    document = report.model_dump(mode="json")
    assert set(REPORT_FIELDS) <= set(document)
    assert validate_report(report.to_json()) == report
    assert document["mode"] == "open" and document["offered_rps"] == 100
    assert document["requests"] == document["ok"] == 50
    assert document["versions"] == {"3": 50}
    assert set(document["latency_ms"]) == {"p50", "p90", "p95", "p99", "p999", "max", "mean"}
    assert document["latency_ms"]["p50"] <= document["latency_ms"]["p99"]


async def test_a_frozen_server_shows_in_the_reported_p99(fault_server: FaultServer) -> None:
    async def freeze_midway() -> None:
        while len(fault_server.calls_to("Predict")) < 100:  # 0.5 s into the run
            await asyncio.sleep(0.01)
        fault_server.freeze(1.0)

    freezer = asyncio.ensure_future(freeze_midway())
    spec = LoadSpec(rate=200, duration_s=2.0)
    result = await BurstRun(spec, target_of(fault_server)).run()
    await freezer
    report = build_report(result)
    assert report.ok == report.requests == 400
    assert report.latency_ms.p99 is not None and report.latency_ms.p99 > 700
    assert report.latency_ms.p50 is not None and report.latency_ms.p50 < 300


async def test_closed_loop_with_client_batching_merges_rows(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(delay_s=0.01)
    spec = LoadSpec(
        mode="closed", rate=None, concurrency=16, duration_s=None, requests=160, batch_size=8
    )
    result = await BurstRun(spec, target_of(fault_server)).run()
    report = build_report(result)
    assert report.requests == report.ok == 160
    assert report.batch.size_mean is not None and report.batch.size_mean > 1
    assert len(fault_server.calls_to("Predict")) < 160
    assert report.offered_rps is None and report.mode == "closed"


async def test_abort_keeps_the_partial_result_and_leaves_no_processes(
    fault_server: FaultServer,
) -> None:
    spec = LoadSpec(rate=100, duration_s=60.0, workers=2)
    run = BurstRun(spec, target_of(fault_server))
    task = asyncio.ensure_future(run.run())
    for _ in range(3000):
        if run.progress().issued >= 20:
            break
        await asyncio.sleep(0.01)
    pids = run.pids
    assert len(pids) == 2 and children_alive(pids) == pids
    run.abort()
    result = await asyncio.wait_for(task, timeout=15)
    assert result.aborted
    assert 20 <= result.totals.issued < 6000
    assert result.totals.finished == result.totals.issued
    assert children_alive(pids) == []
    assert psutil.Process().children(recursive=True) == []
    assert build_report(result).aborted


async def test_cancelling_a_run_stops_its_workers(fault_server: FaultServer) -> None:
    run = BurstRun(LoadSpec(rate=50, duration_s=60.0), target_of(fault_server))
    task = asyncio.ensure_future(run.run())
    while not run.pids or run.progress().issued < 5:
        await asyncio.sleep(0.01)
    pids = run.pids
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children_alive(pids) == []


async def test_a_worker_that_fails_is_reported_with_its_reason(fault_server: FaultServer) -> None:
    ragged = ({"x": np.array([{"not": "a tensor"}], dtype=object)},)
    with pytest.raises(BurstError, match="worker 0"):
        await BurstRun(LoadSpec(rate=10, duration_s=1.0), target_of(fault_server, ragged)).run()


async def test_server_errors_are_counted_by_status_code(fault_server: FaultServer) -> None:
    import grpc

    fault_server.behaviour = Behaviour(error=(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"))
    result = await BurstRun(LoadSpec(rate=100, duration_s=0.3), target_of(fault_server)).run()
    assert dict(result.totals.errors) == {"RESOURCE_EXHAUSTED": 30}
    assert result.totals.ok == 0
    # The worker sends where each status came from with its code: here, the server's answer.
    assert result.totals.errors_by_origin() == {"RESOURCE_EXHAUSTED": {"server": 30}}
    assert build_report(result).error_origins == {"RESOURCE_EXHAUSTED": {"server": 30}}
