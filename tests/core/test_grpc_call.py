"""PendingCall (core.load.grpc_call): a grpc.aio Predict settled by callbacks, no task of ours."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import numpy as np
import pytest

from core.client.errors import CLIENT, SERVER, error_code, error_origin
from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError
from core.load.grpc_call import PendingCall
from core.wire import protos
from core.wire.tensors import make_tensor_proto
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401


def predict_request() -> object:
    request = protos.predict_pb2.PredictRequest()
    ModelSpec("m").fill(request.model_spec)
    request.inputs["x"].CopyFrom(make_tensor_proto(np.ones((1, 3), np.float32)))
    return request


def client_for(server: FaultServer, **settings: object) -> ServingClient:
    defaults: dict[str, object] = {"max_retries": 0, "headers": (("x-team", "load"),)}
    return ServingClient(ClientSettings(targets=(server.target,), **{**defaults, **settings}))


async def test_a_call_settles_with_the_served_version_and_no_task(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(served_version=7)
    async with client_for(fault_server) as client:
        await client.connect()
        tasks_before = len(asyncio.all_tasks())
        pending = PendingCall(client.start_predict(predict_request(), timeout_s=5))
        # gRPC's own invocation task is the only new one.
        assert len(asyncio.all_tasks()) == tasks_before + 1
        assert await pending == 7
    record = fault_server.calls_to("Predict")[0]
    assert record.metadata.get("x-team") == "load"
    # C-core encodes grpc-timeout in coarse units (10 or 100 ms) and rounds up,
    # so the server may see a little more than the 5 s the client asked for.
    assert record.time_remaining_s is not None and 0 < record.time_remaining_s <= 5.1


async def test_a_server_error_is_the_call_s_rpc_error(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(error=(grpc.StatusCode.INVALID_ARGUMENT, "bad input"))
    async with client_for(fault_server) as client:
        await client.connect()
        pending = PendingCall(client.start_predict(predict_request(), timeout_s=5))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await pending
    assert error_code(raised.value) == "INVALID_ARGUMENT"
    assert error_origin(raised.value) == SERVER


async def test_the_deadline_is_honoured(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(delay_s=2.0)
    async with client_for(fault_server) as client:
        await client.connect()
        pending = PendingCall(client.start_predict(predict_request(), timeout_s=0.2))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(pending, timeout=1.5)
    assert error_code(raised.value) == "DEADLINE_EXCEEDED"
    assert error_origin(raised.value) == CLIENT


async def test_cancelling_the_future_cancels_the_call(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(delay_s=2.0)
    async with client_for(fault_server) as client:
        await client.connect()
        call = client.start_predict(predict_request(), timeout_s=5)
        pending = PendingCall(call)
        await asyncio.sleep(0.05)
        assert pending.cancel()
        assert pending.cancelled()
        await asyncio.sleep(0.05)
        assert call.cancelled()


async def test_start_predict_needs_an_open_channel(fault_server: FaultServer) -> None:
    async with client_for(fault_server) as client:
        assert not client.connected
        with pytest.raises(ServingError, match="not connected"):
            client.start_predict(predict_request(), timeout_s=5)
