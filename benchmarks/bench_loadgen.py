"""Load generator accuracy: achieved vs offered rate and schedule lag, up to 5,000 req/s.

The target is a minimal grpc.aio PredictionService in its own process that answers every
Predict with the same serialized response without parsing the request, so the generator, not
the server, is what is measured. Each setting runs several times; the table shows medians.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from core.client.serving import ClientSettings, ModelSpec
from core.load.burst import BurstRun, BurstTarget
from core.load.spec import LoadSpec
from core.report.model import build_report

RATES = (500, 1000, 2000, 3500, 5000)
# (workers, client batch size or None): one unbatched worker, two, and one with batching, which
# carries many requests per RPC and so goes past grpc.aio's per-call cost.
SETUPS: tuple[tuple[int, int | None], ...] = ((1, None), (2, None), (1, 32))
RUNS = 3
DURATION_S = 2.0

SERVER = """
import asyncio, sys
import grpc
from core.wire import protos

response = protos.predict_pb2.PredictResponse()
response.model_spec.name = "bench"
response.model_spec.version.value = 1
PAYLOAD = response.SerializeToString()

async def predict(request, context):
    return PAYLOAD

async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


@dataclass(frozen=True)
class Sample:
    """One run's figures."""

    achieved_share: float
    lag_p99_ms: float
    late_share: float
    latency_p99_ms: float


async def _one_run(target: BurstTarget, rate: int, workers: int, batch: int | None) -> Sample:
    spec = LoadSpec(
        rate=float(rate), duration_s=DURATION_S, workers=workers, batch_size=batch, timeout_s=5.0
    )
    report = build_report(await BurstRun(spec, target).run())
    lag = report.schedule_lag_ms
    return Sample(
        achieved_share=report.achieved_rps / rate,
        lag_p99_ms=lag.p99 if lag is not None and lag.p99 is not None else float("nan"),
        late_share=report.late_sends / max(report.requests, 1),
        latency_p99_ms=report.latency_ms.p99 or float("nan"),
    )


async def _measure(target: BurstTarget) -> list[tuple[int, int | None, int, list[Sample]]]:
    rows = []
    for workers, batch in SETUPS:
        for rate in RATES:
            samples = [await _one_run(target, rate, workers, batch) for _ in range(RUNS)]
            rows.append((workers, batch, rate, samples))
            print(f"workers={workers} batch={batch} rate={rate}: {samples}", file=sys.stderr)
    return rows


def run() -> str:
    """Measure and return the Markdown section."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        settings = ClientSettings(targets=(f"127.0.0.1:{port}",), max_retries=0)
        inputs = ({"x": np.ones((1, 3), np.float32)},)
        target = BurstTarget(settings, ModelSpec("bench"), inputs)
        started = time.monotonic()
        rows = asyncio.run(_measure(target))
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
    lines = [
        "## Load generator accuracy (`deepchat-tfs bench`, open loop, constant rate)",
        "",
        f"Each setting ran {RUNS} times for {DURATION_S:g} s against a minimal grpc.aio Predict "
        "service in its own process (it answers without parsing the request); medians shown. "
        "achieved = requests issued per second of the load phase; schedule lag = actual minus "
        "intended send time; late = left more than 2 ms after its intended time.",
        "",
        "| workers | client batch | offered req/s | achieved / offered | schedule lag p99 "
        "| late sends | reply p99 (from intended time) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best: dict[tuple[int, int | None], int] = {}
    for workers, batch, rate, samples in rows:
        share = statistics.median(sample.achieved_share for sample in samples)
        lag = statistics.median(sample.lag_p99_ms for sample in samples)
        late = statistics.median(sample.late_share for sample in samples)
        reply = statistics.median(sample.latency_p99_ms for sample in samples)
        if share >= 0.99 and lag < 2.0:
            best[(workers, batch)] = max(best.get((workers, batch), 0), rate)
        lines.append(
            f"| {workers} | {batch or '-'} | {rate:,} | {share * 100:.2f} % | {lag:.2f} ms "
            f"| {late * 100:.2f} % | {reply:,.1f} ms |"
        )
    lines.append("")
    for workers, batch in SETUPS:
        ceiling = best.get((workers, batch))
        met = f"{ceiling:,} req/s" if ceiling else "none of the rates"
        batching = f", client batches of {batch}" if batch else ""
        lines.append(
            f"- {workers} worker(s){batching}: highest offered rate with achieved within 1 % "
            f"and schedule lag p99 under 2 ms: {met}."
        )
    lines.append(
        "- Why the unbatched ceiling: each send is one grpc.aio unary call, and its Python call "
        "path (grpc.aio's _invoke) is the largest per-send cost in a worker's profile; once a "
        "worker's event loop is saturated, sends leave late and the lag grows. Client batching "
        "carries many requests per call, so it goes further on the same cores."
    )
    lines.append(
        f"- measured in {elapsed:.0f} s on 2 cores shared by the server, the workers and "
        f"whatever else ran (load average {os.getloadavg()[0]:.1f} at the end)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
