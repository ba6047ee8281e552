"""A minimal HTTP/1.1 client for load: pre-built requests over keep-alive connections.

Each connection is an asyncio Protocol whose responses go through httptools (llhttp, the C
parser uvicorn uses), so a request costs one transport.write, the parser's callbacks and one
future: no request objects, header dicts, body buffers or streams per request. The body of a
response is never kept; only its status counts. A connection carries one request at a time (no
pipelining) and goes back to the pool when its response is complete and keep-alive.

Failures: a connection refused, reset, closed or answered with something that is not HTTP
before a complete response raises Http1TransportError; a request not answered by its deadline
raises TimeoutError (the client's own) and its connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httptools

__all__ = ["Http1Pool", "Http1TransportError", "Outcome", "build_request"]


class Http1TransportError(ConnectionError):
    """No complete HTTP answer: refused, reset, closed early, or not HTTP."""


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text or "\0" in text:
            raise ValueError(f"HTTP header {name!r}: expected no line breaks or NUL characters")
    if not name or ":" in name or " " in name:
        raise ValueError(f"HTTP header name {name!r}: expected a token without ':' or spaces")


def build_request(
    method: str, url: str, headers: Sequence[tuple[str, str]] = (), body: bytes | None = None
) -> bytes:
    """One HTTP/1.1 request as bytes: request line, Host, the headers, Content-Length, body."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    for name, value in headers:
        _check_header(name, value)
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `request()` writes a request and returns its future."""

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers_done = False
        self._delimited = False  # Content-Length or chunked: the body's end is known
        self.closed = False

    # ---- the pool's side ----

    def request(self, data: bytes, deadline: float | None) -> asyncio.Future[Any]:
        """Write one request; the future gets its status (or the failure; see Outcome)."""
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._waiter = waiter
        self._headers_done = self._delimited = False
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._timed_out)
        assert self.transport is not None
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        """Close the connection now (a request in flight fails as a transport error)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(exception=Http1TransportError("the answer is not HTTP/1.1"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.discard(self)
        if self._waiter is not None:
            if self._headers_done and not self._delimited:
                # A body that runs to the end of the connection has just ended.
                self._finish(status=self._parser.get_status_code())
            else:
                closed = Http1TransportError("the connection closed before an answer")
                self._finish(exception=closed)

    # ---- httptools callbacks ----

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers_done = self._delimited = False
            return
        keep_alive = self._parser.should_keep_alive()
        self._finish(status=status)
        if not keep_alive:
            self.close()
        elif not self.closed:
            self._pool.release(self)

    # ---- completion ----

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(exception=TimeoutError())
        self.close()

    def _finish(self, status: int = 0, exception: BaseException | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is None or waiter.done():
            return
        outcome = self._pool.outcome
        if outcome is not None:
            failure = outcome(status, exception)
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(failure)
        elif exception is not None:
            waiter.set_exception(exception)
        else:
            waiter.set_result(status)


# Given a request's status (0 when it failed) and its failure (Http1TransportError or
# TimeoutError, else None): the exception its future fails with, or None for a result of None.
# Without one a future's result is the status and its failures are raised as they are.
Outcome = Callable[[int, BaseException | None], BaseException | None]


class Http1Pool:
    """Keep-alive connections to one origin, at most `limit` of them (0: no limit)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float | None,
        limit: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            raise ValueError(f"REST URL {base_url!r}: expected http://HOST[:PORT] or https://...")
        if parts.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.loop = asyncio.get_running_loop()
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._server_name = (server_name or self._host) if self._ssl is not None else None
        self._timeout_s = timeout_s
        self._limit = limit
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closed = False
        # Turns (status, failure) into what a request's future settles with; see Outcome.
        self.outcome = outcome

    def sender(self, requests: Sequence[bytes]) -> Callable[[int], Awaitable[Any]]:
        """send(index): send requests[index % len(requests)]; awaits its status (or outcome).

        With an idle connection it writes at once and returns the request's future.
        """
        loop, idle, timeout_s, count = self.loop, self._idle, self._timeout_s, len(requests)

        def send(index: int) -> Awaitable[Any]:
            data = requests[index % count]
            deadline = None if timeout_s is None else loop.time() + timeout_s
            if idle:
                return idle.pop().request(data, deadline)
            return self._request_slow(data, deadline)

        return send

    async def request(self, data: bytes) -> Any:
        """Send one request (e.g. a GET built by build_request): its status (or outcome)."""
        deadline = None if self._timeout_s is None else self.loop.time() + self._timeout_s
        if self._idle:
            return await self._idle.pop().request(data, deadline)
        return await self._request_slow(data, deadline)

    async def _request_slow(self, data: bytes, deadline: float | None) -> Any:
        """No idle connection: open one (within the limit) or wait for one to come back."""
        try:
            connection = await self._acquire(deadline)
        except (Http1TransportError, TimeoutError) as error:
            if self.outcome is None:
                raise
            raise (self.outcome(0, error) or error) from None
        return await connection.request(data, deadline)

    async def _acquire(self, deadline: float | None) -> _Connection:
        while True:
            if self._closed:
                raise Http1TransportError("the connection pool is closed")
            if self._idle:
                return self._idle.pop()
            if not self._limit or len(self._all) + self._connecting < self._limit:
                return await self._connect(deadline)
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else max(deadline - self.loop.time(), 0.0)
            try:
                connection = await asyncio.wait_for(waiter, remaining)
            finally:
                if not waiter.done():
                    waiter.cancel()
            if connection is not None and not connection.closed:
                return connection
            # A slot came free (a connection closed): go round and open one.

    async def _connect(self, deadline: float | None) -> _Connection:
        self._connecting += 1
        remaining = None if deadline is None else max(deadline - self.loop.time(), 0.0)
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._server_name,
                ),
                remaining,
            )
        except (OSError, ssl.SSLError) as error:
            # TimeoutError (a connect past the deadline) is the client's and passes through.
            if isinstance(error, TimeoutError):
                raise
            raise Http1TransportError(f"cannot connect: {error}") from None
        finally:
            self._connecting -= 1
        if self._closed:
            protocol.close()
            raise Http1TransportError("the connection pool is closed")
        self._all.add(protocol)
        return protocol

    def release(self, connection: _Connection) -> None:
        """A connection whose response is complete: to the first waiter, else idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def discard(self, connection: _Connection) -> None:
        """A connection that closed: forget it and let a waiter open another in its place."""
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._all)

    async def close(self) -> None:
        """Close every connection; requests in flight fail, waiting ones too."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        # Let the transports' connection_lost callbacks run.
        await asyncio.sleep(0)
