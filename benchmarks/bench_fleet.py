"""One fleet sample cycle over 50 replicas: GetModelStatus to each, scrape and parse each one's
metrics, rates and percentiles for each and for the fleet; and the longest stall of the event loop.

The replicas are stand-ins in a child process (benchmarks/fleet_endpoints.py) serving the metrics
text recorded from the embedded server with server-side batching (314 lines, 35 KB each).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = 50


@dataclass(frozen=True)
class CycleFigures:
    """Medians over the measured cycles."""

    cycle_ms: list[float]
    cpu_ms: list[float]
    """CPU time of this process per cycle: steadier than wall time on a shared machine."""
    stall_ms: float
    """How late a 5 ms timer fired at worst: includes the OS descheduling the whole process."""
    longest_step_ms: float
    """The longest single event-loop step after warm-up (asyncio's debug timing): the UI's wait."""
    replicas_up: int
    fleet_qps: float | None


class StandInFleet:
    """The child process serving the stand-in replicas."""

    def __init__(self, count: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet_endpoints", str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ports = json.loads(self.process.stdout.readline())
        self.rest_ports: list[int] = ports["rest"]
        self.grpc_ports: list[int] = ports["grpc"]

    def stop(self) -> None:
        """Close its stdin (it exits) and wait."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def measure_cycles(fleet: StandInFleet, cycles: int = 15) -> CycleFigures:
    """Sample the stand-in fleet: two warm-up cycles, then cycles timed one by one."""
    from core.fleet.direct import ScrapeSource
    from core.fleet.replicas import FleetTargets
    from core.fleet.sampler import FleetSampler

    targets = FleetTargets(
        tuple(f"127.0.0.1:{port}" for port in fleet.grpc_ports),
        metrics_urls=tuple(
            f"http://127.0.0.1:{port}/monitoring/prometheus/metrics" for port in fleet.rest_ports
        ),
    )
    sampler = FleetSampler(targets, ScrapeSource(), model_name="deepchat_model", window_s=0.5)
    stall = 0.0
    running = True

    async def ticker() -> None:
        # How late a 5 ms timer fires: what a UI on the same loop would feel.
        nonlocal stall
        while running:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            stall = max(stall, time.perf_counter() - started - 0.005)

    steps: list[float] = []

    class _SlowSteps(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.search(r"took ([0-9.]+) seconds", record.getMessage())
            if found:
                steps.append(float(found.group(1)))

    handler = _SlowSteps()
    loop = asyncio.get_running_loop()
    try:
        for _ in range(2):
            await sampler.sample()
        tick = asyncio.create_task(ticker())
        durations, cpu = [], []
        snapshot = None
        for _ in range(cycles):
            await asyncio.sleep(0.1)
            started, cpu_started = time.perf_counter(), time.process_time()
            snapshot = await sampler.sample()
            durations.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
        running = False
        await tick
        # A separate pass (debug timing slows everything): asyncio reports steps over 1 ms.
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.addHandler(handler)
        asyncio_log.propagate = False
        loop.slow_callback_duration = 0.001
        loop.set_debug(True)
        for _ in range(5):
            await asyncio.sleep(0.1)
            await sampler.sample()
    finally:
        loop.set_debug(False)
        logging.getLogger("asyncio").removeHandler(handler)
        logging.getLogger("asyncio").propagate = True
        await sampler.close()
    assert snapshot is not None
    return CycleFigures(
        cycle_ms=durations,
        cpu_ms=cpu,
        stall_ms=stall * 1000,
        longest_step_ms=max(steps, default=0.0) * 1000,
        replicas_up=sum(row.up for row in snapshot.replicas),
        fleet_qps=snapshot.fleet.qps,
    )


def run() -> str:
    """The benchmark's section of docs/BENCHMARKS.md."""
    fleet = StandInFleet(REPLICAS)
    try:
        figures = asyncio.run(measure_cycles(fleet))
    finally:
        fleet.stop()
    ordered = sorted(figures.cycle_ms)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        "## Fleet sampling (`core.fleet`)\n\n"
        f"One `FleetSampler.sample()` over {REPLICAS} replicas (GetModelStatus to each, scrape and "
        "parse each one's TF Serving metrics page, rates and bucketed percentiles per replica and "
        "for the fleet), against stand-ins in another process serving the page recorded from the "
        "embedded server. Median of "
        f"{len(ordered)} cycles.\n\n"
        "| replicas | cycle median | cycle p90 | CPU per cycle | longest loop step "
        "| 5 ms timer late by | replicas up |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {REPLICAS} | {statistics.median(ordered):.0f} ms | {p90:.0f} ms | "
        f"{statistics.median(figures.cpu_ms):.0f} ms | {figures.longest_step_ms:.0f} ms | "
        f"{figures.stall_ms:.0f} ms | {figures.replicas_up}/{REPLICAS} |\n\n"
        "The longest loop step (asyncio's debug timing over 5 more cycles, which itself slows "
        "steps) is how long a UI on the same event loop waits at worst; the late 5 ms timer also "
        "counts the OS descheduling the "
        "process on this shared 2-core machine.\n"
    )


if __name__ == "__main__":
    print(run())
