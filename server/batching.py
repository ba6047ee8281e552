"""Server-side batching with TF Serving's semantics (BasicBatchScheduler + BatchingSession).

Requests to one model signature queue into batches: a task joins the open batch while it fits
into max_batch_size, otherwise the open batch closes and a new one starts; the open batch runs
when it is full or when its oldest task has waited batch_timeout_micros, as soon as one of
num_batch_threads threads is free. A batch's inputs are concatenated along dim 0 (padded to an
allowed batch size, and in dims 1.. with pad_variable_length_inputs), run once, and the outputs
split back per task. The parameters file lives in server.batching_parameters.

TF Serving runs each batch on one of its batch threads. Handing a batch to a thread costs more
CPU than a small model's whole run (a queue put that wakes a thread, a GIL handoff, a self-pipe
write that wakes the loop), so a batch known to be short (server.run_placement's rules: a moving
average of measured runs under its budget, small inputs) runs on the event loop itself, where it
still counts as one of the num_batch_threads batches running at once; the first batches, and
long or large ones, run in the batch threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.batching_parameters import (
    BatchingConfigError,
    BatchingParameters,
    load_batching_parameters,
    parse_batching_parameters,
    round_to_allowed_batch_size,
)
from server.metrics import ServerMetrics
from server.run_placement import INLINE_MAX_INPUT_BYTES, RunPlacement, input_bytes

__all__ = [
    "QUEUE_FULL_MESSAGE",
    "BatchScheduler",
    "BatchingConfigError",
    "BatchingError",
    "BatchingParameters",
    "load_batching_parameters",
    "parse_batching_parameters",
    "round_to_allowed_batch_size",
]

RunBatch = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]

# TF Serving's text for a full queue (shared_batch_scheduler.h); callers may match on it.
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
# TF Serving's texts for a deadline that passed in the queue, and one that passed later.
QUEUE_TIMEOUT_MESSAGE = "Run() timeout exceeded while waiting in batching queue"
DEADLINE_MESSAGE = "Deadline Exceeded"
# The placement key of a scheduler's batches (a scheduler serves one signature).
_BATCH_KEY = "batch"


class BatchingError(Exception):
    """A request the batcher refused or could not finish: gRPC status code name and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _task_size(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows of a task: the common dim 0 of its inputs (TF Serving's ComputeTensorBatchSize)."""
    if not inputs:
        raise BatchingError(
            "INVALID_ARGUMENT", "Batching Run() must have at least one input tensor"
        )
    size = -1
    equal = True
    for value in inputs.values():
        if value.ndim == 0:
            raise BatchingError(
                "INVALID_ARGUMENT", "Batching Run() input tensors must have at least one dimension"
            )
        equal = equal and size in (-1, value.shape[0])
        size = value.shape[0]
    if not equal:
        raise BatchingError(
            "INVALID_ARGUMENT", "Batching Run() input tensors must have equal 0th-dimension size"
        )
    return int(size)


def _pad_to(value: np.ndarray, trailing_shape: tuple[int, ...]) -> np.ndarray:
    """value padded after its end in dims 1.. to trailing_shape, with its own first element."""
    if value.shape[1:] == trailing_shape:
        return value
    if value.size == 0:
        raise BatchingError("INVALID_ARGUMENT", "Got empty tensor in batch of non-empty tensors.")
    # TF Serving pads with the tensor's first element (batching_util.cc), a value known valid.
    padded = np.full((value.shape[0], *trailing_shape), value.flat[0], dtype=value.dtype)
    padded[tuple(slice(0, size) for size in value.shape)] = value
    return padded


@dataclass(eq=False)
class _Task:
    """One caller's rows waiting in the queue."""

    inputs: dict[str, np.ndarray]
    size: int
    enqueued_at: float
    deadline: float | None
    future: asyncio.Future[dict[str, np.ndarray]]
    dispatched: bool = False


@dataclass(eq=False)
class _Batch:
    """Tasks that will run together."""

    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    opened_at: float = 0.0

    def add(self, task: _Task) -> None:
        if not self.tasks:
            self.opened_at = task.enqueued_at
        self.tasks.append(task)
        self.size += task.size


class BatchScheduler:
    """Merges concurrent requests to one signature into batches and runs them: short batches on
    the event loop, the others in batch threads."""

    def __init__(
        self,
        run_batch: RunBatch,
        params: BatchingParameters,
        *,
        model_name: str,
        metrics: ServerMetrics | None = None,
        placement: RunPlacement | None = None,
    ) -> None:
        self.params = params
        self.model_name = model_name
        self._run_batch = run_batch
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(
            max_workers=params.num_batch_threads, thread_name_prefix=params.thread_pool_name
        )
        # The last batch is the open one; the ones before it are closed and wait for a thread.
        self._batches: deque[_Batch] = deque([_Batch()])
        self._idle_threads = params.num_batch_threads
        self._running: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timeout_s = params.batch_timeout_micros / 1e6
        self._placement = placement if placement is not None else RunPlacement()
        self._closed = False

    async def __aenter__(self) -> BatchScheduler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def num_enqueued_batches(self) -> int:
        """Batches waiting for a thread, the open one included when it holds tasks."""
        return len(self._batches) - (0 if self._batches[-1].tasks else 1)

    async def submit(
        self, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run these rows as part of a batch; deadline is in time.monotonic() seconds.

        Raises BatchingError (INVALID_ARGUMENT, UNAVAILABLE, DEADLINE_EXCEEDED, ...) for the
        batcher's own refusals; an exception from run_batch reaches every caller of that batch.
        """
        if self._closed:
            raise BatchingError(
                "UNAVAILABLE", f"the batch scheduler of {self.model_name} is closed"
            )
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        size = _task_size(arrays)
        if self._metrics is not None:
            self._metrics.record_input_batch_size(size)
        if size > self.params.max_batch_size:
            raise BatchingError(
                "INVALID_ARGUMENT",
                f"Task size {size} is larger than maximum input batch size "
                f"{self.params.max_batch_size}",
            )
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            raise BatchingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE)
        loop = asyncio.get_running_loop()
        if size == 0:
            # No rows to merge: run alone so the outputs still get the model's own shapes.
            result = await loop.run_in_executor(self._executor, self._run_group, [arrays], [0])
            return result[0]
        pieces = self._pieces(arrays, size)
        if len(pieces) == 1:
            task = self._enqueue(arrays, size, now, deadline, loop)
            self._dispatch()  # may run the batch, this task's included, inline right here
            return await self._wait_one(task, deadline, loop)
        tasks = [self._enqueue(piece, _task_size(piece), now, deadline, loop) for piece in pieces]
        self._dispatch()
        results = await self._wait(tasks, deadline)
        return {name: np.concatenate([result[name] for result in results]) for name in results[0]}

    def _pieces(self, inputs: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
        """The task as queued: whole, or split across batches when large batch splitting is on."""
        execution_size = self.params.execution_batch_size
        open_batch = self._batches[-1]
        room = execution_size - open_batch.size
        if not self.params.enable_large_batch_splitting:
            if room < size and len(self._batches) >= self.params.max_enqueued_batches:
                raise BatchingError(
                    "UNAVAILABLE",
                    f"{QUEUE_FULL_MESSAGE}; currently {len(self._batches)} batches enqueued and "
                    f"max_enqueued_batches is {self.params.max_enqueued_batches}",
                )
            return [inputs]
        if size <= room:
            return [inputs]
        capacity = (self.params.max_enqueued_batches - len(self._batches)) * execution_size + room
        if size > capacity:
            raise BatchingError(
                "UNAVAILABLE",
                f"{QUEUE_FULL_MESSAGE}; task size is {size} but scheduling capacity is only "
                f"{capacity} (num_enqueued_batches={len(self._batches)}, max_enqueued_batches="
                f"{self.params.max_enqueued_batches}, open_batch_size={open_batch.size}, "
                f"max_execution_batch_size={execution_size})",
            )
        # The first piece fills the open batch; each further one starts a batch of its own.
        first_bound = room if room > 0 else execution_size
        bounds = list(range(first_bound, size, execution_size))
        return [
            {name: part for name, part in zip(inputs, parts, strict=True)}
            for parts in zip(*(np.split(value, bounds) for value in inputs.values()), strict=True)
        ]

    def _enqueue(
        self,
        inputs: dict[str, np.ndarray],
        size: int,
        now: float,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> _Task:
        task = _Task(inputs, size, now, deadline, loop.create_future())
        if self._batches[-1].size + task.size > self.params.execution_batch_size:
            self._batches.append(_Batch())
        self._batches[-1].add(task)
        return task

    async def _wait_one(
        self, task: _Task, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> dict[str, np.ndarray]:
        """_wait for a task in one piece, without gather and wait_for: the deadline fails the
        task's own future, which also makes dispatch skip it while it is queued."""
        future = task.future
        if future.done():  # its batch ran inline in submit's dispatch
            return future.result()
        if deadline is None:
            return await future
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), _expire, task)
        try:
            return await future
        finally:
            timer.cancel()
            future.cancel()  # a caller gone while its task is queued: dispatch skips the task

    async def _wait(
        self, tasks: list[_Task], deadline: float | None
    ) -> list[dict[str, np.ndarray]]:
        """Results of a task's pieces; on deadline or cancellation its queued pieces drop out."""
        gathered = asyncio.gather(*(task.future for task in tasks))
        try:
            if deadline is None:
                return await gathered
            return await asyncio.wait_for(gathered, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            if any(task.dispatched for task in tasks):
                raise BatchingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE) from None
            raise BatchingError("DEADLINE_EXCEEDED", QUEUE_TIMEOUT_MESSAGE) from None
        finally:
            # A cancelled future marks its task as abandoned: dispatch skips it.
            for task in tasks:
                task.future.cancel()

    def _take_batch(self, now: float) -> _Batch | None:
        """The next batch to run, if one is ready (TF Serving's ScheduleBatch)."""
        if len(self._batches) > 1:
            return self._batches.popleft()
        open_batch = self._batches[0]
        if open_batch.tasks and (
            self._closed
            or open_batch.size >= self.params.execution_batch_size
            or now >= open_batch.opened_at + self._timeout_s
        ):
            self._batches[0] = _Batch()
            return open_batch
        return None

    def _dispatch(self) -> None:
        """Run ready batches, inline or in idle threads; arm a timer for the open batch."""
        now = time.monotonic()
        while self._idle_threads > 0:
            batch = self._take_batch(now)
            if batch is None:
                break
            tasks = []
            for task in batch.tasks:
                if task.future.done():
                    continue
                if task.deadline is not None and task.deadline <= now:
                    task.future.set_exception(
                        BatchingError("DEADLINE_EXCEEDED", QUEUE_TIMEOUT_MESSAGE)
                    )
                    continue
                task.dispatched = True
                tasks.append(task)
            if not tasks:
                continue
            if self._metrics is not None:
                for task in tasks:
                    self._metrics.record_queuing_latency(
                        self.params.thread_pool_name, (now - task.enqueued_at) * 1e6
                    )
            if self._inline(tasks):
                # On the loop, the batch holds it (one of num_batch_threads) until it returns.
                self._run_inline(tasks)
                now = time.monotonic()
                continue
            self._idle_threads -= 1
            running = asyncio.ensure_future(self._run(tasks))
            self._running.add(running)
            running.add_done_callback(self._running.discard)
        open_batch = self._batches[-1]
        if self._idle_threads > 0 and open_batch.tasks:
            wake_at = open_batch.opened_at + self._timeout_s
            if self._timer is None or self._timer_at != wake_at:
                # Armed once per open batch, not once per task that joins it.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = wake_at
                self._timer = asyncio.get_running_loop().call_later(
                    max(0.0, wake_at - now), self._on_timer
                )
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _inline(self, tasks: list[_Task]) -> bool:
        """Whether this batch runs on the event loop: known short, with small inputs."""
        return (
            self._placement.short(_BATCH_KEY)
            and sum(input_bytes(task.inputs) for task in tasks) <= INLINE_MAX_INPUT_BYTES
        )

    def _run_inline(self, tasks: list[_Task]) -> None:
        """Run one batch on the event loop and resolve its callers."""
        outcomes, run_s = self._timed_process(tasks)
        self._placement.record(_BATCH_KEY, run_s)
        _resolve(tasks, outcomes)

    async def _run(self, tasks: list[_Task]) -> None:
        """Run one batch in a batch thread and resolve its callers."""
        loop = asyncio.get_running_loop()
        outcomes: list[dict[str, np.ndarray] | BaseException]
        try:
            try:
                outcomes, run_s = await loop.run_in_executor(
                    self._executor, self._timed_process, tasks
                )
            except asyncio.CancelledError:
                for task in tasks:
                    task.future.cancel()
                raise
            except BaseException as error:  # e.g. the executor shut down: callers must still hear
                outcomes = [error] * len(tasks)
            else:
                self._placement.record(_BATCH_KEY, run_s)
            # Callers first: a batch the freed thread lets run inline would delay them.
            _resolve(tasks, outcomes)
        finally:
            self._idle_threads += 1
            if not loop.is_closed():
                self._dispatch()

    def _timed_process(
        self, tasks: list[_Task]
    ) -> tuple[list[dict[str, np.ndarray] | BaseException], float]:
        """_process, and its wall time in seconds."""
        started = time.perf_counter()
        try:
            outcomes = self._process(tasks)
        except Exception as error:
            outcomes = [error] * len(tasks)
        return outcomes, time.perf_counter() - started

    def _process(self, tasks: list[_Task]) -> list[dict[str, np.ndarray] | BaseException]:
        """Run a batch: tasks whose tensors cannot merge run as sub-batches."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        if len(tasks) == 1:
            groups[()] = [0]
        else:
            for index, task in enumerate(tasks):
                groups.setdefault(self._merge_key(task.inputs), []).append(index)
        outcomes: list[dict[str, np.ndarray] | BaseException] = [
            BatchingError("INTERNAL", "batch result missing") for _ in tasks
        ]
        for indexes in groups.values():
            try:
                results: Sequence[dict[str, np.ndarray] | BaseException] = self._run_group(
                    [tasks[index].inputs for index in indexes],
                    [tasks[index].size for index in indexes],
                )
            except Exception as error:
                results = [error] * len(indexes)
            for index, result in zip(indexes, results, strict=True):
                outcomes[index] = result
        return outcomes

    def _merge_key(self, inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
        """Tasks with equal keys can be concatenated; padding lets trailing dims differ."""
        return tuple(
            (
                name,
                value.dtype.str,
                value.ndim if self.params.pad_variable_length_inputs else value.shape[1:],
            )
            for name, value in sorted(inputs.items())
        )

    def _run_group(
        self, inputs_per_task: list[dict[str, np.ndarray]], sizes: list[int]
    ) -> list[dict[str, np.ndarray]]:
        """Merge, pad, run once and split back (TF Serving's Merge/SplitOutputTensors)."""
        batch_size = sum(sizes)
        padded_size = (
            round_to_allowed_batch_size(self.params.allowed_batch_sizes, batch_size)
            if batch_size
            else 0
        )
        padding = padded_size - batch_size
        if self._metrics is not None and batch_size:
            self._metrics.record_batch(padded_size, padding)
        merged: dict[str, np.ndarray] = {}
        for name in inputs_per_task[0]:
            values = [inputs[name] for inputs in inputs_per_task]
            if self.params.pad_variable_length_inputs and len(values) > 1:
                trailing = tuple(
                    int(size) for size in np.max([value.shape[1:] for value in values], axis=0)
                )
                values = [_pad_to(value, trailing) for value in values]
            if padding:
                # Like TF Serving: repeat the last task's first row, a row known to be valid.
                values.append(np.repeat(values[-1][:1], padding, axis=0))
            merged[name] = np.concatenate(values) if len(values) > 1 else values[0]
        outputs = {name: np.asarray(value) for name, value in self._run_batch(merged).items()}
        for name, value in outputs.items():
            if value.ndim == 0:
                raise BatchingError("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
            if value.shape[0] != padded_size:
                raise BatchingError(
                    "FAILED_PRECONDITION",
                    f"Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    f"dimension sizes of the input tensors (output {name!r} has "
                    f"{value.shape[0]} rows, expected {padded_size})",
                )
        results = []
        start = 0
        for size in sizes:
            results.append({name: value[start : start + size] for name, value in outputs.items()})
            start += size
        return results

    async def close(self) -> None:
        """Run what is queued, wait for running batches, then stop the batch threads."""
        if self._closed:
            return
        self._closed = True
        self._dispatch()
        while self._running:
            await asyncio.wait(set(self._running))
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=False)


def _resolve(tasks: list[_Task], outcomes: Sequence[dict[str, np.ndarray] | BaseException]) -> None:
    """Hand each caller still waiting its outcome."""
    for task, outcome in zip(tasks, outcomes, strict=True):
        if task.future.done():
            continue
        if isinstance(outcome, BaseException):
            task.future.set_exception(outcome)
        else:
            task.future.set_result(outcome)


def _expire(task: _Task) -> None:
    """A task's deadline passed: fail it with TF Serving's text for where it was."""
    if not task.future.done():
        message = DEADLINE_MESSAGE if task.dispatched else QUEUE_TIMEOUT_MESSAGE
        task.future.set_exception(BatchingError("DEADLINE_EXCEEDED", message))
