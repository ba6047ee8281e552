"""The embedded server end to end over gRPC, beside a bare grpc.aio echo service in the same run.

Unbatched Predict req/s, server-side batching items/s and client-side batches items/s on the
demo chat model; the echo service shows the Python gRPC ceiling the server sits under.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np

from core.embedded.launcher import EmbeddedServer, free_loopback_port
from core.wire import protos
from core.wire.tensors import make_tensor_proto

RUNS = 3  # each figure is the median of this many timed runs
RUN_SECONDS = 3.0
WARMUP_SECONDS = 0.5
QUESTIONS = [
    b"How do I enable batching?",
    b"what is p99 latency",
    b"servable not found for request",
    b"how do I roll back a bad model version",
    b"which port does the rest api use",
    b"how do I quit the console",
]
ECHO_METHOD = "/bench.Echo/Echo"
ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, sys, grpc

    async def main(port):
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        echo = grpc.unary_unary_rpc_method_handler(_echo)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("bench.Echo", {"Echo": echo})]
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    async def _echo(request, context):
        return request

    asyncio.run(main(int(sys.argv[1])))
    """
)


async def _closed_loop_rate(
    call: Callable[[], Awaitable[object]], concurrency: int, items_per_call: int
) -> float:
    """Items per second that `concurrency` back-to-back callers complete in RUN_SECONDS."""
    completed = 0
    measuring = False
    stop_at = time.monotonic() + WARMUP_SECONDS + RUN_SECONDS

    async def worker() -> None:
        nonlocal completed
        while time.monotonic() < stop_at:
            await call()
            if measuring:
                completed += items_per_call

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(WARMUP_SECONDS)
    measuring = True
    started = time.monotonic()
    await asyncio.gather(*workers)
    return completed / (time.monotonic() - started)


async def _median_rate(
    target: str,
    make_call: Callable[[grpc.aio.Channel], Callable[[], Awaitable[object]]],
    concurrency: int,
    items_per_call: int,
) -> float:
    rates = []
    for _ in range(RUNS):
        async with grpc.aio.insecure_channel(target) as channel:
            rates.append(await _closed_loop_rate(make_call(channel), concurrency, items_per_call))
    return statistics.median(rates)


def _echo_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    echo = channel.unary_unary(ECHO_METHOD)
    payload = b"x" * 64
    return lambda: echo(payload)


def _predict_call(items: int) -> Callable[[grpc.aio.Channel], Callable[[], Awaitable[object]]]:
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = "deepchat_model"
    text = np.array([QUESTIONS[i % len(QUESTIONS)] for i in range(items)], dtype=object)
    request.inputs["text"].CopyFrom(make_tensor_proto(text))

    def make(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return lambda: stub.Predict(request)

    return make


def _start_echo_server() -> tuple[subprocess.Popen[str], str]:
    port = free_loopback_port()
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the echo server did not start")
    return process, f"127.0.0.1:{port}"


def _export_demo_model(directory: Path) -> Path:
    base_path = directory / "deepchat_model"
    subprocess.run(
        [sys.executable, "-m", "cli", "export-demo-model", str(base_path)],
        check=True,
        capture_output=True,
    )
    return base_path


async def _measure(base_path: Path, log_dir: Path) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    echo, echo_target = _start_echo_server()
    try:
        rate = await _median_rate(echo_target, _echo_call, 32, 1)
        rows.append(("bare grpc.aio echo, 64 B, 32 concurrent", "req/s", rate))
    finally:
        echo.kill()
        echo.wait()

    plain = EmbeddedServer(
        "deepchat_model", base_path, enable_batching=False, log_path=log_dir / "plain.log"
    )
    async with plain:
        for concurrency in (1, 16):
            rate = await _median_rate(plain.grpc_target, _predict_call(1), concurrency, 1)
            rows.append((f"Predict, 1 item, {concurrency} concurrent, no batching", "req/s", rate))
        rate = await _median_rate(plain.grpc_target, _predict_call(32), 4, 32)
        rows.append(("Predict, 32 items per request (client batch), 4 concurrent", "items/s", rate))

    batched = EmbeddedServer(
        "deepchat_model",
        base_path,
        enable_batching=True,
        batching_parameters={
            "max_batch_size": 32,
            "batch_timeout_micros": 1000,
            "num_batch_threads": 2,
            "max_enqueued_batches": 100,
        },
        log_path=log_dir / "batched.log",
    )
    async with batched:
        rate = await _median_rate(batched.grpc_target, _predict_call(1), 64, 1)
        rows.append(("Predict, 1 item, 64 concurrent, --enable_batching (max 32)", "items/s", rate))
    return rows


def run() -> str:
    """The Markdown section for docs/BENCHMARKS.md."""
    with tempfile.TemporaryDirectory(prefix="bench_server-") as directory:
        base_path = _export_demo_model(Path(directory))
        rows = asyncio.run(_measure(base_path, Path(directory)))
    echo_rate = rows[0][2]
    table = [
        "| workload (client: one grpc.aio process) | unit | rate | vs echo req/s |",
        "|---|---|---:|---:|",
    ]
    for label, unit, rate in rows:
        table.append(f"| {label} | {unit} | {rate:,.0f} | {rate / echo_rate:.2f} |")
    return (
        "## Embedded server over gRPC\n\n"
        "`deepchat-tfs serve` with the demo chat model (`deepchat_model` version 2), driven by "
        f"closed-loop grpc.aio callers for {RUN_SECONDS:.0f} s after a "
        f"{WARMUP_SECONDS:.1f} s warm-up; each figure is the median of {RUNS} runs. The bare "
        "echo service (a generic grpc.aio handler in its own process) is the ceiling of Python "
        "gRPC on this machine, measured in the same run.\n\n" + "\n".join(table) + "\n"
    )


if __name__ == "__main__":
    print(run())
