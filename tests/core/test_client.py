"""core.client.serving against a real grpc.aio server: calls, error mapping, deadlines, stats."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest

from core.client.serving import (
    ClientSettings,
    ModelSpec,
    ServingClient,
    ServingError,
    TensorInfo,
    VersionStatus,
    make_example,
)
from core.metrics.stats import StatsCollector
from core.wire import protos
from core.wire.tensors import make_tensor_proto
from tests.fixtures.fault_servicer import (
    Behaviour,
    FaultServer,
    fault_server_fixture,  # noqa: F401 (provides the fault_server fixture)
)

MODEL = ModelSpec("deepchat_model")


def client_for(server: FaultServer, **settings: object) -> ServingClient:
    """A client of one FaultServer; keyword arguments go to ClientSettings."""
    stats = settings.pop("stats", None)
    return ServingClient(ClientSettings(targets=(server.target,), **settings), stats=stats)  # type: ignore[arg-type]


async def test_predict_round_trips_arrays_and_reports_served_version(
    fault_server: FaultServer,
) -> None:
    fault_server.behaviour = Behaviour(served_version=3)
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    prompts = np.array([b"hello", b"\xff\x00"], dtype=object)
    async with client_for(fault_server) as client:
        result = await client.predict(
            ModelSpec("deepchat_model", version=3), {"x": features, "prompt": prompts}
        )
    np.testing.assert_array_equal(result.outputs["x"], features)
    assert result.outputs["x"].dtype == np.float32
    assert list(result.outputs["prompt"]) == [b"hello", b"\xff\x00"]
    assert (result.model_name, result.model_version) == ("deepchat_model", 3)
    assert result.signature_name == "serving_default"
    assert result.latency_s > 0
    sent = fault_server.calls_to("Predict")[0].request
    assert sent.model_spec.version.value == 3
    assert sent.model_spec.WhichOneof("version_choice") == "version"


async def test_predict_pins_version_label_and_filters_outputs(fault_server: FaultServer) -> None:
    inputs = {"x": np.ones((1, 3), np.float32), "y": np.zeros((1, 2), np.float32)}
    spec = ModelSpec("deepchat_model", version_label="stable", signature_name="other")
    async with client_for(fault_server) as client:
        result = await client.predict(spec, inputs, output_filter=["y"])
    assert list(result.outputs) == ["y"]
    assert result.signature_name == "other"
    sent = fault_server.calls_to("Predict")[0].request
    assert sent.model_spec.version_label == "stable"
    assert not sent.model_spec.HasField("version")
    assert list(sent.output_filter) == ["y"]


async def test_predict_accepts_tensor_protos_and_predict_raw(fault_server: FaultServer) -> None:
    tensor = make_tensor_proto(np.array([[1.5, 2.5]], np.float32))
    async with client_for(fault_server) as client:
        result = await client.predict(MODEL, {"x": tensor})
        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = "deepchat_model"
        request.inputs["x"].CopyFrom(tensor)
        response = await client.predict_raw(request)
    np.testing.assert_array_equal(result.outputs["x"], [[1.5, 2.5]])
    assert response.outputs["x"] == tensor
    assert response.model_spec.version.value == 1


async def test_classify_and_regress_build_examples_from_plain_values(
    fault_server: FaultServer,
) -> None:
    examples = [{"text": "hi", "count": 3, "weights": [0.5, 1.5]}, {"raw": b"\x00\xff\x01"}]
    async with client_for(fault_server) as client:
        classified = await client.classify(MODEL, examples)
        regressed = await client.regress(MODEL, [{"a": 2, "b": [0.25, 0.75]}, {"c": -1.0}])
    assert classified.classes == [
        [("count", 3.0), ("text", 2.0), ("weights", 2.0)],
        [("raw", 3.0)],
    ]
    assert classified.model_version == 1
    assert regressed.values == [3.0, -1.0]
    sent = fault_server.calls_to("Classify")[0].request.input.example_list.examples[0]
    features = sent.features.feature
    assert list(features["text"].bytes_list.value) == [b"hi"]
    assert list(features["count"].int64_list.value) == [3]
    assert list(features["weights"].float_list.value) == [0.5, 1.5]


def test_make_example_names_the_feature_it_cannot_encode() -> None:
    assert list(
        make_example({"flag": [True, False]}).features.feature["flag"].int64_list.value
    ) == [
        1,
        0,
    ]
    assert list(make_example({"mixed": [1, 2.5]}).features.feature["mixed"].float_list.value) == [
        1.0,
        2.5,
    ]
    with pytest.raises(ValueError, match=r"feature 'bad' holds int, str"):
        make_example({"bad": ["a", 1]})
    with pytest.raises(ValueError, match=r"feature 'empty' is an empty list"):
        make_example({"empty": []})


async def test_get_model_metadata_unpacks_signature_defs(fault_server: FaultServer) -> None:
    async with client_for(fault_server) as client:
        metadata = await client.get_model_metadata(ModelSpec("deepchat_model", version=1))
    assert metadata.model_name == "deepchat_model"
    assert metadata.model_version == 1
    assert sorted(metadata.signatures) == ["serving_default", "unknown_rank"]
    default = metadata.signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs == {"x": TensorInfo("x", "x:0", "DT_FLOAT", (-1, 3))}
    assert default.outputs["y"].shape == (-1, 3)
    assert metadata.signatures["unknown_rank"].inputs["anything"].shape is None
    assert list(fault_server.calls_to("GetModelMetadata")[0].request.metadata_field) == [
        "signature_def"
    ]


async def test_get_model_status_names_states(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(version_states={1: "AVAILABLE", 2: "LOADING"})
    async with client_for(fault_server) as client:
        every_version = await client.get_model_status("deepchat_model")
        one_version = await client.get_model_status("deepchat_model", version=2)
        with pytest.raises(ServingError) as missing:
            await client.get_model_status("deepchat_model", version=9)
    assert every_version == [
        VersionStatus(1, "AVAILABLE", "OK", ""),
        VersionStatus(2, "LOADING", "OK", ""),
    ]
    assert one_version == [VersionStatus(2, "LOADING", "OK", "")]
    assert missing.value.code == "NOT_FOUND"


async def test_health_reports_serving_status(fault_server: FaultServer) -> None:
    async with client_for(fault_server) as client:
        assert await client.health() == "SERVING"
        fault_server.behaviour = Behaviour(health_status="NOT_SERVING")
        assert await client.health("tensorflow.serving.PredictionService") == "NOT_SERVING"
        with pytest.raises(ServingError) as unknown:
            await client.health("no.such.Service")
    assert unknown.value.code == "NOT_FOUND"


async def test_reload_config_sends_the_model_server_config(fault_server: FaultServer) -> None:
    config = protos.model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = "m", "/models/m", "tensorflow"
    async with client_for(fault_server) as client:
        await client.reload_config(config)
    assert fault_server.reloaded_configs == [config]


async def test_missing_model_raises_tf_servings_not_found(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(known_models=frozenset({"deepchat_model"}))
    async with client_for(fault_server) as client:
        with pytest.raises(ServingError) as error:
            await client.predict(ModelSpec("foo"), {"x": np.ones(1, np.float32)})
    assert error.value.code == "NOT_FOUND"
    assert error.value.message == "Servable not found for request: Latest(foo)"
    assert str(error.value) == "NOT_FOUND: Servable not found for request: Latest(foo)"


async def test_invalid_argument_is_raised_and_not_retried(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(error=(grpc.StatusCode.INVALID_ARGUMENT, "bad shape [2,3]"))
    async with client_for(fault_server, max_retries=3) as client:
        with pytest.raises(ServingError) as error:
            await client.predict(MODEL, {"x": np.ones(1, np.float32)})
    assert (error.value.code, error.value.message) == ("INVALID_ARGUMENT", "bad shape [2,3]")
    assert len(fault_server.calls_to("Predict")) == 1


async def test_deadline_exceeded_and_deadline_propagated(fault_server: FaultServer) -> None:
    async with client_for(fault_server, timeout_s=9.0) as client:
        await client.predict(MODEL, {"x": np.ones(1, np.float32)})
        fault_server.behaviour = Behaviour(delay_s=5.0)
        with pytest.raises(ServingError) as error:
            await client.predict(MODEL, {"x": np.ones(1, np.float32)}, timeout_s=0.05)
    assert error.value.code == "DEADLINE_EXCEEDED"
    default_deadline, short_deadline = (c.time_remaining_s for c in fault_server.calls)
    # gRPC rounds deadlines up on the wire: compare with the next whole second, not exactly.
    assert default_deadline is not None and 0 < default_deadline < 10.0
    assert short_deadline is not None and 0 < short_deadline < 1.0


async def test_frozen_server_times_out_every_call_until_thawed(fault_server: FaultServer) -> None:
    async with client_for(fault_server) as client:
        fault_server.freeze(30.0)
        with pytest.raises(ServingError) as frozen_health:
            await client.health(timeout_s=0.05)
        with pytest.raises(ServingError) as frozen_predict:
            await client.predict(MODEL, {"x": np.ones(1, np.float32)}, timeout_s=0.05)
        fault_server.freeze(0.0)
        assert await client.health() == "SERVING"
    assert frozen_health.value.code == frozen_predict.value.code == "DEADLINE_EXCEEDED"


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_failure_is_unavailable_with_grpcs_text() -> None:
    settings = ClientSettings(targets=(f"127.0.0.1:{unused_port()}",), max_retries=1)
    async with ServingClient(settings) as client:
        with pytest.raises(ServingError) as error:
            await client.health(timeout_s=5.0)
    assert error.value.code == "UNAVAILABLE"
    assert "connect" in error.value.message.lower()


async def test_stats_record_outcomes_versions_and_in_flight(fault_server: FaultServer) -> None:
    stats = StatsCollector()
    fault_server.behaviour = Behaviour(served_version=2, known_models=frozenset({"deepchat_model"}))
    async with client_for(fault_server, stats=stats) as client:
        for _ in range(3):
            await client.predict(MODEL, {"x": np.ones(1, np.float32)})
        await client.classify(MODEL, [{"a": 1}])
        with pytest.raises(ServingError):
            await client.predict(ModelSpec("missing"), {"x": np.ones(1, np.float32)})
        await client.health()  # not a model call: not recorded
        fault_server.freeze(30.0)
        pending = asyncio.create_task(client.predict(MODEL, {"x": np.ones(1, np.float32)}))
        for _ in range(500):
            if stats.snapshot().in_flight == 1:
                break
            await asyncio.sleep(0.01)
        assert stats.snapshot().in_flight == 1
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    snapshot = stats.snapshot()
    assert snapshot.requests_total == 6
    assert snapshot.ok_total == 4
    assert snapshot.errors_by_code == {"NOT_FOUND": 1, "CANCELLED": 1}
    assert snapshot.versions == {2: 4}
    assert snapshot.in_flight == 0


async def test_closed_client_refuses_calls(fault_server: FaultServer) -> None:
    client = client_for(fault_server)
    assert await client.health() == "SERVING"
    await client.close()
    with pytest.raises(ServingError) as error:
        await client.health()
    assert error.value.code == "CANCELLED"


def test_settings_and_model_spec_reject_contradictions() -> None:
    with pytest.raises(ValueError, match="targets is empty"):
        ClientSettings(targets=())
    with pytest.raises(ValueError, match="timeout_s"):
        ClientSettings(targets=("localhost:8500",), timeout_s=0)
    with pytest.raises(ValueError, match="both set"):
        ModelSpec("m", version=1, version_label="stable")


def test_importing_the_client_leaves_tensorflow_and_textual_out() -> None:
    probe = (
        "import json, sys, core.client.serving; print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('tensorflow.python', 'textual', 'server')))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
