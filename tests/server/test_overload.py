"""Overload and connection floods against the real server: excess is shed at once, and counted;
idle REST connections cannot take the descriptors that gRPC and REST need."""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.embedded.launcher import EmbeddedServer
from server.errors import BATCH_QUEUE_FULL_MESSAGE
from tests.fixtures.servers import PROMETHEUS_PATH
from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request

pytestmark = pytest.mark.slow

CONCURRENT_CALLS = 32
ROWS = 1_000_000  # 4 MB per input: each run takes long enough for the others to arrive


async def _flood(server: EmbeddedServer, model: str) -> list[tuple[str, str, float]]:
    """CONCURRENT_CALLS Predicts at once; (code, details, seconds) for each."""
    values = np.ones(ROWS, np.float32)
    if model == "tf2_add":
        request = predict_request(model, a=values, b=values)
    else:
        request = predict_request(model, x=values.reshape(-1, 1))

    async def one(stubs: Stubs) -> tuple[str, str, float]:
        started = time.monotonic()
        try:
            await stubs.prediction.Predict(request, timeout=60)
            return "OK", "", time.monotonic() - started
        except grpc.aio.AioRpcError as error:
            return error.code().name, error.details() or "", time.monotonic() - started

    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)
        return list(await asyncio.gather(*(one(stubs) for _ in range(CONCURRENT_CALLS))))


async def _request_counts(server: EmbeddedServer, model: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(server.rest_url + PROMETHEUS_PATH) as got:
        text = await got.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != ":tensorflow:serving:request_count":
            continue
        for sample in family.samples:
            if sample.labels.get("model_name") == model:
                counts[sample.labels["status"]] = sample.value
    return counts


async def test_unbatched_requests_over_the_inflight_bound_are_shed_and_counted(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "tf2_add", "base_path": saved_models_root / "tf2_add"}],
        flags=["--max_inflight_requests=1"],
    )
    outcomes = await _flood(server, "tf2_add")
    codes = Counter(code for code, _, _ in outcomes)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes["OK"] >= 1 and codes["UNAVAILABLE"] >= 1, codes
    for code, details, seconds in outcomes:
        if code == "UNAVAILABLE":
            assert details == (
                "Server overloaded: 1 requests are running or queued and "
                "--max_inflight_requests is 1; retry later"
            )
            assert seconds < 20  # shed at once, never after the 60 s deadline
    counts = await _request_counts(server, "tf2_add")
    assert counts.get("UNAVAILABLE") == codes["UNAVAILABLE"]
    assert counts.get("OK") == codes["OK"]


async def test_a_full_batch_queue_sheds_with_unavailable_and_counts_it(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}],
        enable_batching=True,
        # One open batch with room for half a task more, waiting 0.5 s: the queue is full.
        batching_parameters={
            "max_batch_size": ROWS * 3 // 2,
            "batch_timeout_micros": 500_000,
            "num_batch_threads": 1,
            "max_enqueued_batches": 1,
        },
    )
    outcomes = await _flood(server, "half_plus_two")
    codes = Counter(code for code, _, _ in outcomes)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes["OK"] >= 1 and codes["UNAVAILABLE"] >= 1, codes
    assert all(
        details.startswith(BATCH_QUEUE_FULL_MESSAGE)
        for code, details, _ in outcomes
        if code == "UNAVAILABLE"
    )
    counts = await _request_counts(server, "half_plus_two")
    assert counts.get("UNAVAILABLE") == codes["UNAVAILABLE"]


# ---- idle REST connections --------------------------------------------------------------------

IDLE_CONNECTIONS = 2000
MAX_CONNECTIONS = 200
IDLE_TIMEOUT_MS = 3000


def _open_half_header_connections(rest_url: str, count: int) -> list[socket.socket]:
    host, port = rest_url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=5)
        try:
            connection.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: tfs\r\n")
        except OSError:
            pass  # already closed by the server to make room: that is the point
        sockets.append(connection)
    return sockets


async def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.2)
    return condition()


async def test_idle_half_header_connections_leave_grpc_and_rest_serving(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit < IDLE_CONNECTIONS + 500:
        pytest.skip(f"this process may open only {soft_limit} files")
    server = start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}],
        flags=[
            f"--rest_api_max_connections={MAX_CONNECTIONS}",
            f"--rest_api_idle_timeout_in_ms={IDLE_TIMEOUT_MS}",
        ],
    )
    assert server.pid is not None
    process = psutil.Process(server.pid)
    descriptors_before = process.num_fds()
    sockets = await asyncio.to_thread(
        _open_half_header_connections, server.rest_url, IDLE_CONNECTIONS
    )
    try:
        # gRPC answers while REST is flooded ...
        async with open_channel(server.grpc_target) as channel:
            request = predict_request("half_plus_two", x=np.array([[2.0]], np.float32))
            response = await Stubs(channel).prediction.Predict(request, timeout=10)
        assert outputs_of(response)["y"].tolist() == [[3.0]]
        # ... and so does REST: a new connection takes the place of an idle one.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.rest_url}/v1/models/half_plus_two:predict",
                json={"instances": [[2.0]]},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as answer,
        ):
            assert answer.status == 200
            assert await answer.json() == {"predictions": [[3.0]]}
        assert process.num_fds() < descriptors_before + MAX_CONNECTIONS + 50
        # Connections that never finish their headers are closed after the idle timeout.
        assert await _wait_for(
            lambda: process.num_fds() < descriptors_before + 20, IDLE_TIMEOUT_MS / 1000 + 15
        ), process.num_fds()
    finally:
        for connection in sockets:
            connection.close()
    log_text = server.log_path.read_text()
    assert len(log_text) < 100_000
    assert log_text.count("REST connection limit reached") <= 25
    assert "Traceback" not in log_text
