"""A bound on open REST connections, so idle clients cannot use up the process's descriptors.

aiohttp closes a connection whose request headers or next keep-alive request do not arrive
within its keepalive_timeout (counted from the accept, so a client trickling half a header is
closed too). On top of that, this site keeps at most max_connections open: at the bound a new
connection closes the oldest one that has no request in progress, or, when every connection is
busy, is answered 503 and closed. gRPC has its own sockets and keeps serving either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("deepchat_tfs.server.rest")

_BUSY_BODY = b'{"error": "Too many open connections; retry later"}\n'
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class _Refused(asyncio.Protocol):
    """A connection over the bound: answer 503 and close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


def _is_idle(handler: Any) -> bool:
    """A connection waiting for its (next) request, not reading or answering one."""
    return getattr(handler, "_current_request", None) is None


class ConnectionGuard:
    """The protocol factory of the REST listener: aiohttp's, bounded to max_connections.

    asyncio calls the factory for a burst of accepted sockets before any of them is connected,
    so connections handed out but not yet connected are counted as pending.
    """

    def __init__(self, server: web.Server, max_connections: int) -> None:
        self._server = server
        self.max_connections = max_connections
        self._pending = 0
        self.evicted = 0
        self.refused = 0

    def _settle(self) -> None:
        self._pending -= 1

    def __call__(self) -> asyncio.BaseProtocol:
        # A handler whose transport is gone is closing; it no longer holds a descriptor.
        open_handlers = [
            handler for handler in self._server.connections if handler.transport is not None
        ]
        if len(open_handlers) + self._pending >= self.max_connections:
            idle = next((handler for handler in open_handlers if _is_idle(handler)), None)
            if idle is None:
                self.refused += 1
                log.warning(
                    "REST connection limit reached (--rest_api_max_connections=%d) with no idle "
                    "connection to close: refused a new connection with 503",
                    self.max_connections,
                )
                return _Refused()
            self.evicted += 1
            log.warning(
                "REST connection limit reached (--rest_api_max_connections=%d): closed the "
                "oldest idle connection",
                self.max_connections,
            )
            idle.force_close()
        self._pending += 1
        # connection_made runs on the next loop turn; settle one turn after it.
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._settle)
        return self._server()


class GuardedTCPSite(web.TCPSite):
    """aiohttp's TCPSite whose listener hands connections to a ConnectionGuard."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, max_connections: int
    ) -> None:
        super().__init__(runner, host, port, reuse_port=False, backlog=1024)
        self._max_connections = max_connections
        self.guard: ConnectionGuard | None = None
        self.bound_port = port

    async def start(self) -> None:
        """Listen with the guarded protocol factory."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._max_connections)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self.bound_port = self._server.sockets[0].getsockname()[1]
