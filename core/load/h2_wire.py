"""HTTP/2 and gRPC wire pieces for bench's gRPC load client (core.load.http2).

Frame layout and flags (RFC 9113), HPACK literals (RFC 7541) for a request's header block that
never touches the dynamic table, gRPC's length-prefixed message, and how gRPC maps HTTP/2 resets
and HTTP statuses to its status codes.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence

import grpc

from core.client.channel import USER_AGENT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 2, 3, 4, 6, 7, 8, 9
)  # fmt: skip
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 4, 5
DEFAULT_WINDOW = 65_535
MAX_STREAM_ID = 2**31 - 1
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


def unpadded(payload: bytes, flags: int) -> bytes:
    """A DATA or HEADERS payload without its padding."""
    if flags & PADDED and payload:
        return payload[1 : len(payload) - payload[0]]
    return payload
