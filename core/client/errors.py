"""What a failed call means: TF Serving's status code for each client-side failure, and where the
status came from (the server's answer, the transport, or this client).

Codes are gRPC status code names, the ones TF Serving returns, so a user reads the same code
whether the server or this client gave up.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Literal

import grpc

from core.client.batcher import BatcherFull
from core.client.serving import ServingError

# Codes that mean "the server cannot be reached" rather than "the server said no".
UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"})

# Where a failed call's status came from, as load reports tell them apart:
Origin = Literal["server", "transport", "client"]
# The server answered with this status: its handler, or its gRPC or HTTP stack refusing the call
# (TF Serving's INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE "queue full", grpc.aio's
# RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!", any REST reply with an HTTP status).
SERVER: Origin = "server"
# No answer came: the connection could not be made or broke under the call (refused, reset,
# closed, GOAWAY, RST_STREAM, the server shutting down mid-call, a proxy's non-gRPC HTTP status).
# gRPC's C-core (or aiohttp) made the status; no handler answered.
TRANSPORT: Origin = "transport"
# This client gave up or never sent: its own deadline passed, bench cancelled the call (an abort,
# the drain after the run), a client-side queue was full, or a request could not be encoded.
CLIENT: Origin = "client"
ORIGINS: tuple[Origin, ...] = (SERVER, TRANSPORT, CLIENT)

# The details gRPC's C-core gives the statuses it makes itself, checked against grpcio 1.85.3's
# cygrpc (its strings) and these grpc/grpc sources:
# - src/core/load_balancing/round_robin/round_robin.cc (the policy core.client.channel asks for):
#   "connections to all backends failing; last error: ..." when nothing answers the connect
#   (refused, TLS handshake, an HTTP/1 port: "Trying to connect an http1.x server");
#   pick_first.cc's "failed to connect to all addresses; last error: ..."; "empty address list"
#   and "DNS resolution failed" when the name resolves to nothing; with the prefix omitted,
#   "Failed to connect to remote host: ..." from the TCP client.
# - src/core/ext/transport/chttp2/transport/chttp2_transport.cc: a stream ended by its transport's
#   close, "Stream removed (<why>)" (e.g. "Stream removed (Socket closed)" when the server process
#   dies), the transport's own "Socket closed", "Endpoint read failed", "Delayed close due to
#   in-progress write", "Transport destroyed", "GOAWAY received", "Too many pings", "keepalive
#   timeout" ("keepalive watchdog timeout" before the promise-based transport).
# - src/core/ext/transport/chttp2/transport/frame_rst_stream.cc: "Received RST_STREAM with error
#   code N".
# - src/core/ext/filters/http/client/http_client_filter.cc: "Received http2 header with status:
#   N" (an HTTP reply without grpc-status: a proxy or a non-gRPC port answered).
# - src/core/server/server.cc: "Cancelling all calls" (the server stopping with calls in flight,
#   seen by a grpc.aio client as UNAVAILABLE) and "Server Shutdown" (calls not yet handed to a
#   handler when the server shuts down).
# - The OS's own texts that C-core passes on when a socket fails: "Connection reset by peer",
#   "Broken pipe".
# Matched as prefixes: a server's own message that merely mentions one of them stays its answer.
TRANSPORT_DETAILS = (
    "connections to all backends failing",
    "failed to connect to all addresses",
    "empty address list",
    "DNS resolution failed",
    "Failed to connect to remote host",
    "Trying to connect an http1.x server",
    "Stream removed",
    "Socket closed",
    "Endpoint read failed",
    "Endpoint closed during read",
    "Delayed close due to in-progress write",
    "Transport destroyed",
    "Client transport closed",
    "GOAWAY received",
    "Too many pings",
    "keepalive timeout",
    "keepalive watchdog timeout",
    "Received RST_STREAM with error code",
    "Received http2 header with status:",
    "Cancelling all calls",
    "Server Shutdown",
    "Connection reset by peer",
    "Broken pipe",
)
# C-core's own deadline timer on the client ends the call with exactly one of these texts
# (grpcio 1.85.3, a server that never answers; the second on a channel without retries, as load
# workers use); a DEADLINE_EXCEEDED the server sends with its own message (TF Serving's) stays
# the server's answer.
CLIENT_DEADLINE_DETAILS = ("Deadline Exceeded", "Stream removed (Deadline Exceeded)")
# grpc.aio's texts when this process cancels a call or closes its channel (grpc/aio/_call.py;
# C-core's "Channel Destroyed" / "Channel shutdown").
CLIENT_CANCEL_DETAILS = (
    "Locally cancelled by application!",
    "Cancelled upon garbage collection!",
    "Channel Destroyed",
    "Channel shutdown",
)


def is_unreachable(code: str) -> bool:
    """Whether a status code means the server could not be reached (retry later)."""
    return code in UNREACHABLE_CODES


def call_status(error: BaseException) -> tuple[str, str] | None:
    """(code, message) for a failed call; None for an error that is not a call's failure."""
    if isinstance(error, ServingError):
        return error.code, error.message
    if isinstance(error, BatcherFull):
        return "RESOURCE_EXHAUSTED", str(error) or "the chat queue is full"
    if isinstance(error, asyncio.TimeoutError):
        return "DEADLINE_EXCEEDED", "no answer before the deadline"
    if isinstance(error, ValueError):
        return "INVALID_ARGUMENT", str(error)
    return None


def error_code(error: BaseException) -> str:
    """The gRPC status code name that describes a failed send."""
    code = getattr(error, "code", None)
    if isinstance(code, str):
        return code
    if callable(code):
        # grpc.aio.AioRpcError.code() returns a grpc.StatusCode enum.
        with suppress(Exception):
            return str(code().name)
    if isinstance(error, TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(error, BatcherFull):
        return "RESOURCE_EXHAUSTED"
    return "UNKNOWN"


def status_origin(code: str, details: str) -> Origin:
    """Where a gRPC status (code name and details) came from: server, transport or client.

    gRPC gives no flag for it (metadata and debug_error_string are the same either way), but the
    statuses C-core makes itself carry its own fixed texts; every other status is the server's.
    """
    if code == "DEADLINE_EXCEEDED" and details in CLIENT_DEADLINE_DETAILS:
        return CLIENT
    if details.startswith(CLIENT_CANCEL_DETAILS):
        return CLIENT
    if details.startswith(TRANSPORT_DETAILS):
        return TRANSPORT
    return SERVER


def error_origin(error: BaseException) -> Origin:
    """Where a failed send's status came from: "server", "transport" or "client" (see above).

    An error that names its origin (ServingError, core.load.rest's RestCallError) is taken at its
    word; a gRPC status is read by status_origin(); a cancelled send, a timeout and anything else
    raised on this side (a full client queue, a request that cannot be encoded) are the client's.
    """
    named = getattr(error, "origin", None)
    for origin in ORIGINS:
        if named == origin:
            return origin
    if isinstance(error, grpc.aio.AioRpcError):
        return status_origin(error.code().name, error.details() or "")
    if isinstance(error, ServingError):
        return status_origin(error.code, error.message)
    return CLIENT
