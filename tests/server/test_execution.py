"""The executor between requests and sessions: thread pool, batch schedulers, error mapping."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from core.wire import protos
from server.batching import BatchingParameters
from server.errors import BATCH_QUEUE_FULL_MESSAGE, ServingStatus
from server.execution import Executor


class OpError(Exception):
    """Shaped like TensorFlow's OpError: an error_code and a message."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class DoublingServable:
    """y = 2 * x, recording each run's batch size; runs can be held at a gate."""

    name = "double"
    version = 1

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def run(
        self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str], *, timeout_ms: Any = None
    ) -> list[np.ndarray]:
        self.started.set()
        assert self.gate.wait(10)
        x = feeds["x:0"]
        if x.dtype != np.float32:
            raise OpError(3, "Expects arg[0] to be float but int32 is provided")
        self.batch_sizes.append(x.shape[0])
        return [x * 2 for _ in fetches]


SIGNATURE = protos.meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
SIGNATURE.inputs["x"].name = "x:0"
SIGNATURE.outputs["y"].name = "y:0"


async def _run(executor: Executor, servable: Any, x: np.ndarray, deadline: float | None = None):
    return await executor.run(
        servable, "serving_default", SIGNATURE, {"x": x}, ("y",), deadline=deadline, api="Predict"
    )


@pytest.fixture
async def plain_executor() -> AsyncIterator[Executor]:
    executor = Executor(max_threads=2)
    yield executor
    await executor.close()


async def test_unbatched_runs_return_outputs_by_alias(plain_executor: Executor) -> None:
    outputs = await _run(plain_executor, DoublingServable(), np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(outputs["y"], [2.0, 4.0])


async def test_tensorflow_errors_keep_their_code_and_text(plain_executor: Executor) -> None:
    with pytest.raises(ServingStatus) as caught:
        await _run(plain_executor, DoublingServable(), np.array([1], np.int32))
    assert (caught.value.code_name, caught.value.message) == (
        "INVALID_ARGUMENT",
        "Expects arg[0] to be float but int32 is provided",
    )


async def test_a_passed_deadline_answers_deadline_exceeded(plain_executor: Executor) -> None:
    servable = DoublingServable()
    servable.gate.clear()
    try:
        with pytest.raises(ServingStatus) as caught:
            await _run(plain_executor, servable, np.ones(1, np.float32), time.monotonic() + 0.05)
        assert caught.value.code_name == "DEADLINE_EXCEEDED"
    finally:
        servable.gate.set()


async def test_concurrent_requests_merge_into_one_batch() -> None:
    parameters = BatchingParameters(
        max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1
    )
    executor = Executor(max_threads=2, batching_parameters=parameters)
    servable = DoublingServable()
    try:
        results = await asyncio.gather(
            *(_run(executor, servable, np.full(2, i, np.float32)) for i in range(4))
        )
    finally:
        await executor.close()
    assert servable.batch_sizes == [8]
    for index, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], [2.0 * index, 2.0 * index])


async def test_a_full_batch_queue_answers_unavailable() -> None:
    parameters = BatchingParameters(
        max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1
    )
    executor = Executor(max_threads=2, batching_parameters=parameters)
    servable = DoublingServable()
    servable.gate.clear()
    try:
        running = asyncio.create_task(_run(executor, servable, np.ones(1, np.float32)))
        assert await asyncio.to_thread(servable.started.wait, 5)
        queued = asyncio.create_task(_run(executor, servable, np.ones(1, np.float32)))
        await asyncio.sleep(0)
        with pytest.raises(ServingStatus) as caught:
            await _run(executor, servable, np.ones(1, np.float32))
        assert caught.value.code_name == "UNAVAILABLE"
        assert caught.value.message.startswith(BATCH_QUEUE_FULL_MESSAGE)
        servable.gate.set()
        await asyncio.gather(running, queued)
    finally:
        servable.gate.set()
        await executor.close()


async def test_batching_refuses_scalars_as_tf_serving_does() -> None:
    executor = Executor(max_threads=1, batching_parameters=BatchingParameters(max_batch_size=4))
    try:
        with pytest.raises(ServingStatus) as caught:
            await _run(executor, DoublingServable(), np.float32(1.0))
    finally:
        await executor.close()
    assert (caught.value.code_name, caught.value.message) == (
        "INVALID_ARGUMENT",
        "Batching Run() input tensors must have at least one dimension",
    )
