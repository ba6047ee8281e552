"""Client-side micro-batching: many concurrent Predict requests ride one RPC.

One Python gRPC channel tops out at a few thousand unary calls per second; a batch of 32 rows
in one Predict goes far past that. ``MicroBatcher.submit()`` queues a request's inputs
(rows along dimension 0); a batch leaves when it holds ``max_batch_size`` rows or when its
oldest request has waited ``batch_timeout_s``, whichever comes first, and batches keep leaving
until the queue is empty. The answer's outputs are split back by each request's row count.

Requests share a batch only when their input aliases, dtypes and shapes past dimension 0 agree.
Every submit() ends exactly once: with its slice of the result, with the error of its batch
(``core.client.serving.ServingError`` from the server, unchanged), or cancelled.

Typical use::

    batcher = MicroBatcher(functools.partial(client.predict, model_spec), max_batch_size=32)
    result = await batcher.submit({"x": np.array([[1.0, 2.0, 3.0]], np.float32)})

Give a StatsCollector to the batcher or to the client, not both: the batcher records every
request's own latency (queueing included) and each batch's size; the client records RPCs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.client.serving import PredictResult
    from core.metrics.stats import StatsCollector

__all__ = ["BatchOutputError", "BatcherClosed", "BatcherFull", "MicroBatcher", "SendFunction"]

log = logging.getLogger(__name__)

SendFunction = Callable[[dict[str, np.ndarray]], Awaitable["PredictResult"]]

# asyncio runs a timer once loop.time() is within its clock resolution of the due time; this
# margin makes "the oldest request has waited batch_timeout_s" true when that timer fires.
_DEADLINE_SLACK_S = 1e-6

# Input alias, dtype and the shape past dimension 0, for each input: requests with equal keys
# can be concatenated.
_GroupKey = tuple[tuple[str, str, tuple[int, ...]], ...]


class BatcherFull(Exception):
    """The batcher's queue already holds max_queue requests; this one was rejected at once."""


class BatcherClosed(RuntimeError):
    """submit() was called on a MicroBatcher that is closing or closed."""


class BatchOutputError(ValueError):
    """An output of a batched Predict cannot be split back into its requests."""


class _State(enum.Enum):
    QUEUED = "queued"
    DROPPED = "dropped"  # cancelled while queued
    TAKEN = "taken"  # put into a batch


@dataclasses.dataclass(eq=False)
class _Request:
    """One submit() waiting for its answer."""

    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[PredictResult]
    group: _Group
    enqueued_at: float  # loop.time()
    state: _State = _State.QUEUED


@dataclasses.dataclass(eq=False)
class _Group:
    """The queued requests that can share a batch, oldest first."""

    key: _GroupKey
    requests: deque[_Request] = dataclasses.field(default_factory=deque)
    rows: int = 0  # rows of the requests still QUEUED


def _prepare(inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, _GroupKey]:
    """The request's arrays, its row count and its group key; ValueError for unbatchable input."""
    if not inputs:
        raise ValueError("submit: inputs is empty; expected at least one alias -> array")
    arrays: dict[str, np.ndarray] = {}
    for alias, value in inputs.items():
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if array.ndim == 0:
            raise ValueError(
                f"submit: input {alias!r} is a scalar (shape ()); expected rows along "
                f"dimension 0, e.g. shape (1,) or (1, ...)"
            )
        arrays[alias] = array
    row_counts = {alias: array.shape[0] for alias, array in arrays.items()}
    if len(set(row_counts.values())) > 1:
        raise ValueError(
            f"submit: inputs have different row counts {row_counts}; expected the same "
            f"dimension 0 in every input"
        )
    key = tuple(
        sorted((alias, array.dtype.str, tuple(array.shape[1:])) for alias, array in arrays.items())
    )
    return arrays, next(iter(row_counts.values())), key


def _status_code(error: BaseException) -> str:
    """The gRPC status code name to record for a failed request."""
    code = getattr(error, "code", None)  # core.client.serving.ServingError carries the name
    if isinstance(code, str):
        return code
    if isinstance(error, TimeoutError):
        return "DEADLINE_EXCEEDED"
    return "UNKNOWN"


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a sleeping dispatcher's waiter, if any."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class MicroBatcher:
    """Queues Predict inputs and sends them in batches through ``send``.

    ``close()`` (or leaving ``async with``) stops new submits, sends everything still queued
    without waiting for the batch timeout, and waits for every batch in flight. A batch of one
    request gets the outputs exactly as ``send`` returned them; a batch of several fails with
    BatchOutputError when an output's dimension 0 is not the batch's row count.
    """

    def __init__(
        self,
        send: SendFunction,
        *,
        max_batch_size: int = 32,
        batch_timeout_s: float = 0.005,
        max_queue: int = 10_000,
        max_batches_in_flight: int = 4,
        stats: StatsCollector | None = None,
    ) -> None:
        for name, value in (
            ("max_batch_size", max_batch_size),
            ("max_queue", max_queue),
            ("max_batches_in_flight", max_batches_in_flight),
        ):
            if value < 1:
                raise ValueError(f"MicroBatcher {name}: expected an integer >= 1, got {value!r}")
        if not (batch_timeout_s >= 0 and math.isfinite(batch_timeout_s)):
            raise ValueError(
                f"MicroBatcher batch_timeout_s: expected seconds >= 0, got {batch_timeout_s!r}"
            )
        self._send = send
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_queue = max_queue
        self.max_batches_in_flight = max_batches_in_flight
        self._stats = stats
        self._groups: dict[_GroupKey, _Group] = {}
        self._queued = 0
        self._slots = asyncio.Semaphore(max_batches_in_flight)
        self._dispatcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (not counting batches in flight)."""
        return self._queued

    @property
    def batches_in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._batches)

    async def __aenter__(self) -> MicroBatcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> PredictResult:
        """Predict for ``inputs`` (rows along dimension 0) as part of a batch; this request's rows.

        Raises BatcherFull at once when max_queue requests are waiting, BatcherClosed after
        close(), ValueError for inputs that cannot be batched, and the batch's error otherwise.
        """
        if self._closing:
            raise BatcherClosed("MicroBatcher is closed; submit() needs an open batcher")
        arrays, rows, key = _prepare(inputs)
        if self._queued >= self.max_queue:
            raise BatcherFull(
                f"micro-batcher queue is full: {self._queued} requests wait (max_queue="
                f"{self.max_queue}) and the server is not keeping up; retry later, or raise "
                f"the queue bound or max_batches_in_flight"
            )
        loop = asyncio.get_running_loop()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        request = _Request(arrays, rows, loop.create_future(), group, loop.time())
        group.requests.append(request)
        group.rows += rows
        self._queued += 1
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch(), name="MicroBatcher.dispatch")
            self._dispatcher.add_done_callback(self._dispatcher_done)
        elif group.rows >= self.max_batch_size or self.batch_timeout_s == 0:
            _wake(self._waiter)

        stats = self._stats
        started = time.perf_counter()
        code = "UNKNOWN"
        served_version: int | None = None
        if stats is not None:
            stats.request_started()
        try:
            result = await request.future
            code = "OK"
            served_version = result.model_version
            return result
        except asyncio.CancelledError:
            code = "CANCELLED"
            self._drop(request)
            raise
        except BaseException as error:
            code = _status_code(error)
            raise
        finally:
            if stats is not None:
                stats.request_finished(time.perf_counter() - started, code, served_version)

    async def close(self) -> None:
        """Send what is queued, wait for every batch in flight; later submits fail."""
        self._closing = True
        _wake(self._waiter)
        # asyncio.wait, not await: cancelling close() must not cancel the batcher's own tasks.
        while self._dispatcher is not None and not self._dispatcher.done():
            await asyncio.wait({self._dispatcher})
        while self._batches:
            await asyncio.wait(set(self._batches))

    def _drop(self, request: _Request) -> None:
        """Take a cancelled request out of the queue counts (it is skipped when reached)."""
        if request.state is _State.QUEUED:
            request.state = _State.DROPPED
            request.group.rows -= request.rows
            self._queued -= 1

    def _oldest_live(self, group: _Group) -> _Request | None:
        """The group's oldest queued request; drops cancelled ones and forgets an empty group."""
        requests = group.requests
        while requests and (requests[0].state is not _State.QUEUED or requests[0].future.done()):
            self._drop(requests.popleft())
        if not requests:
            del self._groups[group.key]
            return None
        return requests[0]

    def _scan(self, now: float) -> tuple[_Group | None, float | None]:
        """The ready group with the oldest request, else when the next group becomes due."""
        ready: _Group | None = None
        ready_since = math.inf
        next_due: float | None = None
        for group in list(self._groups.values()):
            oldest = self._oldest_live(group)
            if oldest is None:
                continue
            due = oldest.enqueued_at + self.batch_timeout_s
            if self._closing or group.rows >= self.max_batch_size or now + _DEADLINE_SLACK_S >= due:
                if oldest.enqueued_at < ready_since:
                    ready, ready_since = group, oldest.enqueued_at
            elif next_due is None or due < next_due:
                next_due = due
        return ready, next_due

    def _take(self, group: _Group) -> list[_Request]:
        """Up to max_batch_size rows of the group's oldest queued requests (at least one)."""
        taken: list[_Request] = []
        rows = 0
        requests = group.requests
        while requests and rows < self.max_batch_size:
            request = requests[0]
            if request.state is not _State.QUEUED or request.future.done():
                self._drop(requests.popleft())
                continue
            if taken and rows + request.rows > self.max_batch_size:
                break  # a request never splits; a single oversized one goes alone
            requests.popleft()
            request.state = _State.TAKEN
            group.rows -= request.rows
            self._queued -= 1
            taken.append(request)
            rows += request.rows
        if not requests:
            del self._groups[group.key]
        return taken

    async def _sleep_until(self, due: float) -> None:
        """Sleep until ``due`` (loop time) or until a submit or close() wakes the dispatcher."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(due, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _dispatch(self) -> None:
        """Send batches while requests are queued; ends when the queue is empty."""
        loop = asyncio.get_running_loop()
        while True:
            ready, next_due = self._scan(loop.time())
            if ready is None:
                if next_due is None:
                    return  # nothing queued: the next submit starts a new dispatcher
                await self._sleep_until(next_due)
                continue
            # Wait for a free slot first, then pick: the batch fills up while we wait.
            await self._slots.acquire()
            try:
                ready, _ = self._scan(loop.time())
                batch = self._take(ready) if ready is not None else []
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run_batch(batch), name="MicroBatcher.batch")
            self._batches.add(task)
            task.add_done_callback(functools.partial(self._batch_done, batch))

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        """End what is queued when the dispatcher was cancelled or failed, so no caller hangs.

        A done callback, not an except clause: a task cancelled before its first step never
        runs its body (e.g. when the event loop shuts down right after a submit).
        """
        error = None if task.cancelled() else task.exception()
        if not task.cancelled() and error is None:
            return  # the queue was empty
        if error is not None:
            log.error("micro-batcher dispatcher failed", exc_info=error)
        if task is self._dispatcher:  # else a newer dispatcher already owns the queue
            self._fail_queued(error)

    def _fail_queued(self, error: BaseException | None) -> None:
        """End every queued request with ``error``, or cancel it when error is None."""
        for group in list(self._groups.values()):
            for request in group.requests:
                if request.state is _State.QUEUED and not request.future.done():
                    if error is None:
                        request.future.cancel()
                    else:
                        request.future.set_exception(error)
                self._drop(request)
        self._groups.clear()
        self._queued = 0

    async def _run_batch(self, batch: list[_Request]) -> None:
        """Send one batch and hand every request its answer or the batch's error."""
        try:
            live = [request for request in batch if not request.future.done()]
            if not live:
                return  # every request was cancelled after being taken
            if len(live) == 1:
                inputs = live[0].inputs
            else:
                inputs = {
                    alias: np.concatenate([request.inputs[alias] for request in live])
                    for alias in live[0].inputs
                }
            rows = sum(request.rows for request in live)
            if self._stats is not None:
                self._stats.record_batch(rows, self.max_batch_size)
            result = await self._send(inputs)
            self._resolve(live, rows, result)
        except Exception as error:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)

    def _batch_done(self, batch: list[_Request], task: asyncio.Task[None]) -> None:
        """Free the batch's slot; cancel its unanswered requests if the batch was cancelled."""
        self._batches.discard(task)
        self._slots.release()
        for request in batch:
            if not request.future.done():
                request.future.cancel()

    def _resolve(self, live: list[_Request], rows: int, result: PredictResult) -> None:
        """Give each request its rows of every output (a view into the batch's arrays)."""
        per_request: list[dict[str, np.ndarray]]
        if len(live) == 1:
            per_request = [result.outputs]
        else:
            per_request = [{} for _ in live]
            for alias, output in result.outputs.items():
                if output.ndim == 0 or output.shape[0] != rows:
                    raise BatchOutputError(
                        f"batched Predict output {alias!r} has shape {output.shape}, but the "
                        f"batch had {rows} rows from {len(live)} requests; the batcher can only "
                        f"split outputs whose dimension 0 is the batch's rows (send this model's "
                        f"requests without the batcher)"
                    )
                start = 0
                for outputs, request in zip(per_request, live, strict=True):
                    outputs[alias] = output[start : start + request.rows]
                    start += request.rows
        now = asyncio.get_running_loop().time()
        for outputs, request in zip(per_request, live, strict=True):
            if not request.future.done():
                request.future.set_result(
                    dataclasses.replace(
                        result, outputs=outputs, latency_s=now - request.enqueued_at
                    )
                )
