"""Model monitoring against a real grpc.aio server: versions, new versions, labels, backoff."""

from __future__ import annotations

import os
import random

import grpc
import pytest

from core.client.monitor import Backoff, ModelMonitor, process_rss_bytes
from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401


async def test_poll_reports_versions_metadata_and_newly_available(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(version_states={1: "AVAILABLE", 2: "LOADING"})
    async with ServingClient(ClientSettings(targets=(fault_server.target,))) as client:
        monitor = ModelMonitor(client, ModelSpec("m"), labels=("prod",))
        first = await monitor.poll()
        assert [(v.version, v.state) for v in first.versions] == [(1, "AVAILABLE"), (2, "LOADING")]
        assert first.available_versions == (1,)
        assert first.newly_available == ()  # the first poll only learns what exists
        assert first.metadata is not None and "serving_default" in first.metadata.signatures
        # The fault servicer answers every label with its served version.
        assert first.labels == {"prod": 1, "stable": 1, "canary": 1}
        metadata_calls = len(fault_server.calls_to("GetModelMetadata"))

        same = await monitor.poll()
        assert same.newly_available == ()
        assert len(fault_server.calls_to("GetModelMetadata")) == metadata_calls  # not re-read

        fault_server.behaviour.version_states = {1: "AVAILABLE", 2: "AVAILABLE"}
        fault_server.behaviour.served_version = 2
        switched = await monitor.poll()
        assert switched.newly_available == (2,)
        assert switched.available_versions == (1, 2)
        assert switched.labels["stable"] == 2
        assert len(fault_server.calls_to("GetModelMetadata")) > metadata_calls


async def test_unknown_model_and_unreachable_server_raise_serving_error(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(known_models=frozenset({"other"}))
    async with ServingClient(ClientSettings(targets=(fault_server.target,))) as client:
        with pytest.raises(ServingError) as excinfo:
            await ModelMonitor(client, ModelSpec("m")).poll()
        assert excinfo.value.code == "NOT_FOUND"
        assert "Servable not found for request: Latest(m)" in excinfo.value.message
    fault_server.behaviour = Behaviour(error=(grpc.StatusCode.UNAVAILABLE, "down for a test"))
    settings = ClientSettings(targets=(fault_server.target,), max_retries=0, timeout_s=2)
    async with ServingClient(settings) as client:
        with pytest.raises(ServingError) as excinfo:
            await ModelMonitor(client, ModelSpec("m")).poll()
        assert excinfo.value.code == "UNAVAILABLE"


async def test_missing_labels_are_left_out(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(
        error=(grpc.StatusCode.FAILED_PRECONDITION, "label not assigned"),
        methods=frozenset({"GetModelMetadata"}),
    )
    async with ServingClient(ClientSettings(targets=(fault_server.target,))) as client:
        state = await ModelMonitor(client, ModelSpec("m")).poll()
    assert state.metadata is None and state.labels == {}
    assert state.available_versions == (1,)


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    jittered = Backoff(initial_s=1.0, jitter=0.1, rng=random.Random(7))
    delays = [jittered.next_delay() for _ in range(3)]
    assert 0.9 <= delays[0] <= 1.1 and 1.8 <= delays[1] <= 2.2 and 3.6 <= delays[2] <= 4.4


def test_process_rss_of_self_and_of_a_missing_process() -> None:
    own = process_rss_bytes()
    assert own is not None and own > 10 * 2**20
    assert process_rss_bytes(os.getpid()) is not None
    assert process_rss_bytes(2**22 + 12345) is None  # above Linux's default pid_max
