"""Bare echo targets: a grpc.aio Predict service and an aiohttp REST predict answering fixed bytes.

Neither parses the request, so the load tool, not the server, is the limit. Each writes how many
requests it answered, and when, into a shared file every 20 ms; the runner reads it to find the
steady part of a run (from the target's side, the same way for every tool).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from core.embedded.launcher import free_loopback_port

# One source for both servers: argv = kind, port, counter file.
ECHO_SOURCE = textwrap.dedent(
    """
    import asyncio, mmap, os, struct, sys, time

    kind, port, counter_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    parent = os.getppid()
    answered = 0

    async def publish():
        with open(counter_path, "r+b") as file:
            shared = mmap.mmap(file.fileno(), 16)
            while os.getppid() == parent:  # exits with the benchmark that started it
                shared[0:16] = struct.pack("qd", answered, time.monotonic())
                await asyncio.sleep(0.02)
        os._exit(0)

    async def grpc_main():
        import grpc
        from core.wire import protos

        response = protos.predict_pb2.PredictResponse()
        response.model_spec.name = "half_plus_two"
        response.model_spec.version.value = 123
        tensor = response.outputs["y"]
        tensor.dtype = protos.types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add().size = 1
        tensor.tensor_shape.dim.add().size = 1
        tensor.float_val.append(2.5)
        payload = response.SerializeToString()

        async def predict(request, context):
            global answered
            answered += 1
            return payload

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await asyncio.gather(server.wait_for_termination(), publish())

    async def rest_main():
        from aiohttp import web

        body = b'{"predictions": [[2.5]]}'

        async def predict(request):
            global answered
            answered += 1
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        status = (
            b'{"model_version_status": [{"version": "123", "state": "AVAILABLE",'
            b' "status": {"error_code": "OK", "error_message": ""}}]}'
        )

        async def model_status(request):
            return web.Response(body=status, content_type="application/json")

        app.router.add_post("/v1/models/{name}:predict", predict)
        app.router.add_get("/v1/models/{name}", model_status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await publish()

    asyncio.run(grpc_main() if kind == "grpc" else rest_main())
    """
)


class EchoTarget:
    """One echo server in its own process: start, read its count, freeze and thaw it, stop."""

    def __init__(self, kind: str) -> None:
        if kind not in ("grpc", "rest"):
            raise ValueError(f"echo kind {kind!r}: expected 'grpc' or 'rest'")
        self.kind = kind
        self.port = free_loopback_port()
        self._counter_file = Path(tempfile.mkstemp(prefix=f"echo-{kind}-", suffix=".count")[1])
        self._counter_file.write_bytes(b"\0" * 16)
        self._process: subprocess.Popen[str] | None = None
        self._shared: mmap.mmap | None = None

    @property
    def address(self) -> str:
        """HOST:PORT for gRPC tools, the base URL for REST tools."""
        host_port = f"127.0.0.1:{self.port}"
        return host_port if self.kind == "grpc" else f"http://{host_port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> EchoTarget:
        """Start the server and wait for its ready line."""
        self._process = subprocess.Popen(
            [sys.executable, "-c", ECHO_SOURCE, self.kind, str(self.port), str(self._counter_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError(f"the {self.kind} echo server did not start")
        with self._counter_file.open("r+b") as file:
            self._shared = mmap.mmap(file.fileno(), 16)
        return self

    def answered(self) -> tuple[int, float]:
        """(requests answered so far, the monotonic time of that count), published every 20 ms."""
        assert self._shared is not None
        count, counted_at = struct.unpack("qd", self._shared[0:16])
        return int(count), float(counted_at)

    def freeze(self) -> None:
        """SIGSTOP the server: it answers nothing until thaw()."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the server."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server and remove its counter file."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait(timeout=10)
        if self._shared is not None:
            self._shared.close()
        self._counter_file.unlink(missing_ok=True)

    def __enter__(self) -> EchoTarget:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
