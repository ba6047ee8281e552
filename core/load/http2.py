"""bench's gRPC load client: unary Predict calls over HTTP/2 on an asyncio Protocol.

grpc.aio hands each answer from gRPC core's poller thread to the event loop, and runs a task per
call; at 1,000 req/s that costs a load worker over 200 µs of CPU per request. This client writes
each call as one HEADERS and one DATA frame of pre-built bytes and settles a future when the
trailers arrive: the same wire protocol (HTTP/2, HPACK, gRPC's length-prefixed messages,
grpc-timeout, metadata, TLS with ALPN h2) for a load run's one method, nothing else. Each
scheduled request is sent once (no retries), as core.load.worker asks of gRPC too.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from core.client.channel import ClientSettings, tls_client_context
from core.client.targets import split_host_port
from core.load.h2_connection import Connection, GrpcCallError, H2Call
from core.load.h2_wire import CONTINUATION, END_HEADERS, HEADERS, frame, grpc_message, header_block

__all__ = ["GrpcCallError", "GrpcLoadClient", "H2Call", "grpc_message", "supports"]

# A target that refused a connection is tried again after this long (calls meanwhile fail).
RECONNECT_BACKOFF_S = 0.5
# How often deadlines are checked; the server also gets grpc-timeout and stops on its own.
DEADLINE_SWEEP_S = 0.02


def supports(settings: ClientSettings) -> bool:
    """Whether every target is a HOST:PORT this client can dial (else grpc.aio is used)."""
    try:
        for target in settings.targets:
            split_host_port(target)
    except ValueError:
        return False
    return True


class GrpcLoadClient:
    """Unary calls of one method with one request body, round robin over one connection a target."""

    def __init__(
        self,
        settings: ClientSettings,
        method_path: str,
        timeout_s: float,
        answer: Callable[[bytes], Any] = bytes,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.answer = answer  # the call's result from the response message's bytes
        self._addresses = [split_host_port(target) for target in settings.targets]
        tls = settings.tls
        self._ssl = (
            None
            if tls is None
            else tls_client_context(tls.ca_file, tls.cert_file, tls.key_file, alpn=["h2"])
        )
        secure = self._ssl is not None
        metadata = list(settings.headers)
        if settings.bearer_token:
            metadata.append(("authorization", f"Bearer {settings.bearer_token}"))
        host, port = self._addresses[0]
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._block = header_block(method_path, authority, secure, timeout_s, metadata)
        self._connections: list[Connection | None] = [None] * len(self._addresses)
        self._connecting: list[asyncio.Task[None] | None] = [None] * len(self._addresses)
        self._retry_at = [0.0] * len(self._addresses)
        # Calls made while no connection was ready and one was being made: sent once it is.
        self._waiting: list[list[H2Call]] = [[] for _ in self._addresses]
        self._turn = itertools.cycle(range(len(self._addresses)))
        self._deadlines: deque[H2Call] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._last_error = ""

    def headers_frames(self, stream_id: int, max_frame: int) -> bytes:
        """HEADERS (and CONTINUATION frames if the block is larger than a frame)."""
        block = self._block
        if len(block) <= max_frame:
            return frame(HEADERS, END_HEADERS, stream_id, block)
        chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
        frames = [frame(HEADERS, 0, stream_id, chunks[0])]
        frames += [frame(CONTINUATION, 0, stream_id, chunk) for chunk in chunks[1:-1]]
        frames.append(frame(CONTINUATION, END_HEADERS, stream_id, chunks[-1]))
        return b"".join(frames)

    async def connect(self) -> None:
        """Connect to every target now (a target that fails is retried by later calls)."""
        await asyncio.gather(*(self._connect(index) for index in range(len(self._addresses))))

    async def _connect(self, index: int) -> None:
        connection = await self._dial(index)
        waiting, self._waiting[index] = self._waiting[index], []
        for call in waiting:
            if call.done():
                continue
            if connection is None:
                call.fail(
                    "UNAVAILABLE",
                    f"failed to connect to all addresses; last error: {self._last_error}",
                    "transport",
                )
            else:
                call.connection = connection
                connection.start(call)

    async def _dial(self, index: int) -> Connection | None:
        """A new connection to target `index`, or None (the error kept for the calls' details)."""
        host, port = self._addresses[index]
        tls = self.settings.tls
        server_hostname = None
        if self._ssl is not None:
            server_hostname = (tls.server_name_override if tls is not None else None) or host
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: Connection(self), host, port, ssl=self._ssl,
                server_hostname=server_hostname,
            )  # fmt: skip
        except (OSError, ssl.SSLError) as error:
            self._last_error = f"{host}:{port}: Failed to connect to remote host: {error}"
            self._retry_at[index] = time.monotonic() + RECONNECT_BACKOFF_S
            return None
        transport = connection.transport
        if self._ssl is not None:
            protocol = transport.get_extra_info("ssl_object") if transport is not None else None
            if protocol is None or protocol.selected_alpn_protocol() != "h2":
                self._last_error = f"{host}:{port}: the server did not agree to HTTP/2 (ALPN h2)"
                self._retry_at[index] = time.monotonic() + RECONNECT_BACKOFF_S
                if transport is not None:
                    transport.close()
                return None
        if self._closed or not connection.usable:
            if transport is not None:
                transport.close()
            self._last_error = f"{host}:{port}: Socket closed"
            return None
        self._connections[index] = connection
        return connection

    def forget(self, connection: Connection) -> None:
        """Stop sending on a connection that closed, ran out of streams or was told to go away."""
        for index, known in enumerate(self._connections):
            if known is connection:
                self._connections[index] = None

    def call(self, message: bytes) -> H2Call:
        """Start one call with a framed request (grpc_message()); settles with answer(response)."""
        deadline = time.monotonic() + self.timeout_s
        connecting = None
        for _ in range(len(self._addresses)):
            index = next(self._turn)
            connection = self._connections[index]
            if connection is not None and connection.usable:
                call = H2Call(connection, deadline, message)
                connection.start(call)
                self._watch(call)
                return call
            if self._reconnect(index) and connecting is None:
                connecting = index
        if connecting is not None:
            # No connection is ready but one is being made: the call waits for it, as gRPC's
            # calls wait while a channel connects.
            call = H2Call(None, deadline, message)
            self._waiting[connecting].append(call)
            self._watch(call)
            return call
        call = H2Call(None, deadline, b"")
        call.fail(
            "UNAVAILABLE",
            f"failed to connect to all addresses; last error: {self._last_error}",
            "transport",
        )
        return call

    def _reconnect(self, index: int) -> bool:
        """Connect to target `index` again unless it refused lately; whether a connect runs."""
        running = self._connecting[index]
        if running is not None and not running.done():
            return True
        if self._closed or time.monotonic() < self._retry_at[index]:
            return False
        self._connecting[index] = asyncio.ensure_future(self._connect(index))
        return True

    def _watch(self, call: H2Call) -> None:
        self._deadlines.append(call)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(DEADLINE_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        """Fail the calls past their deadline (calls are watched in deadline order)."""
        self._sweeper = None
        deadlines = self._deadlines
        now = time.monotonic()
        while deadlines and (deadlines[0].done() or deadlines[0].deadline <= now):
            call = deadlines.popleft()
            if not call.done():
                call.fail("DEADLINE_EXCEEDED", "Deadline Exceeded", "client")
                if call.connection is not None:
                    call.connection.reset(call)
        if deadlines:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(DEADLINE_SWEEP_S, self._sweep)

    async def close(self) -> None:
        """Close every connection; calls still in flight fail UNAVAILABLE."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for waiting in self._waiting:
            for call in waiting:
                call.fail("UNAVAILABLE", "Channel shutdown", "client")
            waiting.clear()
        for task in self._connecting:
            if task is not None:
                task.cancel()
        for connection in self._connections:
            if connection is not None and connection.transport is not None:
                connection.transport.close()
        self._connections = [None] * len(self._addresses)
        await asyncio.sleep(0)
