"""Open-loop and closed-loop load generation in one process, measured into a LoadRecorder.

Open loop sends by intended send time and never waits for earlier replies; latency counts from
the intended time (wrk2's coordinated-omission correction). Closed loop runs N requesters that
each send, wait for the reply, and send again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from functools import partial
from typing import Any

from core.client.errors import CLIENT, error_code, error_origin
from core.metrics.load import LoadRecorder

__all__ = ["LoadGenerator", "SendFunction", "error_code"]

# Sends a request (by its index in the run) and returns the model version that served it: a
# coroutine, or a future the send has already started (settled by a callback, no task).
SendFunction = Callable[[int], Awaitable[int | None]]

# In-flight requests get this long to finish after an abort before they are cancelled.
ABORT_GRACE_S = 0.5
# Past its own deadline a request gets this much longer before it is cancelled and counted.
DEADLINE_SLACK_S = 1.0


class LoadGenerator:
    """Runs one open- or closed-loop load against a send function and records what happened."""

    def __init__(
        self,
        send: SendFunction,
        recorder: LoadRecorder,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._recorder = recorder
        self._timeout_s = timeout_s
        self._clock = clock
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._issuers: list[asyncio.Task[None]] = []
        self._aborted = False
        self.load_phase_end: float | None = None

    @property
    def aborted(self) -> bool:
        """Whether abort() was called."""
        return self._aborted

    def abort(self) -> None:
        """Stop issuing now; in-flight requests get a short grace, then are cancelled."""
        self._aborted = True
        for issuer in self._issuers:
            issuer.cancel()

    async def open_loop(
        self, offsets: Iterable[float], *, start_at: float, max_inflight: int | None = None
    ) -> None:
        """Send at start_at + each offset (seconds, ascending), then await what is in flight."""
        await self._run([self._dispatch(offsets, start_at, max_inflight)])

    async def closed_loop(
        self,
        concurrency: int,
        *,
        start_at: float,
        end_at: float | None = None,
        max_requests: int | None = None,
    ) -> None:
        """Run `concurrency` requesters back to back until end_at or max_requests sends."""
        next_index = iter(range(max_requests if max_requests is not None else 2**62))
        await self._run([self._requester(next_index, start_at, end_at) for _ in range(concurrency)])

    async def _run(self, issuers: list[Awaitable[None]]) -> None:
        self._issuers = [asyncio.ensure_future(issuer) for issuer in issuers]
        try:
            for issuer in self._issuers:
                with suppress(asyncio.CancelledError):
                    await issuer
                if not self._aborted and issuer.cancelled():
                    raise asyncio.CancelledError
        finally:
            self.load_phase_end = self._clock()
            for issuer in self._issuers:
                issuer.cancel()
            await self._drain()

    async def _dispatch(
        self, offsets: Iterable[float], start_at: float, max_inflight: int | None
    ) -> None:
        if max_inflight:
            await self._dispatch_capped(offsets, start_at, asyncio.Semaphore(max_inflight))
            return
        # Without a cap no send ever waits for a slot, so each is started from a timer callback:
        # one timer per send, no sleep future or task step (about 10 µs less CPU per send).
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        schedule = enumerate(offsets)
        due: tuple[int, float] | None = None
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            nonlocal due, timer
            timer = None
            try:
                if due is not None:
                    index, intended_at = due
                    due = None
                    self._start(index, intended_at, None)
                for index, offset in schedule:
                    intended_at = start_at + offset
                    delay = intended_at - self._clock()
                    if delay > 0:
                        due = (index, intended_at)
                        timer = loop.call_later(delay, fire)
                        return
                    self._start(index, intended_at, None)
            except Exception as error:
                if not finished.done():
                    finished.set_exception(error)
                return
            if not finished.done():
                finished.set_result(None)

        fire()
        try:
            await finished
        finally:
            if timer is not None:
                timer.cancel()

    async def _dispatch_capped(
        self, offsets: Iterable[float], start_at: float, slots: asyncio.Semaphore
    ) -> None:
        for index, offset in enumerate(offsets):
            intended_at = start_at + offset
            delay = intended_at - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # A send held here leaves late; its latency still counts from intended_at.
            await slots.acquire()
            self._start(index, intended_at, slots)

    async def _requester(
        self, next_index: Iterable[int], start_at: float, end_at: float | None
    ) -> None:
        delay = start_at - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        for index in next_index:
            if end_at is not None and self._clock() >= end_at:
                return
            # Shielded so that an abort stops this requester but lets its request finish; a
            # send's failure is recorded by the generator, not raised here.
            with suppress(Exception):
                await asyncio.shield(self._start(index, self._clock(), None))

    def _start(
        self, index: int, intended_at: float, slots: asyncio.Semaphore | None
    ) -> asyncio.Future[Any]:
        sent_at = self._clock()
        self._recorder.sent(intended_at, sent_at)
        try:
            pending = self._send(index)
        except Exception as error:
            pending = _failed(error)
        if isinstance(pending, asyncio.Future):
            # A send that returns a future (core.load.rest's) is settled by a callback: no task
            # and no coroutine per request.
            pending.add_done_callback(partial(self._settled, intended_at, sent_at, slots))
            future: asyncio.Future[Any] = pending
        else:
            future = asyncio.ensure_future(self._one(pending, intended_at, sent_at, slots))
            future.add_done_callback(self._in_flight.discard)
        self._in_flight.add(future)
        return future

    def _settled(
        self,
        intended_at: float,
        sent_at: float,
        slots: asyncio.Semaphore | None,
        future: asyncio.Future[int | None],
    ) -> None:
        self._in_flight.discard(future)
        served_version: int | None = None
        code, origin = "OK", None
        if future.cancelled():
            code, origin = "CANCELLED" if self._aborted else "DEADLINE_EXCEEDED", CLIENT
        elif (error := future.exception()) is not None:
            code, origin = error_code(error), error_origin(error)
        else:
            served_version = future.result()
        if slots is not None:
            slots.release()
        self._recorder.finished(
            intended_at, sent_at, self._clock(), code, served_version, origin=origin
        )

    async def _one(
        self,
        pending: Awaitable[int | None],
        intended_at: float,
        sent_at: float,
        slots: asyncio.Semaphore | None,
    ) -> None:
        served_version: int | None = None
        code, origin = "OK", None
        try:
            served_version = await pending
        except asyncio.CancelledError:
            # Cancelled by this generator: an abort, or the drain past the request's deadline.
            code, origin = "CANCELLED" if self._aborted else "DEADLINE_EXCEEDED", CLIENT
            raise
        except Exception as error:
            code, origin = error_code(error), error_origin(error)
        finally:
            if slots is not None:
                slots.release()
            self._recorder.finished(
                intended_at, sent_at, self._clock(), code, served_version, origin=origin
            )

    async def _drain(self) -> None:
        """Await in-flight requests up to their deadline (a short grace after an abort)."""
        started = self._clock()
        while self._in_flight:
            allowed = ABORT_GRACE_S if self._aborted else self._timeout_s + DEADLINE_SLACK_S
            remaining = started + allowed - self._clock()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._in_flight), timeout=min(remaining, 0.05))
        leftovers = set(self._in_flight)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers)


async def _failed(error: Exception) -> int | None:
    """A send that raised before it returned an awaitable: fails when awaited."""
    raise error
