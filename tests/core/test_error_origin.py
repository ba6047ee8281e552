"""Where a failed call's status came from (core.client.errors.error_origin), on real failures:
a grpc.aio server that answers with a status, a deadline, a closed port, a server stopped
mid-call, and their REST equivalents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import numpy as np
import pytest
from aiohttp import web

from core.client.batcher import BatcherFull
from core.client.errors import (
    CLIENT,
    CLIENT_DEADLINE_DETAILS,
    SERVER,
    TRANSPORT,
    error_code,
    error_origin,
    status_origin,
)
from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError
from core.embedded.launcher import free_loopback_port
from core.load.rest import RestCallError, make_target, rest_session
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401

ROW = {"x": np.ones((1, 3), np.float32)}


async def failed_predict(target: str, timeout_s: float = 5.0) -> ServingError:
    """The ServingError of one Predict to target (no retries)."""
    settings = ClientSettings(targets=(target,), max_retries=0, timeout_s=timeout_s)
    async with ServingClient(settings) as client:
        with pytest.raises(ServingError) as caught:
            await client.predict(ModelSpec("m"), ROW)
    return caught.value


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "The batch scheduling queue to which this task was submitted",
        ),
        (grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x"),
        # The server's own DEADLINE_EXCEEDED keeps its message: still its answer.
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Batch timed out in the queue"),
        # A message that merely mentions a transport text is still the server's.
        (grpc.StatusCode.UNAVAILABLE, "upstream said: Socket closed"),
    ],
)
async def test_a_status_the_server_answers_with_is_the_servers(
    fault_server: FaultServer, code: grpc.StatusCode, message: str
) -> None:
    fault_server.behaviour = Behaviour(error=(code, message), methods=frozenset({"Predict"}))
    error = await failed_predict(fault_server.target)
    assert (error.code, error.message) == (code.name, message)
    assert error_origin(error) == SERVER


async def test_the_clients_own_deadline_is_the_clients(fault_server: FaultServer) -> None:
    fault_server.freeze(2.0)
    error = await failed_predict(fault_server.target, timeout_s=0.2)
    # "Stream removed (Deadline Exceeded)" here: C-core's text on a channel without retries.
    assert error.code == "DEADLINE_EXCEEDED" and error.message in CLIENT_DEADLINE_DETAILS
    assert error_origin(error) == CLIENT


async def test_a_closed_port_is_the_transports() -> None:
    error = await failed_predict(f"127.0.0.1:{free_loopback_port()}")
    assert error.code == "UNAVAILABLE"
    # round_robin's text (core.client.channel's policy): "connections to all backends failing;
    # last error: UNKNOWN: ipv4:127.0.0.1:PORT: Failed to connect to remote host: ..."
    assert "Failed to connect to remote host" in error.message
    assert error_origin(error) == TRANSPORT


async def test_a_server_stopped_mid_call_is_the_transports() -> None:
    async with FaultServer(Behaviour(delay_s=5.0)) as server:
        call = asyncio.ensure_future(failed_predict(server.target))
        while not server.calls_to("Predict"):
            await asyncio.sleep(0.01)
        await server.stop()
        error = await call
    assert (error.code, error.message) == ("UNAVAILABLE", "Cancelling all calls")
    assert error_origin(error) == TRANSPORT


async def test_a_raw_grpc_error_is_read_the_same_way(fault_server: FaultServer) -> None:
    from core.wire import protos

    fault_server.freeze(2.0)
    async with grpc.aio.insecure_channel(fault_server.target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(protos.predict_pb2.PredictRequest(), timeout=0.2)
    assert error_code(caught.value) == "DEADLINE_EXCEEDED"
    assert error_origin(caught.value) == CLIENT


@pytest.mark.parametrize(
    ("code", "details", "origin"),
    [
        # What a grpc.aio client saw when the server process was killed mid-call (grpcio 1.85).
        ("UNAVAILABLE", "Stream removed (Socket closed)", TRANSPORT),
        ("UNAVAILABLE", "failed to connect to all addresses; last error: UNKNOWN: ...", TRANSPORT),
        ("CANCELLED", "Received RST_STREAM with error code 8", TRANSPORT),
        ("UNAVAILABLE", "GOAWAY received", TRANSPORT),
        ("UNIMPLEMENTED", "Received http2 header with status: 404", TRANSPORT),
        ("CANCELLED", "Locally cancelled by application!", CLIENT),
        ("RESOURCE_EXHAUSTED", "Concurrent RPC limit exceeded!", SERVER),
        ("UNAVAILABLE", "", SERVER),
    ],
)
def test_c_cores_own_texts_name_the_transport(code: str, details: str, origin: str) -> None:
    assert status_origin(code, details) == origin


def test_errors_raised_on_this_side_are_the_clients() -> None:
    assert error_origin(TimeoutError()) == CLIENT
    assert error_origin(asyncio.CancelledError()) == CLIENT
    assert error_origin(BatcherFull("full")) == CLIENT
    assert error_origin(ValueError("cannot encode")) == CLIENT
    # An error that names its origin is taken at its word.
    assert error_origin(ServingError("CANCELLED", "closed", origin=CLIENT)) == CLIENT
    assert error_origin(RestCallError("UNAVAILABLE", origin=TRANSPORT)) == TRANSPORT


# ---- REST ------------------------------------------------------------------------------------


@pytest.fixture
async def rest_server() -> AsyncIterator[tuple[str, Callable[[web.Request], Awaitable[object]]]]:
    """An aiohttp server on loopback whose predict handler a test sets; yields its base URL."""
    handler: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    async def predict(request: web.Request) -> web.StreamResponse:
        return await handler["predict"](request)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/models/m:predict", predict)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    def set_handler(function: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        handler["predict"] = function

    yield f"http://127.0.0.1:{port}", set_handler  # type: ignore[misc]
    await runner.cleanup()


async def rest_failure(base_url: str, timeout_s: float = 5.0) -> Exception:
    session, send = await rest_session(make_target(base_url, ModelSpec("m"), [b"{}"]), timeout_s, 1)
    try:
        with pytest.raises(Exception) as caught:
            await send(0)
    finally:
        await session.close()
    assert isinstance(caught.value, Exception)
    return caught.value


async def test_rest_an_http_status_is_the_servers_answer(rest_server: tuple) -> None:
    base_url, set_handler = rest_server

    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"error": "Server overloaded"}, status=503)

    set_handler(overloaded)
    error = await rest_failure(base_url)
    assert (error_code(error), error_origin(error)) == ("UNAVAILABLE", SERVER)


async def test_rest_a_timeout_is_the_clients_and_a_closed_port_the_transports(
    rest_server: tuple,
) -> None:
    base_url, set_handler = rest_server

    async def frozen(request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.json_response({})

    set_handler(frozen)
    error = await rest_failure(base_url, timeout_s=0.2)
    assert (error_code(error), error_origin(error)) == ("DEADLINE_EXCEEDED", CLIENT)
    error = await rest_failure(f"http://127.0.0.1:{free_loopback_port()}")
    assert (error_code(error), error_origin(error)) == ("UNAVAILABLE", TRANSPORT)
