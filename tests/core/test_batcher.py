"""Tests for core.client.batcher: batching rules, exactly-once answers, overload, shutdown."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import warnings
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
import pytest

from core.client.batcher import BatcherClosed, BatcherFull, BatchOutputError, MicroBatcher
from core.client.serving import (
    ClientSettings,
    ModelSpec,
    PredictResult,
    ServingClient,
    ServingError,
)
from core.metrics.stats import StatsCollector
from tests.fixtures.fault_servicer import (
    Behaviour,
    FaultServer,
    fault_server_fixture,  # noqa: F401 (provides the fault_server fixture)
)

LONG_S = 3600.0  # a batch timeout that never fires within a test


class FakeServer:
    """A ``send`` coroutine: echoes every input as the output of the same alias.

    It records each batch, can hold batches at a gate, sleep, fail chosen batches, and
    tracks how many batches were in flight at once.
    """

    def __init__(self, *, delay_s: float = 0.0, served_version: int = 7) -> None:
        self.delay_s = delay_s
        self.served_version = served_version
        self.batches: list[dict[str, np.ndarray]] = []
        self.failures: dict[int, BaseException] = {}  # batch index -> error to raise
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.reshape_output: tuple[int, ...] | None = None

    async def __call__(self, inputs: dict[str, np.ndarray]) -> PredictResult:
        index = len(self.batches)
        self.batches.append(inputs)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s * random.random())
            if index in self.failures:
                raise self.failures[index]
            outputs = {alias: array.copy() for alias, array in inputs.items()}
            if self.reshape_output is not None:
                outputs["odd"] = np.zeros(self.reshape_output, np.float32)
            return PredictResult(outputs, "m", self.served_version, "serving_default", 0.001)
        finally:
            self.in_flight -= 1

    @property
    def batch_rows(self) -> list[int]:
        return [next(iter(batch.values())).shape[0] for batch in self.batches]


def row(value: float, width: int = 3, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """One request of one row filled with ``value``."""
    return {"x": np.full((1, width), value, dtype=dtype)}


def assert_own_rows(result: PredictResult, inputs: Mapping[str, np.ndarray]) -> None:
    """The echo server's answer holds exactly this request's rows."""
    assert set(result.outputs) == set(inputs)
    for alias, array in inputs.items():
        np.testing.assert_array_equal(result.outputs[alias], array)
        assert result.outputs[alias].dtype == array.dtype


def watch_loop(errors: list[dict[str, Any]]) -> None:
    """Collect what reaches the running loop's exception handler (e.g. never-retrieved errors)."""
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))


async def test_concurrent_submits_share_batches_and_get_their_own_rows() -> None:
    server = FakeServer()
    requests = [row(float(index)) for index in range(100)]
    async with MicroBatcher(server, max_batch_size=32, batch_timeout_s=0.002) as batcher:
        results = await asyncio.gather(*(batcher.submit(inputs) for inputs in requests))
    for result, inputs in zip(results, requests, strict=True):
        assert_own_rows(result, inputs)
        assert result.model_version == 7 and result.model_name == "m"
    assert sum(server.batch_rows) == 100
    assert max(server.batch_rows) == 32
    assert len(server.batches) == 4


async def test_full_batches_leave_at_once_and_keep_leaving_until_the_queue_is_empty() -> None:
    server = FakeServer()
    batcher = MicroBatcher(server, max_batch_size=32, batch_timeout_s=LONG_S)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(100)]
    # Three full batches need no timer; the last 4 rows wait for theirs.
    async with asyncio.timeout(10):
        done = await asyncio.gather(*tasks[:96])
    assert server.batch_rows == [32, 32, 32]
    assert batcher.queued == 4
    assert all(not task.done() for task in tasks[96:])
    await batcher.close()  # close() sends what is queued without waiting for the timeout
    assert server.batch_rows == [32, 32, 32, 4]
    for index, result in enumerate([*done, *(task.result() for task in tasks[96:])]):
        assert_own_rows(result, row(index))


async def test_a_sleeping_dispatcher_wakes_when_a_batch_fills_up() -> None:
    server = FakeServer()
    batcher = MicroBatcher(server, max_batch_size=8, batch_timeout_s=LONG_S)
    first = asyncio.create_task(batcher.submit(row(0)))
    for _ in range(5):
        await asyncio.sleep(0)  # the dispatcher now sleeps until the first request is due
    assert server.batches == []
    rest = [asyncio.create_task(batcher.submit(row(i))) for i in range(1, 8)]
    async with asyncio.timeout(10):
        results = await asyncio.gather(first, *rest)
    assert server.batch_rows == [8]
    assert_own_rows(results[7], row(7))
    await batcher.close()


async def test_a_request_cancelled_after_being_taken_is_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = FakeServer()
    batcher = MicroBatcher(server, max_batch_size=3, batch_timeout_s=LONG_S)
    tasks: list[asyncio.Task[PredictResult]] = []
    real_take = MicroBatcher._take

    def take_then_cancel_the_first(self: MicroBatcher, group: Any) -> Any:
        taken = real_take(self, group)
        tasks[0].cancel()  # cancelled between leaving the queue and the batch being sent
        return taken

    monkeypatch.setattr(MicroBatcher, "_take", take_then_cancel_the_first)
    tasks.extend(asyncio.create_task(batcher.submit(row(i))) for i in range(3))
    async with asyncio.timeout(10):
        await asyncio.wait(tasks)
    assert tasks[0].cancelled()
    assert server.batch_rows == [2]
    assert_own_rows(tasks[2].result(), row(2))
    await batcher.close()


async def test_a_slot_is_given_back_when_its_ready_requests_were_all_cancelled() -> None:
    server = FakeServer()
    server.gate = asyncio.Event()
    batcher = MicroBatcher(server, max_batch_size=4, batch_timeout_s=0, max_batches_in_flight=1)
    in_flight = asyncio.create_task(batcher.submit(row(0)))
    for _ in range(100):
        await asyncio.sleep(0)
        if server.batches:
            break
    waiting = asyncio.create_task(batcher.submit(row(1)))  # ready, but no slot is free
    for _ in range(5):
        await asyncio.sleep(0)  # the dispatcher now waits for the slot
    assert batcher._slots.locked() and batcher.queued == 1
    waiting.cancel()
    server.gate.set()
    async with asyncio.timeout(10):
        assert_own_rows(await in_flight, row(0))
        for _ in range(100):
            await asyncio.sleep(0)  # the dispatcher gets the slot, finds nothing left, ends
            if batcher._dispatcher is not None and batcher._dispatcher.done():
                break
        assert not batcher._slots.locked()
        assert_own_rows(await batcher.submit(row(2)), row(2))
    assert waiting.cancelled()
    assert server.batch_rows == [1, 1]
    await batcher.close()


async def test_queued_requests_end_when_the_dispatcher_is_cancelled() -> None:
    # What an event loop shutting down does to the batcher's own task.
    batcher = MicroBatcher(FakeServer(), max_batch_size=32, batch_timeout_s=LONG_S)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(3)]
    await asyncio.sleep(0)
    assert batcher._dispatcher is not None
    batcher._dispatcher.cancel()
    async with asyncio.timeout(10):
        await asyncio.wait(tasks)
    assert all(task.cancelled() for task in tasks)
    assert batcher.queued == 0
    # A later submit starts a new dispatcher; close() sends it without waiting for the timeout.
    later = asyncio.create_task(batcher.submit(row(5)))
    await asyncio.sleep(0)
    await batcher.close()
    assert_own_rows(later.result(), row(5))


async def test_requests_end_when_their_batch_task_is_cancelled() -> None:
    # What an event loop shutting down does to a batch waiting for the server.
    server = FakeServer()
    server.gate = asyncio.Event()
    batcher = MicroBatcher(server, max_batch_size=2, batch_timeout_s=0)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(2)]
    for _ in range(100):
        await asyncio.sleep(0)
        if server.batches:
            break
    assert batcher.batches_in_flight == 1
    for batch_task in list(batcher._batches):
        batch_task.cancel()
    async with asyncio.timeout(10):
        await asyncio.wait(tasks)
    assert all(task.cancelled() for task in tasks)
    assert batcher.batches_in_flight == 0 and not batcher._slots.locked()
    server.gate.set()
    assert_own_rows(await batcher.submit(row(9)), row(9))
    await batcher.close()


async def test_a_partial_batch_leaves_when_its_oldest_request_has_waited_the_timeout() -> None:
    server = FakeServer()
    async with MicroBatcher(server, max_batch_size=32, batch_timeout_s=0.05) as batcher:
        results = await asyncio.gather(*(batcher.submit(row(i)) for i in range(3)))
    assert server.batch_rows == [3]
    # Each request waited for its batch's timer: the latency covers the queueing.
    assert all(result.latency_s >= 0.049 for result in results)


async def test_timeout_zero_sends_whatever_is_queued() -> None:
    server = FakeServer()
    async with MicroBatcher(server, max_batch_size=32, batch_timeout_s=0) as batcher:
        # Submits started in the same loop iteration are all queued before the dispatcher runs.
        results = await asyncio.gather(*(batcher.submit(row(i)) for i in range(10)))
        alone = await batcher.submit(row(99))
    assert server.batch_rows == [10, 1]
    assert_own_rows(alone, row(99))
    for index, result in enumerate(results):
        assert_own_rows(result, row(index))


async def test_requests_with_other_keys_dtypes_or_shapes_never_share_a_batch() -> None:
    server = FakeServer()
    kinds: list[dict[str, np.ndarray]] = [
        row(1.0),
        row(2.0, width=4),
        row(3.0, dtype=np.float64),
        {"x": np.ones((1, 3), np.float32), "mask": np.ones((1, 3), np.int64)},
        {"tokens": np.ones((1, 3), np.float32)},
        {"prompt": np.array([b"hi"], dtype=object)},
    ]
    requests = [kind for kind in kinds for _ in range(3)]
    random.Random(5).shuffle(requests)
    async with MicroBatcher(server, max_batch_size=32, batch_timeout_s=0.01) as batcher:
        results = await asyncio.gather(*(batcher.submit(inputs) for inputs in requests))
    for result, inputs in zip(results, requests, strict=True):
        assert_own_rows(result, inputs)
    assert sorted(server.batch_rows) == [3] * len(kinds)
    signatures = {
        tuple(sorted((alias, a.dtype.str, a.shape[1:]) for alias, a in batch.items()))
        for batch in server.batches
    }
    assert len(signatures) == len(kinds)  # one batch per kind: no batch mixes two kinds


async def test_multi_row_requests_split_back_and_an_oversized_one_goes_alone() -> None:
    server = FakeServer()
    requests = [
        {"x": np.arange(rows * 2, dtype=np.int32).reshape(rows, 2) + rows} for rows in (3, 5, 50, 2)
    ]
    async with MicroBatcher(server, max_batch_size=8, batch_timeout_s=0.01) as batcher:
        results = await asyncio.gather(*(batcher.submit(inputs) for inputs in requests))
    for result, inputs in zip(results, requests, strict=True):
        assert_own_rows(result, inputs)
    assert sorted(server.batch_rows) == [2, 8, 50]


async def test_bad_inputs_are_rejected_with_clear_errors() -> None:
    batcher = MicroBatcher(FakeServer())
    with pytest.raises(ValueError, match="inputs is empty"):
        await batcher.submit({})
    with pytest.raises(ValueError, match=r"input 'x' is a scalar \(shape \(\)\); expected rows"):
        await batcher.submit({"x": np.float32(1.0)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"different row counts \{'a': 2, 'b': 3\}"):
        await batcher.submit({"a": np.ones((2, 1)), "b": np.ones((3, 1))})
    assert batcher.queued == 0
    for bad in ({"max_batch_size": 0}, {"max_queue": 0}, {"batch_timeout_s": -1.0}):
        with pytest.raises(ValueError, match="expected"):
            MicroBatcher(FakeServer(), **bad)  # type: ignore[arg-type]


async def test_outputs_that_cannot_be_split_fail_the_batch_clearly() -> None:
    server = FakeServer()
    server.reshape_output = (5,)
    async with MicroBatcher(server, max_batch_size=2, batch_timeout_s=LONG_S) as batcher:
        outcomes = await asyncio.gather(
            batcher.submit(row(1)), batcher.submit(row(2)), return_exceptions=True
        )
        assert all(isinstance(outcome, BatchOutputError) for outcome in outcomes)
        message = str(outcomes[0])
        assert "output 'odd' has shape (5,)" in message and "2 rows from 2 requests" in message
    # A batch of one gets the outputs exactly as the server sent them.
    async with MicroBatcher(server, max_batch_size=2, batch_timeout_s=0) as batcher:
        alone = await batcher.submit(row(3))
    assert alone.outputs["odd"].shape == (5,)


async def test_a_server_error_fails_only_its_own_batch() -> None:
    server = FakeServer()
    server.failures[1] = ServingError("RESOURCE_EXHAUSTED", "batch queue is full")
    stats = StatsCollector()
    async with MicroBatcher(
        server, max_batch_size=4, batch_timeout_s=LONG_S, stats=stats
    ) as batcher:
        outcomes = await asyncio.gather(
            *(batcher.submit(row(i)) for i in range(12)), return_exceptions=True
        )
        later = await asyncio.gather(*(batcher.submit(row(i)) for i in range(4)))
    failed_values = {float(v) for v in server.batches[1]["x"][:, 0]}
    assert len(failed_values) == 4
    for index, outcome in enumerate(outcomes):
        if index in failed_values:
            assert isinstance(outcome, ServingError)
            assert str(outcome) == "RESOURCE_EXHAUSTED: batch queue is full"
        else:
            assert isinstance(outcome, PredictResult)
            assert_own_rows(outcome, row(index))
    assert len(later) == 4
    snapshot = stats.snapshot()
    assert snapshot.errors_by_code == {"RESOURCE_EXHAUSTED": 4}
    assert snapshot.requests_total == 16 and snapshot.ok_total == 12
    assert snapshot.batches_total == 4 and snapshot.batch_fill_ratio == 1.0
    assert snapshot.versions == {7: 12} and snapshot.in_flight == 0


async def test_it_survives_exceptions_in_a_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    server.failures[0] = RuntimeError("send blew up")
    batcher = MicroBatcher(server, max_batch_size=2, batch_timeout_s=LONG_S)
    first = await asyncio.gather(
        batcher.submit(row(1)), batcher.submit(row(2)), return_exceptions=True
    )
    assert [str(outcome) for outcome in first] == ["send blew up"] * 2

    # Concatenation failing (e.g. out of memory) fails that batch only.
    real_concatenate = np.concatenate
    calls = {"count": 0}

    def concatenate_failing_once(*args: Any, **kwargs: Any) -> np.ndarray:
        calls["count"] += 1
        if calls["count"] == 1:
            raise MemoryError("no room for the batch")
        return real_concatenate(*args, **kwargs)

    monkeypatch.setattr(np, "concatenate", concatenate_failing_once)
    second = await asyncio.gather(
        batcher.submit(row(3)), batcher.submit(row(4)), return_exceptions=True
    )
    assert all(isinstance(outcome, MemoryError) for outcome in second)

    # A bug in the dispatcher itself fails what is queued, and the next submit starts afresh.
    real_take = MicroBatcher._take
    monkeypatch.setattr(MicroBatcher, "_take", lambda self, group: 1 / 0)
    third = await asyncio.gather(
        batcher.submit(row(5)), batcher.submit(row(6)), return_exceptions=True
    )
    assert all(isinstance(outcome, ZeroDivisionError) for outcome in third)
    monkeypatch.setattr(MicroBatcher, "_take", real_take)

    fourth = await asyncio.gather(batcher.submit(row(7)), batcher.submit(row(8)))
    assert_own_rows(fourth[1], row(8))
    assert batcher.queued == 0
    await batcher.close()
    assert batcher.batches_in_flight == 0


async def test_cancelled_requests_are_dropped_before_sending() -> None:
    server = FakeServer()
    stats = StatsCollector()
    batcher = MicroBatcher(server, max_batch_size=32, batch_timeout_s=LONG_S, stats=stats)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(10)]
    await asyncio.sleep(0)
    assert batcher.queued == 10
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks[::2], return_exceptions=True)
    assert batcher.queued == 5  # the queue bound counts only live requests
    await batcher.close()
    assert server.batch_rows == [5]
    assert sorted(float(v) for v in server.batches[0]["x"][:, 0]) == [1, 3, 5, 7, 9]
    for index, task in enumerate(tasks):
        assert task.cancelled() == (index % 2 == 0)
    snapshot = stats.snapshot()
    assert snapshot.errors_by_code == {"CANCELLED": 5} and snapshot.in_flight == 0


async def test_cancellation_storm(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[dict[str, Any]] = []
    watch_loop(errors)
    rng = random.Random(1234)
    server = FakeServer(delay_s=0.004)
    stats = StatsCollector()
    batcher = MicroBatcher(
        server, max_batch_size=16, batch_timeout_s=0.002, max_batches_in_flight=3, stats=stats
    )
    requests = [row(float(i)) for i in range(1000)]
    tasks = [asyncio.create_task(batcher.submit(inputs)) for inputs in requests]
    loop = asyncio.get_running_loop()
    # Cancel half of them at random moments: queued, in flight, or just answered.
    for index in rng.sample(range(1000), 500):
        loop.call_later(rng.random() * 0.05, tasks[index].cancel)
    async with asyncio.timeout(20):
        await asyncio.wait(tasks)
        await asyncio.sleep(0.06)  # let the last scheduled cancel() calls run (no-ops by now)
        await batcher.close()
    cancelled = [task for task in tasks if task.cancelled()]
    assert cancelled
    for task, inputs in zip(tasks, requests, strict=True):
        if not task.cancelled():
            assert_own_rows(task.result(), inputs)
    assert max(server.batch_rows) <= 16
    assert server.max_in_flight <= 3
    assert batcher.queued == 0 and batcher.batches_in_flight == 0
    snapshot = stats.snapshot()
    assert snapshot.in_flight == 0
    assert snapshot.requests_total == 1000
    assert snapshot.errors_by_code == {"CANCELLED": len(cancelled)}
    assert errors == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_ten_thousand_concurrent_submits() -> None:
    errors: list[dict[str, Any]] = []
    watch_loop(errors)
    server = FakeServer(delay_s=0.001)
    stats = StatsCollector()
    queued_seen: list[int] = []
    batcher = MicroBatcher(server, max_batch_size=32, batch_timeout_s=0.001, stats=stats)

    async def send(inputs: dict[str, np.ndarray]) -> PredictResult:
        queued_seen.append(batcher.queued)
        return await server(inputs)

    batcher._send = send
    values = np.arange(10_000, dtype=np.float32).reshape(-1, 1)
    async with asyncio.timeout(60):
        results = await asyncio.gather(
            *(batcher.submit({"x": values[i : i + 1]}) for i in range(10_000))
        )
        await batcher.close()
    for index in range(0, 10_000, 97):
        assert results[index].outputs["x"][0, 0] == index
    assert all(result.outputs["x"].shape == (1, 1) for result in results)
    assert sum(server.batch_rows) == 10_000
    assert max(server.batch_rows) == 32
    assert max(queued_seen) <= 10_000
    assert server.max_in_flight <= 4
    snapshot = stats.snapshot()
    assert snapshot.requests_total == 10_000 and snapshot.ok_total == 10_000
    assert snapshot.batch_max_size == 32
    assert errors == []


async def test_the_queue_bound_rejects_at_once_under_overload() -> None:
    server = FakeServer()
    server.gate = asyncio.Event()  # the server holds every batch until the gate opens
    batcher = MicroBatcher(
        server, max_batch_size=4, batch_timeout_s=0, max_queue=100, max_batches_in_flight=2
    )
    # All 2,000 submits run before the dispatcher: 100 queue, the rest are rejected at once.
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(2000)]
    for _ in range(1000):
        await asyncio.sleep(0)
        if len(server.batches) == 2:
            break
    rejected = [task for task in tasks if task.done()]
    assert rejected == tasks[100:]
    for task in rejected:
        assert isinstance(task.exception(), BatcherFull)
    with pytest.raises(BatcherFull, match=r"queue is full: 100 requests wait \(max_queue=100\)"):
        rejected[0].result()
    # Two batches (8 rows) are in flight, so 8 more fit in the queue, and not one more.
    assert server.batch_rows == [4, 4] and batcher.queued == 92
    more = [asyncio.create_task(batcher.submit(row(100 + i))) for i in range(8)]
    await asyncio.sleep(0)
    assert batcher.queued == 100 and not any(task.done() for task in more)
    with pytest.raises(BatcherFull):
        await batcher.submit(row(-1))
    server.gate.set()
    async with asyncio.timeout(10):
        results = await asyncio.gather(*tasks[:100], *more)
    for index, result in enumerate(results):
        assert_own_rows(result, row(index))
    assert max(server.batch_rows) == 4 and server.max_in_flight == 2
    await batcher.close()


async def test_batches_in_flight_are_limited_and_used() -> None:
    server = FakeServer(delay_s=0.01)
    async with MicroBatcher(
        server, max_batch_size=2, batch_timeout_s=0, max_batches_in_flight=3
    ) as batcher:
        await asyncio.gather(*(batcher.submit(row(i)) for i in range(40)))
    assert server.max_in_flight == 3
    # While every slot was busy the queue grew, so later batches were full.
    assert server.batch_rows.count(2) >= 15


async def test_close_sends_what_is_queued_and_then_refuses_submits() -> None:
    server = FakeServer()
    batcher = MicroBatcher(server, max_batch_size=32, batch_timeout_s=LONG_S)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(3)]
    await asyncio.sleep(0)
    await batcher.close()
    assert all(task.done() for task in tasks)
    assert server.batch_rows == [3]
    with pytest.raises(BatcherClosed, match="closed"):
        await batcher.submit(row(1))
    await batcher.close()  # idempotent


async def test_in_flight_is_counted_while_the_server_holds_requests() -> None:
    server = FakeServer()
    server.gate = asyncio.Event()
    stats = StatsCollector()
    batcher = MicroBatcher(server, max_batch_size=8, batch_timeout_s=0, stats=stats)
    tasks = [asyncio.create_task(batcher.submit(row(i))) for i in range(5)]
    for _ in range(100):
        await asyncio.sleep(0)
        if server.batches:
            break
    assert stats.snapshot().in_flight == 5
    server.gate.set()
    await asyncio.gather(*tasks)
    snapshot = stats.snapshot()
    assert snapshot.in_flight == 0 and snapshot.batch_size_mean == 5.0
    assert snapshot.batch_fill_ratio == 5 / 8
    await batcher.close()


def test_event_loop_closing_with_requests_queued_and_in_flight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer()
    tasks: list[asyncio.Task[PredictResult]] = []
    loop_errors: list[dict[str, Any]] = []

    async def main() -> None:
        watch_loop(loop_errors)
        server.gate = asyncio.Event()  # never set: the in-flight batch never answers
        batcher = MicroBatcher(server, max_batch_size=4, batch_timeout_s=LONG_S)
        tasks.extend(asyncio.create_task(batcher.submit(row(i))) for i in range(10))
        for _ in range(100):
            await asyncio.sleep(0)
            if len(server.batches) == 2:
                break
        assert batcher.queued == 2 and batcher.batches_in_flight == 2
        # Return without closing: asyncio.run cancels every task that is left.

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert len(tasks) == 10 and all(task.cancelled() for task in tasks)
    assert [str(w.message) for w in caught] == []
    assert loop_errors == []
    assert "destroyed but it is pending" not in caplog.text


async def test_through_a_real_grpc_server(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(served_version=3)
    stats = StatsCollector()
    settings = ClientSettings(targets=(fault_server.target,), timeout_s=10)
    requests = [
        {
            "x": np.full((rows, 3), index, np.float32),
            "prompt": np.array([b"p%d" % index] * rows, object),
        }
        for index, rows in enumerate([1, 2, 1, 3] * 10)
    ]
    async with ServingClient(settings) as client:
        async with MicroBatcher(
            functools.partial(client.predict, ModelSpec("deepchat_model")),
            max_batch_size=16,
            batch_timeout_s=0.005,
            stats=stats,
        ) as batcher:
            results = await asyncio.gather(*(batcher.submit(inputs) for inputs in requests))
    for result, inputs in zip(results, requests, strict=True):
        assert_own_rows(result, inputs)
        assert result.model_version == 3 and result.model_name == "deepchat_model"
    predicts = fault_server.calls_to("Predict")
    batch_rows = [call.request.inputs["x"].tensor_shape.dim[0].size for call in predicts]
    assert sum(batch_rows) == 70 and max(batch_rows) <= 16
    assert len(predicts) < len(requests)  # requests really shared RPCs
    snapshot = stats.snapshot()
    assert snapshot.requests_total == 40 and snapshot.versions == {3: 40}
    assert snapshot.batches_total == len(predicts)


async def test_server_errors_and_deadlines_through_a_real_grpc_server(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(
        error=(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
    )
    stats = StatsCollector()
    settings = ClientSettings(targets=(fault_server.target,), timeout_s=10, max_retries=0)
    async with ServingClient(settings) as client:
        async with MicroBatcher(
            functools.partial(client.predict, ModelSpec("nope")), stats=stats
        ) as batcher:
            outcomes = await asyncio.gather(
                *(batcher.submit(row(i)) for i in range(6)), return_exceptions=True
            )
            assert all(isinstance(outcome, ServingError) for outcome in outcomes)
            assert {str(outcome) for outcome in outcomes} == {
                "NOT_FOUND: Servable not found for request: Latest(nope)"
            }
            # A server slower than the deadline: every request of the batch sees DEADLINE_EXCEEDED.
            fault_server.behaviour = Behaviour(delay_s=5)
            slow = MicroBatcher(
                functools.partial(client.predict, ModelSpec("m"), timeout_s=0.05), stats=stats
            )
            late = await asyncio.gather(
                *(slow.submit(row(i)) for i in range(3)), return_exceptions=True
            )
            await slow.close()
    assert {getattr(outcome, "code", None) for outcome in late} == {"DEADLINE_EXCEEDED"}
    snapshot = stats.snapshot()
    assert snapshot.errors_by_code == {"NOT_FOUND": 6, "DEADLINE_EXCEEDED": 3}
