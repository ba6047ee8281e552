"""Stand-in replicas for the fleet benchmark and its test: N ports serving recorded metrics text.

`python -m benchmarks.fleet_endpoints N` listens on N loopback REST ports (each serving the metrics
text recorded from the embedded server, its request counter growing by 10 per scrape) and N gRPC
ports (one ModelService answering GetModelStatus: version 1 AVAILABLE), then prints one line of
JSON: {"rest": [ports], "grpc": [ports]}, and serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from core.wire import protos

RECORDED = (
    Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tfs_metrics_batching.txt"
)


class _ModelService(protos.model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        response = protos.get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add(version=1)
        status.state = protos.get_model_status_pb2.ModelVersionStatus.State.Value("AVAILABLE")
        return response


async def serve(count: int) -> None:
    """Serve count replicas until stdin closes."""
    # Split once around the request counter's value, so a scrape costs this process little.
    match = re.search(
        r'request_count\{model_name="deepchat_model",status="OK"\} (\S+)', RECORDED.read_text()
    )
    assert match is not None
    before = match.string[: match.start(1)].encode()
    after = match.string[match.end(1) :].encode()
    start = float(match.group(1))
    scrapes = [0] * count

    def handler(index: int) -> Any:
        async def metrics(request: web.Request) -> web.Response:
            scrapes[index] += 1
            value = str(start + 10 * scrapes[index]).encode()
            return web.Response(
                body=before + value + after, content_type="text/plain", charset="utf-8"
            )

        return metrics

    runners, rest_ports = [], []
    for index in range(count):
        app = web.Application()
        app.router.add_get("/monitoring/prometheus/metrics", handler(index))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        rest_ports.append(runner.addresses[0][1])
    server = grpc.aio.server()
    protos.model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(), server)
    grpc_ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(count)]
    await server.start()
    print(json.dumps({"rest": rest_ports, "grpc": grpc_ports}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
