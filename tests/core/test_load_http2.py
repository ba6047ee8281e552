"""bench's own HTTP/2 gRPC load client (core.load.http2) against a real grpc.aio server."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest

from core.client.errors import CLIENT, SERVER, TRANSPORT, error_code, error_origin
from core.client.serving import ClientSettings, ModelSpec, TlsSettings
from core.embedded.launcher import free_loopback_port
from core.load import http2
from core.wire import protos
from core.wire.tensors import make_tensor_proto
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401
from tests.fixtures.tls_certificates import TestCertificates, make_test_certificates

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def message(values: Any = None) -> bytes:
    request = protos.predict_pb2.PredictRequest()
    ModelSpec("m").fill(request.model_spec)
    values = np.ones((1, 3), np.float32) if values is None else values
    request.inputs["x"].CopyFrom(make_tensor_proto(values))
    return http2.grpc_message(request.SerializeToString())


def served_version(response: bytes) -> int:
    return int(protos.predict_pb2.PredictResponse.FromString(response).model_spec.version.value)


def load_client(*targets: str, timeout_s: float = 5.0, **settings: Any) -> http2.GrpcLoadClient:
    client_settings = ClientSettings(targets=targets, max_retries=0, **settings)
    return http2.GrpcLoadClient(client_settings, PREDICT, timeout_s, served_version)


async def failure_of(call: http2.H2Call) -> BaseException:
    with pytest.raises(http2.GrpcCallError) as raised:
        await asyncio.wait_for(call, timeout=5)
    return raised.value


async def test_calls_answer_with_the_served_version_and_carry_metadata(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(served_version=7)
    client = load_client(fault_server.target, headers=(("X-Team", "load"),), bearer_token="secret")
    await client.connect()
    try:
        answers = await asyncio.gather(*(client.call(message()) for _ in range(50)))
    finally:
        await client.close()
    assert answers == [7] * 50
    records = fault_server.calls_to("Predict")
    assert len(records) == 50
    assert records[0].metadata.get("x-team") == "load"
    assert records[0].metadata.get("authorization") == "Bearer secret"
    assert records[0].time_remaining_s is not None and 0 < records[0].time_remaining_s <= 5
    assert records[0].request.model_spec.name == "m"


async def test_a_large_request_is_sent_within_flow_control(fault_server: FaultServer) -> None:
    # Past both the 16 KB frame and the 64 KB window a server grants at first.
    big = np.ones((1, 100_000), np.float32)
    client = load_client(fault_server.target)
    await client.connect()
    try:
        assert await asyncio.wait_for(client.call(message(big)), timeout=5) == 1
    finally:
        await client.close()
    assert len(fault_server.calls_to("Predict")[0].request.inputs["x"].tensor_content) == 400_000


async def test_a_server_status_is_the_server_s(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(error=(grpc.StatusCode.INVALID_ARGUMENT, "bad x: 100%"))
    client = load_client(fault_server.target)
    await client.connect()
    try:
        error = await failure_of(client.call(message()))
    finally:
        await client.close()
    assert (error_code(error), error_origin(error)) == ("INVALID_ARGUMENT", SERVER)
    assert isinstance(error, http2.GrpcCallError) and error.details == "bad x: 100%"


async def test_the_deadline_is_the_client_s_and_resets_the_stream(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(delay_s=2.0)
    client = load_client(fault_server.target, timeout_s=0.2)
    await client.connect()
    try:
        error = await failure_of(client.call(message()))
        # The connection stays usable after the reset.
        fault_server.behaviour = Behaviour()
        assert await asyncio.wait_for(client.call(message()), timeout=5) == 1
    finally:
        await client.close()
    assert (error_code(error), error_origin(error)) == ("DEADLINE_EXCEEDED", CLIENT)


async def test_cancelling_a_call_resets_its_stream(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(delay_s=1.0)
    client = load_client(fault_server.target)
    await client.connect()
    try:
        call = client.call(message())
        await asyncio.sleep(0.05)
        assert call.cancel() and call.cancelled()
        fault_server.behaviour = Behaviour()
        assert await asyncio.wait_for(client.call(message()), timeout=5) == 1
    finally:
        await client.close()


async def test_a_closed_port_is_the_transport_s() -> None:
    client = load_client(f"127.0.0.1:{free_loopback_port()}")
    await client.connect()
    try:
        error = await failure_of(client.call(message()))
    finally:
        await client.close()
    assert (error_code(error), error_origin(error)) == ("UNAVAILABLE", TRANSPORT)


async def test_a_server_that_stops_mid_call_is_the_transport_s() -> None:
    server = FaultServer(Behaviour(delay_s=5.0))
    await server.start()
    client = load_client(server.target)
    await client.connect()
    try:
        call = client.call(message())
        await asyncio.sleep(0.1)
        await server.stop()
        error = await failure_of(call)
    finally:
        await client.close()
    assert (error_code(error), error_origin(error)) == ("UNAVAILABLE", TRANSPORT)


async def test_calls_go_round_robin_over_replicas() -> None:
    async with FaultServer() as first, FaultServer() as second:
        client = load_client(first.target, second.target)
        await client.connect()
        try:
            await asyncio.gather(*(client.call(message()) for _ in range(10)))
        finally:
            await client.close()
        assert len(first.calls) == len(second.calls) == 5


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


async def test_tls_and_mtls_verify_the_server_name(certificates: TestCertificates) -> None:
    credentials = certificates.server_credentials(require_client_cert=True)
    async with FaultServer(server_credentials=credentials) as server:
        mtls = TlsSettings(
            ca_file=certificates.ca_file,
            cert_file=certificates.client_cert,
            key_file=certificates.client_key,
        )
        by_name = load_client(f"localhost:{server.port}", tls=mtls)
        overridden = load_client(
            server.target,
            tls=TlsSettings(
                ca_file=certificates.ca_file,
                cert_file=certificates.client_cert,
                key_file=certificates.client_key,
                server_name_override="tfs.test",
            ),
        )
        for client in (by_name, overridden):
            await client.connect()
            try:
                assert await asyncio.wait_for(client.call(message()), timeout=5) == 1
            finally:
                await client.close()
        # The certificate names no IP address; and mTLS needs the client certificate.
        for tls in (TlsSettings(ca_file=certificates.ca_file), mtls):
            target = server.target if tls is mtls else f"localhost:{server.port}"
            client = load_client(target, tls=tls)
            await client.connect()
            try:
                error = await failure_of(client.call(message()))
            finally:
                await client.close()
            assert error_code(error) == "UNAVAILABLE"
    assert len(server.calls) == 2


def test_only_host_port_targets_are_dialled() -> None:
    assert http2.supports(ClientSettings(targets=("localhost:8500", "dns:///tfs:8500")))
    assert not http2.supports(ClientSettings(targets=("unix:///tmp/tfs.sock",)))


async def test_calls_made_while_connecting_wait_for_the_connection(
    fault_server: FaultServer,
) -> None:
    client = load_client(fault_server.target)  # no connect(): the first call starts one
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.call(message()) for _ in range(5))), timeout=5
        )
    finally:
        await client.close()
    assert answers == [1] * 5


async def test_a_server_that_goes_away_is_dialled_again() -> None:
    async with FaultServer() as server:
        client = load_client(server.target)
        await client.connect()
        try:
            assert await asyncio.wait_for(client.call(message()), timeout=5) == 1
            for connection in client._connections:
                assert connection is not None and connection.transport is not None
                connection.transport.close()  # as if the server had closed it
            await asyncio.sleep(0.05)
            assert await asyncio.wait_for(client.call(message()), timeout=5) == 1
        finally:
            await client.close()
