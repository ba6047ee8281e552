"""Hostile-input probe of the embedded server: time to answer and peak server RSS per case.

`python -m benchmarks.hardening_probe MODELS_ROOT [DEMO_BASE_PATH] [--case NAME ...]` starts
fresh servers on the test SavedModels (tests/fixtures/models.py) and prints one Markdown table
row per case. A server whose RSS passes --kill_rss_mb is killed and the case reads "killed".
The figures in docs/HARDENING.md come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil

from benchmarks.hostile_requests import (
    GRPC_GARBAGE,
    declared_request,
    long_number_body,
    nested_json_body,
    text_rows_body,
)
from core.embedded.launcher import EmbeddedServer
from core.wire import protos
from core.wire.tensors import make_tensor_proto


class RssWatch:
    """Samples a process's RSS every 20 ms; kills it past a limit."""

    def __init__(self, pid: int, kill_mb: float) -> None:
        self.process = psutil.Process(pid)
        self.kill_mb = kill_mb
        self.peak_mb = 0.0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss_mb = self.process.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, rss_mb)
            if rss_mb > self.kill_mb:
                self.killed = True
                self.process.kill()
                return
            time.sleep(0.02)

    def __enter__(self) -> RssWatch:
        self.peak_mb = self.process.memory_info().rss / 2**20
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def rss_mb(self) -> float:
        """The current RSS in MB."""
        return float(self.process.memory_info().rss / 2**20)


def _config(entries: list[tuple[str, Path]]) -> str:
    body = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n'
        for name, path in entries
    )
    return "model_config_list {\n" + body + "}\n"


@contextmanager
def server(
    entries: list[tuple[str, Path]],
    *,
    batching: dict[str, int] | None = None,
    flags: tuple[str, ...] = (),
) -> Iterator[EmbeddedServer]:
    """A fresh embedded server on the given models."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "models.config"
        config.write_text(_config(entries))
        embedded = EmbeddedServer(
            enable_batching=batching is not None,
            batching_parameters=batching,
            extra_flags=[f"--model_config_file={config}", *flags],
            log_path=Path(directory) / "server.log",
        )
        embedded.start_sync(timeout_s=180)
        try:
            yield embedded
        finally:
            embedded.stop_sync()
            log_size = (Path(directory) / "server.log").stat().st_size
            print(f"    (server log: {log_size} bytes)")


def grpc_case(target: str, request: Any, timeout_s: float = 60) -> str:
    """Send one Predict; its outcome as a code name and the start of its message."""
    with grpc.insecure_channel(target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=timeout_s)
        except grpc.RpcError as error:
            return f"{error.code().name}: {(error.details() or '')[:90]}"
    return "OK"


def grpc_raw_case(target: str, body: bytes) -> str:
    """Send raw bytes as a Predict request."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        try:
            call(body, timeout=30)
        except grpc.RpcError as error:
            return f"{error.code().name}: {(error.details() or '')[:90]}"
    return "OK"


def rest_case(url: str, body: bytes, timeout_s: float = 60) -> str:
    """POST a body; the HTTP status and the start of the answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return f"{response.status}"
    except urllib.error.HTTPError as error:
        return f"{error.code}: {error.read()[:90].decode('utf-8', 'replace')}"
    except OSError as error:
        return f"transport error: {error}"


def measure(name: str, embedded: EmbeddedServer, kill_mb: float, send: Callable[[], str]) -> None:
    """Run one case and print its table row."""
    assert embedded.pid is not None
    with RssWatch(embedded.pid, kill_mb) as watch:
        before = watch.rss_mb()
        started = time.monotonic()
        outcome = send()
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        after = watch.rss_mb() if not watch.killed else 0.0
    peak = f">{kill_mb:.0f} (killed)" if watch.killed else f"{watch.peak_mb:.0f}"
    print(
        f"| {name} | {elapsed:.2f} s | {before:.0f} | {peak} | {after:.0f} | {outcome} |",
        flush=True,
    )


def idle_connections_case(embedded: EmbeddedServer, count: int, kill_mb: float) -> None:
    """Open idle half-header REST connections, then time a gRPC and a REST call."""
    host, port = embedded.rest_url.removeprefix("http://").split(":")
    # The server keeps the limits it started with; this client may open more than those.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = []
    opened = 0
    for _ in range(count):
        try:
            connection = socket.create_connection((host, int(port)), timeout=2)
            connection.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n")
            sockets.append(connection)
            opened += 1
        except OSError:
            break
    request = declared_request("half_plus_two", "x", protos.types_pb2.DT_FLOAT, [1, 1], [1.0])
    measure(
        f"{opened} idle half-header REST connections, then gRPC Predict",
        embedded,
        kill_mb,
        lambda: grpc_case(embedded.grpc_target, request, timeout_s=10),
    )
    measure(
        "... and REST status",
        embedded,
        kill_mb,
        lambda: rest_case(
            embedded.rest_url + "/v1/models/half_plus_two:predict", b'{"instances": [[1.0]]}', 10
        ),
    )
    for connection in sockets:
        connection.close()


def _demo_request(rows: int) -> Any:
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = "deepchat_model"
    texts = np.array([f"what is a canary number {index}" for index in range(rows)], dtype=object)
    request.inputs["text"].CopyFrom(make_tensor_proto(texts))
    return request


async def _closed_loop_rate(target: str, request: Any, seconds: float) -> float:
    """Requests per second with 16 callers that each send as soon as the last answered."""
    done = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(5):  # warm up: the first runs of a graph are slow
            await stub.Predict(request, timeout=60)
        stop_at = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await stub.Predict(request, timeout=30)
                done += 1

        await asyncio.gather(*(caller() for _ in range(16)))
    return done / seconds


async def _open_loop(
    target: str, request: Any, rate: float, seconds: float, deadline_s: float
) -> dict[str, list[float]]:
    outcomes: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def one() -> None:
            started = time.monotonic()
            try:
                await stub.Predict(request, timeout=deadline_s)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
            outcomes.setdefault(code, []).append(time.monotonic() - started)

        tasks = []
        began = time.monotonic()
        for index in range(int(rate * seconds)):
            # Open loop: each request leaves at its intended time, answered or not.
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return outcomes


def overload_case(embedded: EmbeddedServer, kill_mb: float, factor: float) -> None:
    """Open-loop demo-model Predicts at factor x the measured capacity, 10 s deadline."""
    assert embedded.pid is not None
    request = _demo_request(64)
    capacity = asyncio.run(_closed_loop_rate(embedded.grpc_target, request, 5.0))
    rate = capacity * factor
    with RssWatch(embedded.pid, kill_mb) as watch:
        outcomes = asyncio.run(_open_loop(embedded.grpc_target, request, rate, 10.0, 10.0))
    total = sum(len(times) for times in outcomes.values())
    parts = ", ".join(
        f"{code} {100 * len(times) / total:.0f}% (median {np.median(times):.2f} s, "
        f"max {max(times):.2f} s)"
        for code, times in sorted(outcomes.items())
    )
    print(
        f"| overload: demo model, 64 rows per Predict, capacity {capacity:.0f}/s, "
        f"{total} Predicts at {rate:.0f}/s over 10 s, 10 s deadline | - | - | "
        f"{watch.peak_mb:.0f} | - | {parts} |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models_root", type=Path)
    parser.add_argument("demo_base_path", type=Path, nargs="?")
    parser.add_argument("--case", action="append", default=[])
    parser.add_argument("--kill_rss_mb", type=float, default=2500)
    parser.add_argument("--overload_factor", type=float, default=5)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args(argv)
    root, kill = args.models_root.resolve(), args.kill_rss_mb
    cases = set(args.case) or {
        "fill",
        "batching",
        "rest",
        "restbody",
        "demo",
        "connections",
        "overload",
    }
    models = [(name, root / name) for name in ("half_plus_two", "strings", "tf2_add")]
    dt_float, dt_string = protos.types_pb2.DT_FLOAT, protos.types_pb2.DT_STRING
    print("| case | time to answer | RSS before (MB) | peak RSS (MB) | RSS after | answer |")
    print("|---|---|---|---|---|---|")
    single: list[tuple[str, str, dict[str, int] | None, Callable[[EmbeddedServer], str]]] = []
    if "fill" in cases:
        for label, model, alias, dtype, shape, values in (
            ("gRPC x [1e9, 1] one float value (fill)", "half_plus_two", "x", dt_float,
             [10**9, 1], [1.0]),
            ("gRPC x [1e9, 1] no value", "half_plus_two", "x", dt_float, [10**9, 1], None),
            ("gRPC string [1e8] no value", "strings", "text", dt_string, [10**8], None),
            ("gRPC x [1e6, 1e6] one value (1e12 elements)", "half_plus_two", "x", dt_float,
             [10**6, 10**6], [1.0]),
        ):  # fmt: skip
            request = declared_request(model, alias, dtype, shape, values)
            single.append(("fill", label, None, lambda e, r=request: grpc_case(e.grpc_target, r)))
    if "batching" in cases:
        request = declared_request("half_plus_two", "x", dt_float, [10**9, 1], [1.0])
        single.append(
            (
                "batching",
                "batching: gRPC x [1e9, 1] one value, max_batch_size 32",
                {"max_batch_size": 32},
                lambda e: grpc_case(e.grpc_target, request),
            )
        )
    if "rest" in cases:
        predict = "/v1/models/half_plus_two:predict"
        nested, big_int = nested_json_body(10_000), long_number_body(5000)
        single += [
            ("rest", "REST 10,000-level nested JSON", None,
             lambda e: rest_case(e.rest_url + predict, nested)),
            ("rest", "REST 5,000-digit integer", None,
             lambda e: rest_case(e.rest_url + predict, big_int)),
            ("rest", "gRPC garbage bytes", None,
             lambda e: grpc_raw_case(e.grpc_target, GRPC_GARBAGE)),
        ]  # fmt: skip
    if "restbody" in cases:
        for mib in (15, 32):
            zeros = b"[" + b"0," * (mib * 2**18 - 1) + b"0]"  # mib / 2 MiB of JSON per input
            body = b'{"inputs": {"a": ' + zeros + b', "b": ' + zeros + b"}}"
            single.append(
                (
                    "restbody",
                    f"REST {len(body) / 2**20:.0f} MiB body of zeros to tf2_add",
                    None,
                    lambda e, b=body: rest_case(e.rest_url + "/v1/models/tf2_add:predict", b),
                )
            )
    for _, label, batching, send in single:
        with server(models, batching=batching) as embedded:
            measure(label, embedded, kill, lambda s=send, e=embedded: s(e))
    if "demo" in cases and args.demo_base_path is not None:
        rows = text_rows_body(100_000)
        for demo_batching in ({"max_batch_size": 32}, None):
            with server(
                [("deepchat_model", args.demo_base_path.resolve())], batching=demo_batching
            ) as embedded:
                url = embedded.rest_url + "/v1/models/deepchat_model:predict"
                label = "batching max 32" if demo_batching else "no batching"
                measure(
                    f"REST 100,000 text rows to the demo model ({label})",
                    embedded,
                    kill,
                    lambda u=url: rest_case(u, rows, 120),
                )
    if "connections" in cases:
        with server(models) as embedded:
            idle_connections_case(embedded, args.connections, kill)
    if "overload" in cases and args.demo_base_path is not None:
        with server([("deepchat_model", args.demo_base_path.resolve())]) as embedded:
            overload_case(embedded, kill, args.overload_factor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
