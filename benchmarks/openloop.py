"""A lean open-loop and closed-loop gRPC driver for the server benchmarks, and CPU accounting.

Open loop sends at fixed intended times and counts latency from them (wrk2's correction); the
server's CPU is utime+stime of its process over the run, divided by the requests it answered.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
import numpy as np
import psutil

from core.embedded.launcher import free_loopback_port

# A Predict service that answers every call with an empty PredictResponse without parsing the
# request: the floor of Python gRPC on this machine, for CPU-per-request ratios.
BARE_PREDICT_SERVER = textwrap.dedent(
    """
    import asyncio, sys, grpc

    async def answer(request, context):
        return b""

    async def main(port):
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(answer)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService", {"Predict": handler})]
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main(int(sys.argv[1])))
    """
)
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
LATE_AFTER_S = 0.002  # a send leaving later than this after its intended time is late


@dataclass(frozen=True)
class RunResult:
    """One measured run: latencies (ms) from intended send times, late sends, server CPU."""

    latencies_ms: np.ndarray
    late_sends: int
    elapsed_s: float
    server_cpu_s: float
    errors: int = 0
    first_ms: float | None = None  # one call after connecting, before the clock starts

    @property
    def requests(self) -> int:
        """Requests answered."""
        return int(self.latencies_ms.size)

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU (utime+stime) per answered request, in ms."""
        return self.server_cpu_s / max(1, self.requests) * 1000

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.requests / self.elapsed_s

    def percentile(self, q: float) -> float:
        """A latency percentile in ms."""
        return float(np.percentile(self.latencies_ms, q))


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads) so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def start_bare_server(
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """The bare Predict service in its own process (env: extra variables); (process, target)."""
    port = free_loopback_port()
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_PREDICT_SERVER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the bare Predict server did not start")
    return process, f"127.0.0.1:{port}"


def _call(channel: grpc.aio.Channel, payload: bytes) -> Callable[[], Awaitable[bytes]]:
    # Raw bytes both ways: the client's own protobuf work stays out of the server's figures.
    method = channel.unary_unary(PREDICT_METHOD)
    return lambda: method(payload, timeout=30)


async def open_loop(
    target: str, payload: bytes, rate: float, seconds: float, pid: int
) -> RunResult:
    """Send `rate` requests per second for `seconds`, never waiting for replies."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = _call(channel, payload)
        # Connect, then one call before the clock starts: on a fresh server, its first request.
        first_ms = (await first_calls_ms(channel, payload, 1))[0]
        latencies: list[float] = []
        late = 0
        errors = 0

        async def one(intended_at: float) -> None:
            nonlocal errors
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                return
            latencies.append(time.perf_counter() - intended_at)

        tasks = []
        count = int(rate * seconds)
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter() + 0.005
        for index in range(count):
            intended_at = started + index / rate
            delay = intended_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -LATE_AFTER_S:
                late += 1
            tasks.append(asyncio.create_task(one(intended_at)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    return RunResult(np.array(latencies) * 1000, late, elapsed, cpu, errors, first_ms)


async def first_calls_ms(channel: grpc.aio.Channel, payload: bytes, calls: int) -> list[float]:
    """The latency of `calls` Predict calls one after another, once the channel is connected."""
    await channel.channel_ready()
    call = _call(channel, payload)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def closed_loop(
    target: str, payload: bytes, concurrency: int, seconds: float, pid: int
) -> RunResult:
    """`concurrency` callers back to back for `seconds`: the saturated rate and its CPU."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = _call(channel, payload)
        await call()
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                sent_at = time.perf_counter()
                try:
                    await call()
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent_at)

        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    return RunResult(np.array(latencies) * 1000, 0, elapsed, cpu, errors)


def median(values: list[float]) -> float:
    """The median of a few runs."""
    return float(statistics.median(values))
