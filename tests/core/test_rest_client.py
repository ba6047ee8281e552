"""bench's REST load client (core.load.http1 under core.load.rest) against real HTTP servers:
aiohttp's server for statuses, chunked and closing answers, resets, timeouts, limits and mTLS,
and raw asyncio servers for answers aiohttp would not send (a body to the end of the connection,
bytes that are not HTTP)."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from core.client.errors import CLIENT, SERVER, TRANSPORT, error_code, error_origin
from core.embedded.launcher import free_loopback_port
from core.load.generator import LoadGenerator
from core.load.http1 import Http1Pool, build_request
from core.load.rest import RestCallError, make_target, rest_session
from core.load.spec import parse_schedule
from core.metrics.load import LoadRecorder, LoadTotals, summarize_ms
from core.wire.model_spec import ModelSpec
from tests.fixtures.tls_certificates import make_test_certificates

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp app on loopback: predict runs the handler a test sets; it counts what came."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.peers: set[object] = set()
        self.base_url = ""

    async def predict(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        if self.handler is None:
            return web.json_response({"predictions": [[2.5]]})
        return await self.handler(request)


async def _start(server: Server, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/models/m:predict", server.predict)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    server.base_url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    return runner


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served = Server()
    runner = await _start(served)
    yield served
    await runner.cleanup()


async def _outcomes(
    base_url: str, sends: int = 1, *, timeout_s: float = 5.0, limit: int = 1, **target: object
) -> list[tuple[str, str | None]]:
    """(code, origin) of each of `sends` concurrent sends: ("OK", None) for a success."""
    pool, send = await rest_session(
        make_target(base_url, ModelSpec("m"), [b'{"instances": [[1.0]]}'], **target),  # type: ignore[arg-type]
        timeout_s,
        limit,
    )
    try:
        results = await asyncio.gather(*(send(i) for i in range(sends)), return_exceptions=True)
    finally:
        await pool.close()
    return [
        ("OK", None)
        if not isinstance(result, BaseException)
        else (error_code(result), error_origin(result))
        for result in results
    ]


async def test_posts_the_body_with_the_headers_and_reuses_one_connection(server: Server) -> None:
    outcomes = await _outcomes(
        server.base_url,
        sends=5,
        headers=[("X-Trace", "abc")],
        bearer_token="s3cret",
    )
    assert outcomes == [("OK", None)] * 5
    assert server.bodies == [b'{"instances": [[1.0]]}'] * 5
    first = server.headers[0]
    assert first["Content-Type"] == "application/json"
    assert first["X-Trace"] == "abc" and first["Authorization"] == "Bearer s3cret"
    assert first["Host"] == server.base_url.removeprefix("http://")
    assert len(server.peers) == 1  # limit 1: every send on the same keep-alive connection


async def test_without_a_limit_concurrent_sends_open_connections_and_keep_them(
    server: Server,
) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    server.handler = slow
    pool = Http1Pool(server.base_url, timeout_s=5.0, limit=0)
    post = pool.sender([build_request("POST", server.base_url + "/v1/models/m:predict", (), b"{}")])
    sends = [asyncio.ensure_future(post(i)) for i in range(3)]
    while len(server.bodies) < 3:
        await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*sends) == [200, 200, 200]
    assert pool.connections == 3
    assert await post(3) == 200 and pool.connections == 3  # reused, not a fourth
    await pool.close()


@pytest.mark.parametrize(
    ("status", "code"), [(503, "UNAVAILABLE"), (400, "INVALID_ARGUMENT"), (404, "NOT_FOUND")]
)
async def test_an_http_status_is_the_servers_answer(server: Server, status: int, code: str) -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=status)

    server.handler = failing
    # The connection stays usable after an error status: the second send is answered too.
    assert await _outcomes(server.base_url, sends=2) == [(code, SERVER)] * 2
    assert len(server.peers) == 1


async def test_a_chunked_answer_and_one_that_closes_the_connection_are_read(
    server: Server,
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(3):
            await response.write(b'{"predictions": [[2.5]]}' * 100)
        await response.write_eof()
        return response

    server.handler = chunked
    assert await _outcomes(server.base_url, sends=2) == [("OK", None)] * 2

    async def closing(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Connection": "close"})

    server.handler = closing
    server.peers.clear()
    assert await _outcomes(server.base_url, sends=3) == [("OK", None)] * 3
    assert len(server.peers) == 3  # each answer closed its connection: a new one per send


async def test_a_reset_mid_answer_is_the_transports_and_a_timeout_the_clients(
    server: Server,
) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"{")
        assert request.transport is not None
        request.transport.abort()
        return response

    server.handler = reset
    assert await _outcomes(server.base_url) == [("UNAVAILABLE", TRANSPORT)]

    async def frozen(request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.json_response({})

    server.handler = frozen
    assert await _outcomes(server.base_url, timeout_s=0.2) == [("DEADLINE_EXCEEDED", CLIENT)]
    refused = f"http://127.0.0.1:{free_loopback_port()}"
    assert await _outcomes(refused) == [("UNAVAILABLE", TRANSPORT)]


async def _raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    """A server that reads a request head, writes `answer` and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    raw = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    return raw, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        # No Content-Length, not chunked: the body runs to the end of the connection.
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}", ("OK", None)),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n{}", ("UNAVAILABLE", SERVER)),
        # A body cut short of its Content-Length, and bytes that are not HTTP.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", ("UNAVAILABLE", TRANSPORT)),
        (b"SSH-2.0-OpenSSH_9.2\r\n", ("UNAVAILABLE", TRANSPORT)),
    ],
)
async def test_answers_aiohttp_would_not_send(answer: bytes, outcome: tuple) -> None:
    raw, base_url = await _raw_server(answer)
    try:
        pool = Http1Pool(base_url, timeout_s=5.0, limit=1)
        post = pool.sender([build_request("POST", base_url + "/v1/models/m:predict", (), b"{}")])
        try:
            status: object = await post(0)
        except Exception as error:
            status = error
        await pool.close()
        if outcome == ("OK", None):
            assert status == 200
        elif outcome[1] == SERVER:
            assert status == 503
        else:
            assert isinstance(status, ConnectionError)
        # Through rest_session the same answers map to bench's codes and origins.
        assert await _outcomes(base_url) == [outcome]
    finally:
        raw.close()
        await raw.wait_closed()


async def test_mtls_with_a_server_name_override(tmp_path: Path) -> None:
    certificates = make_test_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certificates.ca_file)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    served = Server()
    runner = await _start(served, context)
    try:
        tls = SimpleNamespace(
            ca_file=certificates.ca_file,
            cert_file=certificates.client_cert,
            key_file=certificates.client_key,
            server_name_override="tfs.test",
        )
        assert await _outcomes(served.base_url, sends=2, tls=tls) == [("OK", None)] * 2
        # Without the override the certificate (localhost, tfs.test) does not name 127.0.0.1.
        unnamed = SimpleNamespace(**{**vars(tls), "server_name_override": None})
        assert await _outcomes(served.base_url, tls=unnamed) == [("UNAVAILABLE", TRANSPORT)]
        # Without a client certificate the server refuses the handshake.
        anonymous = SimpleNamespace(**{**vars(tls), "cert_file": None, "key_file": None})
        assert (await _outcomes(served.base_url, tls=anonymous))[0][1] == TRANSPORT
    finally:
        await runner.cleanup()


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        build_request("POST", "http://h/p", [("X-A", "1\r\nX-B: 2")], b"")
    assert build_request("POST", "http://h:1/p?q=1", [("X-A", "1")], b"ab") == (
        b"POST /p?q=1 HTTP/1.1\r\nHost: h:1\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nab"
    )


def test_rest_call_error_keeps_code_and_origin() -> None:
    error = RestCallError("UNAVAILABLE", origin=TRANSPORT)
    assert (error.code, error.origin) == ("UNAVAILABLE", TRANSPORT)


# ---- under the load generator: a send that returns a future is settled by a callback ----------


async def _generator_run(
    base_url: str, *, closed: int | None = None, abort_after_s: float | None = None
) -> LoadTotals:
    pool, send = await rest_session(
        make_target(base_url, ModelSpec("m"), [b'{"ok": 1}', b'{"fail": 1}']), 5.0, 0
    )
    recorder = LoadRecorder()
    generator = LoadGenerator(send, recorder, timeout_s=5.0)
    start_at = time.monotonic() + 0.01
    if abort_after_s is not None:
        asyncio.get_running_loop().call_later(abort_after_s, generator.abort)
    try:
        if closed is not None:
            await generator.closed_loop(closed, start_at=start_at, max_requests=40)
        else:
            offsets = parse_schedule("const", 400, None).offsets()
            await generator.open_loop(itertools.islice(offsets, 40), start_at=start_at)
    finally:
        await pool.close()
    totals = LoadTotals()
    totals.add(recorder.take_delta(done=True))
    return totals


@pytest.mark.parametrize("closed", [None, 3])
async def test_the_generator_counts_each_answer_of_a_future_send(
    server: Server, closed: int | None
) -> None:
    async def half_failing(request: web.Request) -> web.Response:
        failing = b"fail" in server.bodies[-1]
        return web.json_response({}, status=503 if failing else 200)

    server.handler = half_failing
    totals = await _generator_run(server.base_url, closed=closed)
    assert totals.issued == totals.finished == 40 and totals.in_flight == 0
    assert totals.ok == 20 and dict(totals.errors) == {"UNAVAILABLE": 20}
    assert dict(totals.error_origins) == {("UNAVAILABLE", SERVER): 20}
    assert summarize_ms(totals.corrected)["max"] is not None


async def test_future_sends_in_flight_at_an_abort_are_cancelled_as_the_clients(
    server: Server,
) -> None:
    async def frozen(request: web.Request) -> web.Response:
        await asyncio.sleep(3.0)
        return web.json_response({})

    server.handler = frozen
    totals = await _generator_run(server.base_url, abort_after_s=0.05)
    assert 0 < totals.issued < 40 and totals.finished == totals.issued and totals.ok == 0
    assert dict(totals.error_origins) == {("CANCELLED", CLIENT): totals.issued}
