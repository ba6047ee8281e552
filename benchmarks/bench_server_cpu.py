"""The embedded server's first seconds and its CPU per request, beside a bare grpc.aio floor.

Start-up: a freshly started server gets 200 req/s of half_plus_two, open loop, for 5 s, with no
client warm-up; latency counts from the intended send times. CPU per request: utime+stime of the
server process / answered requests, for a bare grpc.aio Predict service (an empty
PredictResponse, no parsing), half_plus_two and the demo chat model, side by side in one run at
200 and 1,000 req/s (open loop) and at saturation (closed loop, 32 callers).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.openloop import (
    RunResult,
    closed_loop,
    first_calls_ms,
    median,
    open_loop,
    start_bare_server,
)
from cli.main import SUBCOMMAND_ENVIRONMENT
from core.client.scrape import DEFAULT_METRICS_PATH, RUNTIME_LATENCY, metrics_url, parse_metrics
from core.embedded.launcher import EmbeddedServer, monitoring_config_text
from core.wire import protos
from core.wire.tensors import make_tensor_proto

BARE = "bare grpc.aio"
BARE_IOMGR = "bare grpc.aio, iomgr listener"
RUNS = 3  # each start-up figure is the median of this many runs
# Each CPU figure is the median of this many interleaved rounds (the machine is noisy).
CPU_RUNS = 5
STARTUP_RATE = 200.0
STARTUP_SECONDS = 5.0
CPU_SECONDS = 4.0
CPU_RATES = (200.0, 1000.0)
WARMUP_RATE = 500.0
WARMUP_SECONDS = 2.0
SATURATION_CONCURRENCY = 32
FIRST_CALLS = 3  # requests timed one by one on each fresh demo server
DEMO_BATCHING = {"max_batch_size": 32, "batch_timeout_micros": 2000, "num_batch_threads": 2}
ROOT = Path(__file__).resolve().parent.parent


def _payload(model: str, alias: str, value: Any) -> bytes:
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[alias].CopyFrom(make_tensor_proto(value))
    return bytes(request.SerializeToString())


HALF_PLUS_TWO = _payload("half_plus_two", "x", np.array([[1.0]], np.float32))
DEMO = _payload("deepchat_model", "text", np.array([b"how do I enable batching?"], dtype=object))


def export_models(directory: Path) -> tuple[Path, Path]:
    """half_plus_two (the test fixture's export) and the demo model; their base paths."""
    subprocess.run(
        [sys.executable, "-m", "tests.fixtures.models", str(directory / "models")],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    demo = directory / "deepchat_model"
    subprocess.run(
        [sys.executable, "-m", "cli", "export-demo-model", str(demo)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return directory / "models" / "half_plus_two", demo


def _server(
    name: str, base_path: Path, log_dir: Path, *, batching: bool = False, flags: Sequence[str] = ()
) -> EmbeddedServer:
    # Prometheus on, as TF Serving's monitoring config turns it on: the CPU table reads each
    # server's own runtime_latency. Metrics are recorded either way; only the endpoint is added.
    monitoring = log_dir / "monitoring.config"
    monitoring.write_text(monitoring_config_text(DEFAULT_METRICS_PATH))
    return EmbeddedServer(
        name,
        base_path,
        enable_batching=batching,
        batching_parameters=DEMO_BATCHING if batching else None,
        extra_flags=[f"--monitoring_config_file={monitoring}", *flags],
        log_path=log_dir / f"{name}-{'batched' if batching else 'plain'}.log",
    )


def _session_run_us(rest_url: str) -> float:
    """The server's session-run wall time so far: its runtime_latency sum, in microseconds."""
    with urllib.request.urlopen(metrics_url(rest_url, DEFAULT_METRICS_PATH), timeout=10) as reply:
        text = reply.read().decode("utf-8")
    totals = parse_metrics(text, families=[RUNTIME_LATENCY]).histogram(RUNTIME_LATENCY)
    return totals.sum if totals is not None else 0.0


@dataclass(frozen=True)
class CpuRun:
    """One load on one server: the run, and its session runs' wall time per answered request."""

    result: RunResult
    session_run_ms: float | None  # None for the bare services, which run no model


async def measure_startup(base_path: Path, log_dir: Path, runs: int = RUNS) -> list[RunResult]:
    """Fresh servers, each loaded at 200 req/s for 5 s the moment it reports ready."""
    results = []
    for _ in range(runs):
        server = _server("half_plus_two", base_path, log_dir)
        async with server:
            assert server.pid is not None
            results.append(
                await open_loop(
                    server.grpc_target, HALF_PLUS_TWO, STARTUP_RATE, STARTUP_SECONDS, server.pid
                )
            )
    return results


async def measure_first_requests(
    demo: Path, log_dir: Path, runs: int = RUNS
) -> dict[str, list[list[float]]]:
    """The first requests of fresh demo-model servers, one at a time: plain and batching."""
    results: dict[str, list[list[float]]] = {}
    for label, batching in (("demo model", False), ("demo model, batching", True)):
        for _ in range(runs):
            async with _server("deepchat_model", demo, log_dir, batching=batching) as server:
                async with grpc.aio.insecure_channel(server.grpc_target) as channel:
                    latencies = await first_calls_ms(channel, DEMO, FIRST_CALLS)
            results.setdefault(label, []).append(latencies)
    return results


Load = tuple[str, Callable[[str, bytes, int], Any]]


def _loads(seconds: float) -> list[Load]:
    loads: list[Load] = [
        (
            f"{rate:,.0f} req/s",
            lambda target, payload, pid, rate=rate: open_loop(target, payload, rate, seconds, pid),
        )
        for rate in CPU_RATES
    ]
    loads.append(
        (
            "saturation",
            lambda target, payload, pid: closed_loop(
                target, payload, SATURATION_CONCURRENCY, seconds, pid
            ),
        )
    )
    return loads


async def measure_cpu(
    half_plus_two: Path,
    demo: Path,
    log_dir: Path,
    runs: int = CPU_RUNS,
    seconds: float = CPU_SECONDS,
) -> dict[tuple[str, str], list[CpuRun]]:
    """{(service, load): runs}: every service under every load, interleaved run by run."""
    bare, bare_target = start_bare_server()
    # The same floor on the listener `serve` uses (cli.main.SUBCOMMAND_ENVIRONMENT).
    iomgr, iomgr_target = start_bare_server(SUBCOMMAND_ENVIRONMENT["serve"])
    servers = {
        "half_plus_two": (_server("half_plus_two", half_plus_two, log_dir), HALF_PLUS_TWO),
        "demo model": (_server("deepchat_model", demo, log_dir), DEMO),
        "demo model, batching": (_server("deepchat_model", demo, log_dir, batching=True), DEMO),
    }
    results: dict[tuple[str, str], list[CpuRun]] = {}
    try:
        for server, _ in servers.values():
            await server.start()
        targets: dict[str, tuple[str, bytes, int]] = {
            BARE: (bare_target, HALF_PLUS_TWO, bare.pid),
            BARE_IOMGR: (iomgr_target, HALF_PLUS_TWO, iomgr.pid),
        }
        for label, (server, payload) in servers.items():
            assert server.pid is not None
            targets[label] = (server.grpc_target, payload, server.pid)
        # Each service's first runs are the start-up benchmark's subject, not this one's.
        for target, payload, pid in targets.values():
            await open_loop(target, payload, WARMUP_RATE, WARMUP_SECONDS, pid)
        rest_urls = {label: server.rest_url for label, (server, _) in servers.items()}
        for _ in range(runs):
            for load_label, load in _loads(seconds):
                for label, (target, payload, pid) in targets.items():
                    rest_url = rest_urls.get(label)
                    before = await asyncio.to_thread(_session_run_us, rest_url) if rest_url else 0
                    result = await load(target, payload, pid)
                    session_run_ms = None
                    if rest_url:
                        after = await asyncio.to_thread(_session_run_us, rest_url)
                        session_run_ms = (after - before) / 1000 / max(1, result.requests)
                    results.setdefault((label, load_label), []).append(
                        CpuRun(result, session_run_ms)
                    )
    finally:
        for server, _ in servers.values():
            await server.stop()
        for process in (bare, iomgr):
            process.kill()
            process.wait()
    return results


def startup_table(results: list[RunResult]) -> str:
    """Markdown: the first 5 s of each fresh server."""
    lines = [
        "| run | first request ms | p50 ms | p95 ms | p99 ms | max ms | late sends |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for index, result in enumerate(results, 1):
        lines.append(
            f"| {index} | {result.first_ms or 0:.1f} | {result.percentile(50):.1f} | "
            f"{result.percentile(95):.1f} | {result.percentile(99):.1f} | "
            f"{result.percentile(100):.1f} | {result.late_sends} |"
        )
    p99s = [result.percentile(99) for result in results]
    firsts = [result.first_ms or 0 for result in results]
    lines.append(f"| **median** | {median(firsts):.1f} | | | **{median(p99s):.1f}** | | |")
    return "\n".join(lines)


def first_requests_table(results: dict[str, list[list[float]]]) -> str:
    """Markdown: the first requests of fresh demo servers, medians over the runs."""
    ordinals = ("first", "second", "third")[:FIRST_CALLS]
    lines = [
        "| server | " + " | ".join(f"{name} request ms" for name in ordinals) + " |",
        "|---|" + "---:|" * len(ordinals),
    ]
    for label, runs in results.items():
        cells = [f"{median([run[index] for run in runs]):.1f}" for index in range(len(ordinals))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: dict[tuple[str, str], list[CpuRun]]) -> str:
    """Markdown: CPU per request, its ratio to the bare floor at the same load, and how much of
    it the model's own session runs take (the server's runtime_latency)."""
    loads = list(dict.fromkeys(load for _, load in results))
    services = list(dict.fromkeys(service for service, _ in results))
    lines = [
        "| server | load | answered req/s | p99 ms | CPU ms/request | vs bare | vs bare, iomgr "
        "| session run ms/request | the rest vs bare |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        floor = median([run.result.cpu_ms_per_request for run in results[(BARE, load)]])
        floor_iomgr = median([run.result.cpu_ms_per_request for run in results[(BARE_IOMGR, load)]])
        for service in services:
            runs = results[(service, load)]
            cpu = median([run.result.cpu_ms_per_request for run in runs])
            split = "– | –"
            if all(run.session_run_ms is not None for run in runs):
                session_ms = median([run.session_run_ms or 0.0 for run in runs])
                rest = median(
                    [run.result.cpu_ms_per_request - (run.session_run_ms or 0.0) for run in runs]
                )
                split = f"{session_ms:.2f} | {rest / floor:.2f}x"
            lines.append(
                f"| {service} | {load} | {median([run.result.rate for run in runs]):,.0f} | "
                f"{median([run.result.percentile(99) for run in runs]):.1f} | {cpu:.2f} | "
                f"{cpu / floor:.2f}x | {cpu / floor_iomgr:.2f}x | {split} |"
            )
    return "\n".join(lines)


def run() -> str:
    """The Markdown section for docs/BENCHMARKS.md."""
    with tempfile.TemporaryDirectory(prefix="bench_server_cpu-") as name:
        directory = Path(name)
        half_plus_two, demo = export_models(directory)
        startup = asyncio.run(measure_startup(half_plus_two, directory))
        first = asyncio.run(measure_first_requests(demo, directory))
        cpu = asyncio.run(measure_cpu(half_plus_two, demo, directory))
    return (
        "## Embedded server: first seconds and CPU per request\n\n"
        f"Start-up: each run starts a fresh `deepchat-tfs serve` with half_plus_two and sends "
        f"{STARTUP_RATE:.0f} req/s open loop for {STARTUP_SECONDS:.0f} s the moment it reports "
        "ready (no client warm-up); latency counts from the intended send time. *First request*: "
        "the one call, after the channel connects, that precedes the timed sends.\n\n"
        + startup_table(startup)
        + "\n\nThe demo model's first requests, one at a time, on fresh servers (median of "
        f"{RUNS}); the first pays whatever the server left for its first run.\n\n"
        + first_requests_table(first)
        + "\n\nCPU per request: utime+stime of the server process / answered requests, "
        f"{CPU_SECONDS:.0f} s per point, median of {CPU_RUNS} interleaved rounds. The bare service "
        "is a grpc.aio Predict handler that answers an empty PredictResponse without parsing "
        "(the Python gRPC floor), on grpc's default EventEngine listener and, as `serve` runs, "
        "on the iomgr listener (`GRPC_EXPERIMENTS=-event_engine_listener`). "
        "The client sends pre-serialized requests from one grpc.aio "
        "process on the same 2 cores; saturation is 32 closed-loop callers. Demo model "
        f"batching: {DEMO_BATCHING}. Every service first gets {WARMUP_SECONDS:.0f} s at "
        f"{WARMUP_RATE:.0f} req/s. *Session run*: the growth of the server's own "
        "`:tensorflow:serving:runtime_latency` sum over the point, per answered request: the "
        "wall time of the model's TensorFlow runs (a batch's run shared by its requests). "
        "*The rest*: CPU per request minus that, against the bare floor: the server without "
        "its model. Wall time also counts moments the thread was preempted, so the rest is a "
        "lower bound.\n\n" + cpu_table(cpu) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run one part quickly: `python -m benchmarks.bench_server_cpu startup|cpu`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["startup", "cpu", "all"])
    parser.add_argument(
        "--runs", type=int, help=f"rounds (default: {RUNS} start-up, {CPU_RUNS} CPU)"
    )
    parser.add_argument("--seconds", type=float, default=CPU_SECONDS)
    args = parser.parse_args(argv)
    if args.part == "all":
        print(run())
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_server_cpu-") as name:
        directory = Path(name)
        half_plus_two, demo = export_models(directory)
        if args.part == "startup":
            runs = args.runs or RUNS
            print(startup_table(asyncio.run(measure_startup(half_plus_two, directory, runs))))
            print()
            print(first_requests_table(asyncio.run(measure_first_requests(demo, directory, runs))))
        else:
            results = asyncio.run(
                measure_cpu(half_plus_two, demo, directory, args.runs or CPU_RUNS, args.seconds)
            )
            print(cpu_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
