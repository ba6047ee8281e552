"""Version polling and config reloads on fresh servers: new versions load before old ones go."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.embedded.launcher import EmbeddedServer
from core.wire import protos
from tests.fixtures.models import copy_model
from tests.fixtures.servers import model_config_text
from tests.server.grpc_helpers import Stubs, open_channel, predict_request, rpc_error

pytestmark = pytest.mark.slow

A = np.array([1.0, 2.0], np.float32)
STATE = protos.get_model_status_pb2.ModelVersionStatus.State


def _publish_version(source: Path, base_path: Path, version: int) -> None:
    """Copy a version in under a non-numeric name, then rename: the server never sees half of it."""
    staging = base_path / f"incoming-{version}"
    shutil.copytree(source, staging)
    staging.rename(base_path / str(version))


async def _states(stubs: Stubs, name: str) -> list[tuple[int, str]]:
    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    response = await stubs.model.GetModelStatus(request)
    return [(s.version, STATE.Name(s.state)) for s in response.model_version_status]


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_version_switches_while_requests_flow_without_a_failure(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path, tmp_path: Path
) -> None:
    base_path = copy_model(saved_models_root / "tf2_add", tmp_path / "tf2_add", versions=(1,))
    server = start_server(
        model_name="tf2_add", base_path=base_path, flags=["--file_system_poll_wait_seconds=1"]
    )
    served: list[int] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)

        async def client() -> None:
            while not stop.is_set():
                try:
                    response = await stubs.prediction.Predict(predict_request("tf2_add", a=A, b=A))
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")
                else:
                    served.append(response.model_spec.version.value)

        clients = [asyncio.create_task(client()) for _ in range(4)]
        await _wait_for(lambda: len(served) >= 20)
        _publish_version(saved_models_root / "tf2_add" / "2", base_path, 2)
        await _wait_for(lambda: served[-1] == 2)
        # Removing the newest version brings the older one back, again without failures.
        shutil.rmtree(base_path / "2")
        await _wait_for(lambda: served[-1] == 1)
        stop.set()
        await asyncio.gather(*clients)
        states = await _states(stubs, "tf2_add")

    assert failures == []
    first_two = served.index(2)
    assert set(served[:first_two]) == {1}
    assert states == [(2, "END"), (1, "AVAILABLE")]


async def test_reload_config_replaces_the_model_list(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path, tmp_path: Path
) -> None:
    config_path = tmp_path / "watched.config"
    tf2_add = {"name": "tf2_add", "base_path": saved_models_root / "tf2_add"}
    strings = {"name": "strings", "base_path": saved_models_root / "strings"}
    config_path.write_text(model_config_text([tf2_add]))
    server = start_server(
        flags=[f"--model_config_file={config_path}", "--model_config_file_poll_wait_seconds=1"]
    )
    half_plus_two = protos.model_server_config_pb2.ModelServerConfig()
    entry = half_plus_two.model_config_list.config.add()
    entry.name = "half_plus_two"
    entry.base_path = str(saved_models_root / "half_plus_two")
    entry.model_platform = "tensorflow"

    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)
        reload = protos.model_management_pb2.ReloadConfigRequest(config=half_plus_two)
        reply = await stubs.model.HandleReloadConfigRequest(reload)
        assert reply.status.error_code == protos.error_codes_pb2.OK
        # tf2_add was left out: unloaded, and its status says so.
        assert await _states(stubs, "tf2_add") == [(2, "END")]
        assert await rpc_error(stubs.prediction.Predict(predict_request("tf2_add", a=A, b=A))) == (
            "NOT_FOUND",
            "Servable not found for request: Latest(tf2_add)",
        )
        response = await stubs.prediction.Predict(
            predict_request("half_plus_two", x=np.array([[2.0]], np.float32))
        )
        assert response.model_spec.name == "half_plus_two"

        # A config TF Serving would refuse changes nothing.
        bad = protos.model_server_config_pb2.ModelServerConfig()
        bad.CopyFrom(half_plus_two)
        bad.model_config_list.config[0].base_path = "relative/path"
        code, details = await rpc_error(
            stubs.model.HandleReloadConfigRequest(
                protos.model_management_pb2.ReloadConfigRequest(config=bad)
            )
        )
        assert code == "INVALID_ARGUMENT"
        assert details.startswith("Expected model half_plus_two to have an absolute path")
        labelled = protos.model_server_config_pb2.ModelServerConfig()
        labelled.CopyFrom(half_plus_two)
        labelled.model_config_list.config[0].version_labels["stable"] = 5
        assert await rpc_error(
            stubs.model.HandleReloadConfigRequest(
                protos.model_management_pb2.ReloadConfigRequest(config=labelled)
            )
        ) == (
            "FAILED_PRECONDITION",
            "Request to assign label to version 5 of model half_plus_two, which is not "
            "currently available for inference",
        )

        # The watched config file changes: its new model list is applied on the next poll.
        config_path.write_text(model_config_text([strings]))

        async def strings_served() -> bool:
            try:
                await stubs.prediction.Predict(
                    predict_request("strings", text=np.array([b"x"], dtype=object))
                )
            except grpc.aio.AioRpcError:
                return False
            return True

        deadline = time.monotonic() + 30
        while not await strings_served():
            assert time.monotonic() < deadline, "the changed config file was not applied"
            await asyncio.sleep(0.1)
        assert (await _states(stubs, "half_plus_two"))[0][1] == "END"
