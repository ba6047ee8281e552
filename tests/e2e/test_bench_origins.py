"""Overload is visible: a load report tells the server's answers (its shedding) from statuses the
transport or the client made (a frozen, then killed server), against the real embedded server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.client.serving import ClientSettings, ModelSpec
from core.embedded.launcher import EmbeddedServer
from core.load.burst import BurstProgress, BurstRun, BurstTarget
from core.load.spec import LoadSpec
from core.report.model import build_report, load_report
from core.report.text import render_markdown
from tests.e2e.test_bench import bench

pytestmark = pytest.mark.slow

ROWS = 100_000  # 400 KB per input: a run lasts long enough for the other requests to arrive


async def test_an_overloaded_servers_shedding_is_reported_as_its_answer(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path, tmp_path: Path
) -> None:
    server = start_server(
        models=[{"name": "tf2_add", "base_path": saved_models_root / "tf2_add"}],
        flags=["--max_inflight_requests=1"],
    )
    data = tmp_path / "big.json"
    values = [1.0] * ROWS
    data.write_text(json.dumps({"inputs": {"a": values, "b": values}}))
    out = tmp_path / "overload.json"
    code, stdout, stderr = await bench(
        "--target", server.grpc_target, "--model", "tf2_add", "--data", f"@{data}",
        "--concurrency", "8", "--requests", "64", "--warmup", "0", "--out", str(out),
        timeout_s=120,
    )  # fmt: skip
    assert code == 0, stderr
    report = load_report(out)
    shed = report.errors.get("UNAVAILABLE", 0)
    assert shed >= 1 and report.ok >= 1, report.errors
    assert set(report.errors) == {"UNAVAILABLE"}, report.errors
    # Shed at once by the server's own in-flight bound: its answer, not the transport's.
    assert report.error_origins == {"UNAVAILABLE": {"server": shed}}
    assert f"{shed:,} answered by the server" in stdout
    assert f"| UNAVAILABLE | {shed:,} |" in stdout
    if shed * 2 > report.requests:  # most requests failed and no --slo: said on stderr
        assert "exit 0 without --slo" in stderr


async def test_a_frozen_then_killed_server_shows_client_and_transport_failures(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}]
    )
    assert server.pid is not None
    pid = server.pid
    target = BurstTarget(
        ClientSettings(targets=(server.grpc_target,), max_retries=0),
        ModelSpec("half_plus_two"),
        ({"x": np.ones((1, 1), np.float32)},),
    )
    answered = asyncio.Event()

    def on_progress(progress: BurstProgress) -> None:
        if progress.ok >= 20:
            answered.set()

    async def freeze_then_kill() -> None:
        await answered.wait()
        os.kill(pid, signal.SIGSTOP)  # frozen: every call runs into its 0.3 s deadline
        await asyncio.sleep(1.0)
        os.kill(pid, signal.SIGKILL)  # gone: streams dropped, connections refused

    spec = LoadSpec(rate=50, duration_s=3.0, timeout_s=0.3)
    fault = asyncio.ensure_future(freeze_then_kill())
    try:
        result = await BurstRun(spec, target, on_progress=on_progress).run()
        await asyncio.wait_for(fault, 1.0)
    finally:
        fault.cancel()
        if server.state != "exited":
            os.kill(pid, signal.SIGKILL)
    report = build_report(result)
    origins = report.error_origins or {}
    assert report.ok >= 20
    assert origins.get("DEADLINE_EXCEEDED", {}).get("client", 0) >= 5, report.errors
    transport = sum(by_origin.get("transport", 0) for by_origin in origins.values())
    assert transport >= 5, origins
    # Nothing here is an answer from the server.
    assert report.server_errors == 0
    markdown = render_markdown(report)
    assert "given up by the client (its deadline or a cancel)" in markdown
    assert "lost in transport" in markdown
