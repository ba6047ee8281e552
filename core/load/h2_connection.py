"""One HTTP/2 connection of bench's gRPC load client: calls as streams, settled as futures.

The connection writes each call's HEADERS and DATA, keeps HTTP/2's flow control and stream limits,
answers SETTINGS and PING, reads HEADERS (hpack), DATA, RST_STREAM and GOAWAY, and settles each
call's future from its trailers. core.load.http2's GrpcLoadClient owns the connections.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast
from urllib.parse import unquote

from hpack import Decoder

from core.client.errors import status_origin
from core.client.serving import ServingError
from core.load.h2_wire import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    HTTP_CODES,
    MAX_STREAM_ID,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    RST_CODES,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    STATUS_NAMES,
    WINDOW_UPDATE,
    frame,
    unpadded,
)

# What this client lets the server send before a WINDOW_UPDATE: responses never wait on it.
RECEIVE_WINDOW = 2**30


class Owner(Protocol):
    """What a connection needs of the client that owns it."""

    answer: Callable[[bytes], Any]

    def headers_frames(self, stream_id: int, max_frame: int) -> bytes:
        """The HEADERS (and CONTINUATION) frames of a call on stream_id."""
        ...

    def forget(self, connection: Connection) -> None:
        """Stop sending new calls on connection."""
        ...


class GrpcCallError(ServingError):
    """A failed call: a ServingError that always names where its status came from.

    origin (core.client.errors): "server" for a grpc-status the server sent, "transport" when the
    connection failed or the stream was reset, "client" for this client's deadline or cancel.
    The details of the statuses this client makes are C-core's texts for the same cases.
    """

    def __init__(self, code: str, details: str, origin: str) -> None:
        super().__init__(code, details, origin)

    @property
    def details(self) -> str:
        """The status's details (grpc.aio's name for ServingError's message)."""
        return self.message


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

    def __init__(self, connection: Connection | None, deadline: float, message: bytes) -> None:
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


class Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying calls as streams."""

    def __init__(self, client: Owner) -> None:
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
                call.body += unpadded(payload, flags)
                if flags & END_STREAM:
                    self._finish(call, {})
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                payload = unpadded(payload, flags)
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
