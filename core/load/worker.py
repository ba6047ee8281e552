"""A load worker process: its own event loop and client, streaming what it measures to the parent.

The parent (core.load.burst.BurstRun) starts one per --workers as `python -c` running main() below,
with two pipes; the worker imports only core (never TensorFlow, Textual or the parent's
__main__). Pickled messages: parent -> worker the WorkerPlan, then ("start", start_at) or
("stop",); worker -> parent ("ready", index), then ("delta", LoadDelta) every 250 ms. A worker
stops by itself when its run is over, when told to, or when its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from core import event_loop
from core.client.serving import (
    ClientSettings,
    ModelSpec,
    PredictResult,
    ServingClient,
    served_version,
)
from core.load import http2
from core.load.generator import LoadGenerator, SendFunction
from core.load.grpc_call import PendingCall
from core.load.inputs import InputRows, rows_of
from core.load.rest import RestTarget, rest_session
from core.load.spec import LoadSpec
from core.metrics.load import LoadDelta, LoadRecorder
from core.wire import protos
from core.wire.tensors import make_tensor_proto

# How often a worker streams a delta, and how often it checks its pipe and its parent.
DELTA_INTERVAL_S = 0.25
CONTROL_INTERVAL_S = 0.02
# Set to "asyncio" to run workers on asyncio's own event loop even where uvloop is installed.
LOOP_ENV = "DEEPCHAT_TFS_WORKER_LOOP"
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


@dataclass(frozen=True)
class BurstTarget:
    """Where a load run goes and what it sends: request bodies are cycled through in order.

    gRPC sends `inputs` as PredictRequests; REST (rest is not None) posts rest.bodies instead.
    """

    settings: ClientSettings
    model: ModelSpec
    inputs: tuple[InputRows, ...]
    rest: RestTarget | None = None

    @property
    def protocol(self) -> str:
        """'grpc' or 'rest'."""
        return "grpc" if self.rest is None else "rest"

    @property
    def label(self) -> str:
        """The targets as one 'host:port[,host:port]' string, or the REST base URL."""
        return self.rest.base_url if self.rest is not None else ",".join(self.settings.targets)


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of a run."""

    index: int
    workers: int
    spec: LoadSpec
    target: BurstTarget
    parent_pid: int
    seed: int = 0


def share(total: int, index: int, parts: int) -> int:
    """Part `index` of `total` split as evenly as possible into `parts`."""
    return total // parts + (1 if index < total % parts else 0)


class PipePair:
    """Two one-way pipes used as one duplex connection of pickled messages."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, message: object) -> None:
        """Send one message."""
        self.writer.send(message)

    def poll(self, timeout: float = 0.0) -> bool:
        """Whether a message (or end of file) is waiting."""
        return self.reader.poll(timeout)

    def recv(self) -> Any:
        """The next message; EOFError when the other side has gone."""
        return self.reader.recv()

    def close(self) -> None:
        """Close both pipes."""
        self.reader.close()
        self.writer.close()


# What the parent runs with `python -c`, followed by the read and the write file descriptor.
WORKER_COMMAND = "from core.load.worker import main; main()"


def main() -> None:
    """Worker process entry: read the plan from the pipe named in argv, then run it."""
    read_fd, write_fd = int(sys.argv[-2]), int(sys.argv[-1])
    conn = PipePair(Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    try:
        plan = conn.recv()
    except (EOFError, OSError):
        return
    worker_main(plan, conn)


def worker_main(plan: WorkerPlan, conn: PipePair) -> None:
    """Run one worker's plan, reporting failures on the pipe instead of a traceback."""
    # The parent decides what Ctrl-C means (a clean stop); the worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        event_loop.run(_work(plan, conn), LOOP_ENV)
    except Exception as error:
        with contextlib.suppress(OSError):
            failure = f"worker {plan.index}: {type(error).__name__}: {error}"
            conn.send(("delta", LoadDelta(plan.index, done=True, failure=failure)))
    finally:
        conn.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The workers' event loop: uvloop's where it is installed, else (or with LOOP_ENV=asyncio)
    asyncio's own (core.event_loop)."""
    return event_loop.loop_factory(LOOP_ENV)


def _predict_requests(target: BurstTarget) -> list[Any]:
    """Each request body as a ready PredictRequest, so sends do no tensor encoding."""
    requests = []
    for inputs in target.inputs:
        request = protos.predict_pb2.PredictRequest()
        target.model.fill(request.model_spec)
        for alias, values in inputs.items():
            request.inputs[alias].CopyFrom(make_tensor_proto(values))
        requests.append(request)
    return requests


def _unbatched_send(client: ServingClient, target: BurstTarget, timeout_s: float) -> SendFunction:
    requests = _predict_requests(target)
    count = len(requests)

    async def send_awaited(index: int) -> int | None:
        return served_version(
            await client.predict_raw(requests[index % count], timeout_s=timeout_s)
        )

    if not client.connected:
        # No channel (its targets did not resolve): each send fails the way a call does.
        return send_awaited

    def send(index: int) -> PendingCall:
        return PendingCall(client.start_predict(requests[index % count], timeout_s))

    return send


def _batched_send(
    client: ServingClient, plan: WorkerPlan, recorder: _Phases
) -> tuple[SendFunction, Callable[[], Awaitable[None]]]:
    from core.client.batcher import MicroBatcher

    spec, target = plan.spec, plan.target
    assert spec.batch_size is not None

    async def send_batch(inputs: dict[str, Any]) -> PredictResult:
        recorder.batch_sent(rows_of(inputs))
        return await client.predict(target.model, inputs, timeout_s=spec.timeout_s)

    batcher = MicroBatcher(
        send_batch,
        max_batch_size=spec.batch_size,
        batch_timeout_s=spec.batch_timeout_ms / 1000,
    )

    async def send(index: int) -> int | None:
        result = await batcher.submit(target.inputs[index % len(target.inputs)])
        return result.model_version

    return send, batcher.close


class _Control:
    """The parent's orders as seen by the worker's event loop."""

    def __init__(self, plan: WorkerPlan, conn: PipePair) -> None:
        self.plan = plan
        self.conn = conn
        self.start_at: float | None = None
        self.started = asyncio.Event()
        self.stop_requested = False

    def poll(self) -> None:
        """Read pending orders; a vanished parent counts as an order to stop."""
        if os.getppid() != self.plan.parent_pid:
            self.stop_requested = True
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message[0] == "start":
                    self.start_at = float(message[1])
                    self.started.set()
                elif message[0] == "stop":
                    self.stop_requested = True
        except (EOFError, OSError):
            self.stop_requested = True
        if self.stop_requested:
            self.started.set()


class _Phases:
    """The warm-up's and the measured window's recorders; batches count in the current one."""

    def __init__(self, plan: WorkerPlan) -> None:
        self.measured = LoadRecorder(plan.index)
        self.warmup = LoadRecorder(plan.index, warmup=True) if plan.spec.warmup_s > 0 else None
        self.measure_at = float("inf")

    def batch_sent(self, rows: int) -> None:
        """Count a client-side batch in the phase it left in."""
        in_warmup = self.warmup is not None and time.monotonic() < self.measure_at
        (self.warmup if in_warmup and self.warmup is not None else self.measured).batch_sent(rows)


async def _work(plan: WorkerPlan, conn: PipePair) -> None:
    spec = plan.spec
    phases = _Phases(plan)
    control = _Control(plan, conn)
    async with contextlib.AsyncExitStack() as stack:
        close_batcher: Callable[[], Awaitable[None]] | None = None
        if plan.target.rest is not None:
            session, send = await rest_session(
                plan.target.rest, spec.timeout_s, _connection_limit(plan)
            )
            stack.push_async_callback(session.close)
        else:
            # One attempt per scheduled request: a load run reports what the server answered,
            # not what retries hid; without retries gRPC also leaves its retry machinery out of
            # every call (core.client.channel), about 10 µs less CPU per request.
            settings = replace(plan.target.settings, timeout_s=spec.timeout_s, max_retries=0)
            unbatched = spec.batch_size is None or spec.batch_size <= 1
            if unbatched and http2.supports(settings):
                load_client, send = await _http2_send(settings, plan.target, spec.timeout_s)
                stack.push_async_callback(load_client.close)
            else:
                send, close_batcher = await _grpc_aio_send(stack, settings, plan, phases)
        conn.send(("ready", plan.index))
        generators = [LoadGenerator(send, phases.measured, timeout_s=spec.timeout_s)]
        warmup_spec = spec.warmup_spec()
        if phases.warmup is not None and warmup_spec is not None:
            generators.append(LoadGenerator(send, phases.warmup, timeout_s=spec.timeout_s))
        watcher = asyncio.ensure_future(_watch(control, generators, phases))
        try:
            await control.started.wait()
            if not control.stop_requested and control.start_at is not None:
                phases.measure_at = control.start_at + spec.warmup_s
                runs = [_generate(plan, spec, generators[0], phases.measure_at)]
                if warmup_spec is not None and len(generators) > 1:
                    runs.append(_generate(plan, warmup_spec, generators[1], control.start_at))
                await asyncio.gather(*runs)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if close_batcher is not None:
                await close_batcher()
        if phases.warmup is not None:
            conn.send(("delta", phases.warmup.take_delta()))
        delta = phases.measured.take_delta(done=True, load_phase_end=generators[0].load_phase_end)
        conn.send(("delta", delta))


async def _http2_send(
    settings: ClientSettings, target: BurstTarget, timeout_s: float
) -> tuple[http2.GrpcLoadClient, SendFunction]:
    """Sends on bench's own HTTP/2 client (core.load.http2), connected before the clock starts."""
    messages = [
        http2.grpc_message(request.SerializeToString()) for request in _predict_requests(target)
    ]
    count = len(messages)
    response_class = protos.predict_pb2.PredictResponse

    def answer(response: bytes) -> int | None:
        return served_version(response_class.FromString(response))

    load_client = http2.GrpcLoadClient(settings, PREDICT_PATH, timeout_s, answer)
    await load_client.connect()

    def send(index: int) -> http2.H2Call:
        return load_client.call(messages[index % count])

    return load_client, send


async def _grpc_aio_send(
    stack: contextlib.AsyncExitStack, settings: ClientSettings, plan: WorkerPlan, phases: _Phases
) -> tuple[SendFunction, Callable[[], Awaitable[None]] | None]:
    """Sends on a ServingClient (grpc.aio): client-side batches, or targets http2 cannot dial."""
    spec = plan.spec
    client = await stack.enter_async_context(ServingClient(settings))
    # Open the channel before the clock starts; any answer (even an error) will do.
    with contextlib.suppress(Exception):
        await client.connect()
        await client.get_model_status(plan.target.model.name)
    if spec.batch_size is not None and spec.batch_size > 1:
        return _batched_send(client, plan, phases)
    return _unbatched_send(client, plan.target, spec.timeout_s), None


def _connection_limit(plan: WorkerPlan) -> int:
    """REST connections this worker may open: its share of the in-flight cap (0 = no cap)."""
    spec = plan.spec
    if spec.mode == "closed" and spec.concurrency is not None:
        return max(share(spec.concurrency, plan.index, plan.workers), 1)
    if spec.max_inflight is not None:
        return max(share(spec.max_inflight, plan.index, plan.workers), 1)
    return 0


async def _watch(control: _Control, generators: list[LoadGenerator], phases: _Phases) -> None:
    """Follow the parent's orders and stream a delta every DELTA_INTERVAL_S."""
    next_delta = time.monotonic() + DELTA_INTERVAL_S
    while True:
        control.poll()
        if control.stop_requested:
            for generator in generators:
                if not generator.aborted:
                    generator.abort()
        if time.monotonic() >= next_delta and control.started.is_set():
            if phases.warmup is not None:
                control.conn.send(("delta", phases.warmup.take_delta()))
            control.conn.send(("delta", phases.measured.take_delta()))
            next_delta += DELTA_INTERVAL_S
        await asyncio.sleep(CONTROL_INTERVAL_S)


async def _generate(
    plan: WorkerPlan, spec: LoadSpec, generator: LoadGenerator, start_at: float
) -> None:
    if spec.mode == "closed":
        assert spec.concurrency is not None
        await generator.closed_loop(
            share(spec.concurrency, plan.index, plan.workers),
            start_at=start_at,
            end_at=None if spec.duration_s is None else start_at + spec.duration_s,
            max_requests=None
            if spec.requests is None
            else share(spec.requests, plan.index, plan.workers),
        )
        return
    # Every worker walks the same schedule (same seed) and takes every workers-th slot, so the
    # sum over workers is exactly the schedule, Poisson or not.
    offsets = spec.open_schedule().offsets(plan.seed)
    if spec.requests is not None:
        offsets = itertools.islice(offsets, spec.requests)
    my_offsets = itertools.islice(offsets, plan.index, None, plan.workers)
    max_inflight = (
        None if spec.max_inflight is None else share(spec.max_inflight, plan.index, plan.workers)
    )
    await generator.open_loop(my_offsets, start_at=start_at, max_inflight=max_inflight)
