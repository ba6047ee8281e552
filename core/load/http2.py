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
import base64
import itertools
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import grpc
from hpack import Decoder

from core.client.channel import USER_AGENT, ClientSettings
from core.client.errors import status_origin
from core.client.targets import split_host_port

__all__ = ["GrpcCallError", "GrpcLoadClient", "H2Call", "grpc_message", "supports"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 2, 3, 4, 6, 7, 8, 9
)  # fmt: skip
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 4, 5
DEFAULT_WINDOW = 65_535
# What this client lets the server send before a WINDOW_UPDATE: responses never wait on it.
RECEIVE_WINDOW = 2**30
MAX_STREAM_ID = 2**31 - 1
# A target that refused a connection is tried again after this long (calls meanwhile fail).
RECONNECT_BACKOFF_S = 0.5
# How often deadlines are checked; the server also gets grpc-timeout and stops on its own.
DEADLINE_SWEEP_S = 0.02
# (length << 8 | type, flags, stream id): the 9-byte frame header.
FRAME_HEADER = struct.Struct(">IBI")
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# HTTP/2 RST_STREAM codes as gRPC reads them (gRPC's PROTOCOL-HTTP2.md).
RST_CODES = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}
# An HTTP status without grpc-status, as gRPC maps it (gRPC's http-grpc-status-mapping.md).
HTTP_CODES = {
    400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
    429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE",
}  # fmt: skip


class GrpcCallError(Exception):
    """A failed call: its gRPC status code name, details, and where the status came from.

    origin (core.client.errors): "server" for a grpc-status the server sent, "transport" when the
    connection failed or the stream was reset, "client" for this client's deadline or cancel.
    The details of the statuses this client makes are C-core's texts for the same cases.
    """

    def __init__(self, code: str, details: str, origin: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details
        self.origin = origin

    def __str__(self) -> str:
        return f"{self.code}: {self.details}"


def supports(settings: ClientSettings) -> bool:
    """Whether every target is a HOST:PORT this client can dial (else grpc.aio is used)."""
    try:
        for target in settings.targets:
            split_host_port(target)
    except ValueError:
        return False
    return True


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541, 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A header as a literal without indexing, new name, no Huffman (RFC 7541, 6.2.2)."""
    name_bytes, value_bytes = name.encode(), value.encode()
    return (
        b"\x00"
        + _integer(len(name_bytes), 7)
        + name_bytes
        + _integer(len(value_bytes), 7)
        + value_bytes
    )


def header_block(
    path: str, authority: str, secure: bool, timeout_s: float, metadata: Sequence[tuple[str, str]]
) -> bytes:
    """The HEADERS block of every call: no dynamic table, so it is the same bytes each time."""
    timeout_ms = max(1, min(int(timeout_s * 1000), 99_999_999))
    block = b"\x83" + (b"\x87" if secure else b"\x86")  # :method POST, :scheme https/http
    fields = [
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", f"{timeout_ms}m"),
        ("user-agent", USER_AGENT),
    ]
    for key, value in metadata:
        if key.endswith("-bin"):
            value = base64.b64encode(value.encode()).decode()
        fields.append((key.lower(), value))
    return block + b"".join(_literal(name, value) for name, value in fields)


def grpc_message(request: bytes) -> bytes:
    """A serialized request as gRPC's length-prefixed message (not compressed)."""
    return b"\x00" + struct.pack(">I", len(request)) + request


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return FRAME_HEADER.pack(len(payload) << 8 | kind, flags, stream_id) + payload


class H2Call(asyncio.Future[Any]):
    """One call's answer (what the client's `answer` makes of the response) or GrpcCallError.

    Cancelling it resets the stream.
    """

    __slots__ = (
        "body",
        "connection",
        "deadline",
        "headers_seen",
        "message",
        "stream_id",
        "window",
    )  # fmt: skip

    def __init__(self, connection: _Connection | None, deadline: float, message: bytes) -> None:
        super().__init__()
        self.connection = connection
        self.stream_id = 0
        self.deadline = deadline
        self.message = message  # what is still to be sent: the framed request, then less
        self.body = bytearray()
        self.headers_seen = False
        self.window = 0

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel and reset the stream."""
        cancelled = super().cancel(msg)
        if cancelled and self.connection is not None:
            self.connection.reset(self)
        return cancelled

    def fail(self, code: str, details: str, origin: str) -> None:
        """Settle with a GrpcCallError unless already settled."""
        if not self.done():
            self.set_exception(GrpcCallError(code, details, origin))


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying calls as streams."""

    def __init__(self, client: GrpcLoadClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.streams: dict[int, H2Call] = {}
        self.next_stream_id = 1
        self.decoder = Decoder()
        self.decoded: dict[bytes, dict[bytes, bytes]] = {}
        self.header_stream = 0
        self.header_flags = 0
        self.header_fragments = bytearray()
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 16_384
        self.max_streams = MAX_STREAM_ID
        self.blocked: deque[H2Call] = deque()  # calls waiting for a stream slot or window
        self.received_unacknowledged = 0
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_ENABLE_PUSH, 0,
            SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW,
            SETTINGS_HEADER_TABLE_SIZE, 4096,
        )  # fmt: skip
        window = struct.pack(">I", RECEIVE_WINDOW - DEFAULT_WINDOW)
        preface = PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, window)
        self.transport.write(preface)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        details = "Socket closed" if exc is None else f"Socket closed ({exc})"
        for call in list(self.streams.values()) + list(self.blocked):
            call.fail("UNAVAILABLE", details, "transport")
        self.streams.clear()
        self.blocked.clear()
        self.client.forget(self)

    def start(self, call: H2Call) -> None:
        """Open a stream for call and send it, or queue it until a stream slot is free."""
        if self.blocked or len(self.streams) >= self.max_streams:
            self.blocked.append(call)
            return
        self._open(call)

    def _open(self, call: H2Call) -> None:
        assert self.transport is not None
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        if self.next_stream_id > MAX_STREAM_ID:
            self.usable = False  # stream ids run out: new calls go to a new connection
        call.stream_id = stream_id
        call.window = self.peer_initial_window
        self.streams[stream_id] = call
        headers = self.client.headers_frames(stream_id, self.peer_max_frame)
        message = call.message
        size = len(message)
        if size <= self.send_window and size <= call.window and size <= self.peer_max_frame:
            # The usual call: HEADERS and one DATA frame in one write (one segment).
            self.send_window -= size
            call.window -= size
            call.message = b""
            self.transport.write(headers + frame(DATA, END_STREAM, stream_id, message))
            return
        self.transport.write(headers)
        self._send_data(call)

    def _send_data(self, call: H2Call) -> bool:
        """Send what flow control allows of call's DATA; False when some must wait."""
        assert self.transport is not None
        rest = call.message
        frames = []
        while rest:
            size = min(len(rest), self.send_window, call.window, self.peer_max_frame)
            if size <= 0:
                break
            chunk, rest = rest[:size], rest[size:]
            self.send_window -= size
            call.window -= size
            frames.append(frame(DATA, 0 if rest else END_STREAM, call.stream_id, chunk))
        if frames:
            self.transport.write(b"".join(frames))
        call.message = rest
        if rest:
            if call not in self.blocked:
                self.blocked.append(call)
            return False
        return True

    def _unblock(self) -> None:
        while self.blocked:
            call = self.blocked[0]
            if call.done():
                self.blocked.popleft()
                continue
            if call.stream_id == 0:
                if len(self.streams) >= self.max_streams:
                    return
                self.blocked.popleft()
                self._open(call)
                if call.message:  # its DATA waits for window, ahead of the calls behind it
                    self.blocked.remove(call)
                    self.blocked.appendleft(call)
                    return
            elif self._send_data(call):
                self.blocked.popleft()
            else:
                return

    def reset(self, call: H2Call) -> None:
        """Reset a settled call's stream (RST_STREAM CANCEL) and forget it."""
        if call.stream_id and self.streams.pop(call.stream_id, None) is not None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame(RST_STREAM, 0, call.stream_id, struct.pack(">I", 8)))
        self._unblock()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position, size = 0, len(buffer)
        while size - position >= 9:
            length_kind, flags, stream_id = FRAME_HEADER.unpack_from(buffer, position)
            length = length_kind >> 8
            end = position + 9 + length
            if end > size:
                break
            payload = bytes(buffer[position + 9 : end])
            position = end
            self._frame(length_kind & 0xFF, flags, stream_id & MAX_STREAM_ID, payload)
        del buffer[:position]
        if self.received_unacknowledged > RECEIVE_WINDOW // 2 and self.transport is not None:
            increment = struct.pack(">I", self.received_unacknowledged)
            self.transport.write(frame(WINDOW_UPDATE, 0, 0, increment))
            self.received_unacknowledged = 0

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == DATA:
            self.received_unacknowledged += len(payload)
            call = self.streams.get(stream_id)
            if call is not None:
                call.body += _unpadded(payload, flags)
                if flags & END_STREAM:
                    self._finish(call, {})
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                payload = _unpadded(payload, flags)
                if flags & PRIORITY_FLAG:
                    payload = payload[5:]
                self.header_stream, self.header_flags = stream_id, flags
                self.header_fragments = bytearray(payload)
            else:
                self.header_fragments += payload
            if flags & END_HEADERS:
                self._headers()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload[:4])
            if stream_id == 0:
                self.send_window += increment & MAX_STREAM_ID
            elif (call := self.streams.get(stream_id)) is not None:
                call.window += increment & MAX_STREAM_ID
            self._unblock()
        elif kind == PING:
            if not flags & ACK and self.transport is not None:
                self.transport.write(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            call = self.streams.pop(stream_id, None)
            if call is not None:
                (error,) = struct.unpack(">I", payload[:4])
                code = RST_CODES.get(error, "INTERNAL")
                call.fail(code, f"Received RST_STREAM with error code {error}", "transport")
                self._unblock()
        elif kind == GOAWAY:
            last_stream_id = struct.unpack(">I", payload[:4])[0] & MAX_STREAM_ID
            self.usable = False
            self.client.forget(self)
            for sid in [sid for sid in self.streams if sid > last_stream_id]:
                self.streams.pop(sid).fail("UNAVAILABLE", "GOAWAY received", "transport")
            for call in self.blocked:
                call.fail("UNAVAILABLE", "GOAWAY received", "transport")
            self.blocked.clear()
            if not self.streams and self.transport is not None:
                self.transport.close()

    def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for call in self.streams.values():
                    call.window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                pass  # this client's header blocks never use the dynamic table
        if self.transport is not None:
            self.transport.write(frame(SETTINGS, ACK, 0))
        self._unblock()

    def _decode(self, block: bytes) -> dict[bytes, bytes]:
        """A header block's fields; every block is decoded in order (HPACK's table follows them).

        A block that leaves the dynamic table as it was (all references, as a server's repeated
        answers are) decodes the same way until the table changes, so it is remembered until then.
        """
        known = self.decoded.get(block)
        if known is not None:
            return known
        table = self.decoder.header_table
        before = (len(table.dynamic_entries), table.maxsize)
        first = table.dynamic_entries[0] if table.dynamic_entries else None
        fields = dict(self.decoder.decode(block, raw=True))
        after = (len(table.dynamic_entries), table.maxsize)
        if after == before and (table.dynamic_entries[0] if after[0] else None) is first:
            self.decoded[block] = fields
        else:
            self.decoded.clear()
        return fields

    def _headers(self) -> None:
        fields = self._decode(bytes(self.header_fragments))
        self.header_fragments = bytearray()
        call = self.streams.get(self.header_stream)
        if call is None:
            return
        if not call.headers_seen:
            call.headers_seen = True
            status = fields.get(b":status", b"200")
            if status != b"200" and b"grpc-status" not in fields:
                http_status = int(status)
                call.fail(
                    HTTP_CODES.get(http_status, "UNKNOWN"),
                    f"Received http2 header with status: {http_status}",
                    "transport",
                )
                self.reset(call)
                return
        if self.header_flags & END_STREAM:
            self._finish(call, fields)

    def _finish(self, call: H2Call, trailers: dict[bytes, bytes]) -> None:
        self.streams.pop(call.stream_id, None)
        if self.blocked:
            self._unblock()
        if not self.usable and not self.streams and self.transport is not None:
            self.transport.close()
        if call.done():
            return
        status = trailers.get(b"grpc-status")
        if status is None:
            call.fail("INTERNAL", "Server closed the stream without grpc-status", "transport")
        elif status != b"0":
            code = STATUS_NAMES.get(int(status), "UNKNOWN")
            details = unquote(trailers.get(b"grpc-message", b"").decode("utf-8", "replace"))
            # C-core's own texts (a server stopping mid-call) name the transport, as for grpc.aio.
            call.fail(code, details, status_origin(code, details))
        else:
            body = call.body
            if len(body) < 5 or body[0] != 0:
                call.fail("INTERNAL", "Unexpected response message framing", "transport")
            else:
                try:
                    call.set_result(self.client.answer(bytes(body[5:])))
                except Exception as error:  # a response that does not parse
                    call.fail("INTERNAL", f"Failed to parse the response: {error}", "client")


def _unpadded(payload: bytes, flags: int) -> bytes:
    if flags & PADDED and payload:
        return payload[1 : len(payload) - payload[0]]
    return payload


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
        self._ssl = _ssl_context(settings) if settings.tls is not None else None
        secure = self._ssl is not None
        metadata = list(settings.headers)
        if settings.bearer_token:
            metadata.append(("authorization", f"Bearer {settings.bearer_token}"))
        host, port = self._addresses[0]
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._block = header_block(method_path, authority, secure, timeout_s, metadata)
        self._connections: list[_Connection | None] = [None] * len(self._addresses)
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

    async def _dial(self, index: int) -> _Connection | None:
        """A new connection to target `index`, or None (the error kept for the calls' details)."""
        host, port = self._addresses[index]
        tls = self.settings.tls
        server_hostname = None
        if self._ssl is not None:
            server_hostname = (tls.server_name_override if tls is not None else None) or host
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(self), host, port, ssl=self._ssl,
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

    def forget(self, connection: _Connection) -> None:
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


def _ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    """TLS with the settings' CA (or the system's roots) and client certificate, ALPN h2."""
    tls = settings.tls
    assert tls is not None
    ca_file = None if tls.ca_file is None else str(Path(tls.ca_file).expanduser())
    context = ssl.create_default_context(cafile=ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(
            str(Path(tls.cert_file).expanduser()), str(Path(tls.key_file).expanduser())
        )
    context.set_alpn_protocols(["h2"])
    return context
