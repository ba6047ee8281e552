"""The embedded server's gRPC API against real SavedModels: answers and TF Serving's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from core.embedded.launcher import EmbeddedServer
from core.wire import protos
from core.wire.tensors import make_tensor_proto
from tests.fixtures.servers import HALF_PLUS_TWO_VERSION
from tests.server.grpc_helpers import (
    Stubs,
    classify_and_regress,
    example_input,
    open_channel,
    outputs_of,
    predict_request,
    rpc_error,
)

pytestmark = pytest.mark.slow

A = np.array([1.0, 2.0], np.float32)
B = np.array([10.0, 20.0], np.float32)


@pytest.fixture
async def stubs(serving_server: EmbeddedServer) -> AsyncIterator[Stubs]:
    async with open_channel(serving_server.grpc_target) as channel:
        yield Stubs(channel)


async def test_predict_feeds_shapes_the_placeholder_does_not_declare(stubs: Stubs) -> None:
    # x is declared [-1, 1]; TF Serving's C++ Session::Run still accepts a vector (FACTS.md).
    response = await stubs.prediction.Predict(
        predict_request("half_plus_two", x=np.array([2.0, 3.0, 4.0], np.float32))
    )
    np.testing.assert_allclose(outputs_of(response)["y"], [3.0, 3.5, 4.0])
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == HALF_PLUS_TWO_VERSION


@pytest.mark.parametrize(
    ("version", "label", "served", "factor"),
    [(None, None, 2, 2.0), (1, None, 1, 1.0), (None, "stable", 1, 1.0), (None, "canary", 2, 2.0)],
)
async def test_predict_picks_the_version_asked_for(
    stubs: Stubs, version: int | None, label: str | None, served: int, factor: float
) -> None:
    response = await stubs.prediction.Predict(
        predict_request("tf2_add", version=version, label=label, a=A, b=B)
    )
    outputs = outputs_of(response)
    np.testing.assert_allclose(outputs["sum"], A + B)
    np.testing.assert_allclose(outputs["scaled"], (A + B) * factor)
    assert response.model_spec.version.value == served


async def test_output_filter_returns_only_the_named_outputs(stubs: Stubs) -> None:
    response = await stubs.prediction.Predict(
        predict_request("tf2_add", output_filter=("sum",), a=A, b=B)
    )
    assert set(response.outputs) == {"sum"}


async def test_string_model_returns_bytes_and_ints(stubs: Stubs) -> None:
    text = np.array([b"hello", b"tf"], dtype=object)
    outputs = outputs_of(await stubs.prediction.Predict(predict_request("strings", text=text)))
    assert outputs["upper"].tolist() == [b"HELLO", b"TF"]
    assert outputs["length"].tolist() == [5, 2]
    assert outputs["raw_bytes"].tolist() == [b"hello\xff", b"tf\xff"]


def _bad_tensor_request() -> Any:
    request = predict_request("tf2_add", a=A, b=B)
    request.inputs["a"].tensor_content = b"\x00\x01\x02"  # 3 bytes cannot be 2 floats
    return request


@pytest.mark.parametrize(
    ("request_factory", "code", "message"),
    [
        (lambda: predict_request("", a=A), "INVALID_ARGUMENT", "ModelSpec has no name specified."),
        (
            lambda: predict_request("foo", a=A),
            "NOT_FOUND",
            "Servable not found for request: Latest(foo)",
        ),
        (
            lambda: predict_request("tf2_add", version=7, a=A, b=B),
            "NOT_FOUND",
            "Servable not found for request: Specific(tf2_add, 7)",
        ),
        (
            lambda: predict_request("tf2_add", signature="X", a=A, b=B),
            "FAILED_PRECONDITION",
            'Serving signature key "X" not found.',
        ),
        (
            lambda: predict_request("tf2_add", a=A),
            "INVALID_ARGUMENT",
            "input size does not match signature: 1!=2 len({a}) != len({a,b}). "
            "Sent extra: {}. Missing but required: {b}.",
        ),
        (
            lambda: predict_request("tf2_add", a=A, b=B, c=A),
            "INVALID_ARGUMENT",
            "input size does not match signature: 3!=2 len({a,b,c}) != len({a,b}). "
            "Sent extra: {c}. Missing but required: {}.",
        ),
        (
            lambda: predict_request("tf2_add", a=A, c=B),
            "INVALID_ARGUMENT",
            "Signature input alias: b(feed name: serving_default_b:0) not found in request",
        ),
        (
            lambda: predict_request("tf2_add", a=A, b=np.array([1, 2], np.int32)),
            "INVALID_ARGUMENT",
            "Expects arg[1] to be float but int32 is provided",
        ),
        (
            lambda: predict_request("tf2_add", output_filter=("nope",), a=A, b=B),
            "INVALID_ARGUMENT",
            "output tensor alias not found in signature: nope Outputs expected to be in the "
            "set {scaled,sum}.",
        ),
        (
            lambda: predict_request("tf2_add", output_filter=("sum", "sum"), a=A, b=B),
            "INVALID_ARGUMENT",
            "duplicate output tensor alias: sum",
        ),
        (
            lambda: predict_request("tf2_add", label="nope", a=A, b=B),
            "INVALID_ARGUMENT",
            "Unrecognized servable version label: nope",
        ),
        (
            lambda: predict_request("broken", version=2, a=A, b=B),
            "FAILED_PRECONDITION",
            "Servable {name: broken version: 2} failed to load: ",
        ),
        (_bad_tensor_request, "INVALID_ARGUMENT", "tensor parsing error: a"),
    ],
    ids=[
        "empty-name",
        "unknown-model",
        "unknown-version",
        "unknown-signature",
        "missing-input",
        "extra-input",
        "renamed-input",
        "wrong-dtype",
        "bad-output-filter",
        "duplicate-output-filter",
        "unknown-label",
        "failed-load",
        "unparsable-tensor",
    ],
)
async def test_predict_errors_match_tf_serving(
    stubs: Stubs, request_factory: Any, code: str, message: str
) -> None:
    got_code, details = await rpc_error(stubs.prediction.Predict(request_factory()))
    assert (got_code, details[: len(message)]) == (code, message)


async def test_a_model_whose_newest_version_failed_still_serves_the_older_one(
    stubs: Stubs,
) -> None:
    response = await stubs.prediction.Predict(predict_request("broken", a=A, b=B))
    assert response.model_spec.version.value == 1


async def test_classify_and_regress_run_tf_examples(stubs: Stubs) -> None:
    classify = protos.classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    example_input(classify, {"x": 4.0}, {"x": 1.0})
    result = await stubs.prediction.Classify(classify)
    classes = [[(c.label, c.score) for c in row.classes] for row in result.result.classifications]
    assert classes == [[("half", 4.0), ("two", -4.0)], [("half", 2.5), ("two", -2.5)]]
    assert result.model_spec.signature_name == "classify_x_to_y"
    assert result.model_spec.version.value == HALF_PLUS_TWO_VERSION

    regress = protos.regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.CopyFrom(classify.input)
    values = await stubs.prediction.Regress(regress)
    assert [r.value for r in values.result.regressions] == [4.0, 2.5]


async def test_example_list_with_context_merges_the_context_into_each_example(
    stubs: Stubs,
) -> None:
    regress = protos.regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    with_context = regress.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(6.0)
    with_context.examples.add()
    values = await stubs.prediction.Regress(regress)
    assert [r.value for r in values.result.regressions] == [5.0]


async def test_predict_runs_a_tf1_classify_signature_on_serialized_examples(
    stubs: Stubs,
) -> None:
    example = protos.example_pb2.Example()
    example.features.feature["x"].float_list.value.append(2.0)
    request = predict_request("half_plus_two", signature="classify_x_to_y")
    request.inputs["inputs"].CopyFrom(
        make_tensor_proto(np.array([example.SerializeToString()], dtype=object))
    )
    outputs = outputs_of(await stubs.prediction.Predict(request))
    assert outputs["classes"].tolist() == [[b"half", b"two"]]
    np.testing.assert_allclose(outputs["scores"], [[3.0, -3.0]])


async def test_classify_errors(stubs: Stubs) -> None:
    request = protos.classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    example_input(request, {"x": 1.0})
    code, details = await rpc_error(stubs.prediction.Classify(request))
    # Method names go unchecked by default, as in TF Serving: the outputs are checked.
    assert code == "INVALID_ARGUMENT"
    assert details.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: '
    )
    request.model_spec.signature_name = "classify_x_to_y"
    request.ClearField("input")
    assert await rpc_error(stubs.prediction.Classify(request)) == (
        "INVALID_ARGUMENT",
        "Input is empty.",
    )


async def test_multi_inference_runs_classify_and_regress_together(stubs: Stubs) -> None:
    request = classify_and_regress("half_plus_two", 4.0)
    response = await stubs.prediction.MultiInference(request)
    first, second = response.results
    assert first.classification_result.classifications[0].classes[0].score == 4.0
    assert second.regression_result.regressions[0].value == 4.0
    assert [r.model_spec.signature_name for r in response.results] == [
        "classify_x_to_y",
        "regress_x_to_y",
    ]


async def test_metadata_carries_the_saved_models_signature_defs(stubs: Stubs) -> None:
    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = await stubs.prediction.GetModelMetadata(request)
    signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    assert set(signatures) == {"serving_default", "classify_x_to_y", "regress_x_to_y"}
    x = signatures["serving_default"].inputs["x"]
    assert (x.name, x.dtype, [d.size for d in x.tensor_shape.dim]) == (
        "x:0",
        protos.types_pb2.DT_FLOAT,
        [-1, 1],
    )
    assert signatures["regress_x_to_y"].method_name == "tensorflow/serving/regress"
    assert response.model_spec.version.value == HALF_PLUS_TWO_VERSION

    request.ClearField("metadata_field")
    assert await rpc_error(stubs.prediction.GetModelMetadata(request)) == (
        "INVALID_ARGUMENT",
        "GetModelMetadataRequest must specify at least one metadata_field",
    )
    request.metadata_field.append("cats")
    assert await rpc_error(stubs.prediction.GetModelMetadata(request)) == (
        "INVALID_ARGUMENT",
        "Metadata field cats is not supported",
    )


async def test_model_status_lists_versions_newest_first_with_load_errors(stubs: Stubs) -> None:
    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "broken"
    response = await stubs.model.GetModelStatus(request)
    state = protos.get_model_status_pb2.ModelVersionStatus.State
    summary = [(s.version, state.Name(s.state)) for s in response.model_version_status]
    assert summary == [(2, "END"), (1, "AVAILABLE")]
    failed, healthy = response.model_version_status
    assert failed.status.error_code != protos.error_codes_pb2.OK
    assert "saved_model.pb" in failed.status.error_message
    assert healthy.status.error_code == protos.error_codes_pb2.OK

    request.model_spec.version.value = 1
    response = await stubs.model.GetModelStatus(request)
    assert [s.version for s in response.model_version_status] == [1]
    request.model_spec.version.value = 9
    assert await rpc_error(stubs.model.GetModelStatus(request)) == (
        "NOT_FOUND",
        "Could not find version 9 of model broken",
    )
    request.model_spec.name = "nope"
    request.model_spec.ClearField("version")
    assert await rpc_error(stubs.model.GetModelStatus(request)) == (
        "NOT_FOUND",
        "Could not find any versions of model nope",
    )


async def test_health_service_reports_serving(stubs: Stubs) -> None:
    for service in ("", "tensorflow.serving.PredictionService"):
        reply = await stubs.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_unix_socket_serves_the_same_api(serving_server: EmbeddedServer) -> None:
    socket_flag = next(f for f in serving_server.extra_flags if f.startswith("--grpc_socket_path"))
    async with open_channel(f"unix:{socket_flag.split('=', 1)[1]}") as channel:
        response = await Stubs(channel).prediction.Predict(
            predict_request("tf2_add", version=1, a=A, b=B)
        )
    assert response.model_spec.version.value == 1


async def test_malformed_bytes_get_an_error_and_the_server_keeps_serving(
    serving_server: EmbeddedServer,
) -> None:
    async with open_channel(serving_server.grpc_target) as channel:
        raw_predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.aio.AioRpcError):
            await raw_predict(b"\xff\xff\xff not a protobuf")
        response = await Stubs(channel).prediction.Predict(predict_request("tf2_add", a=A, b=B))
    assert response.model_spec.version.value == 2


async def test_requests_larger_than_grpcs_default_limit_are_served(stubs: Stubs) -> None:
    size = 2 * 2**20  # 8 MiB per input, twice gRPC's 4 MiB default
    a = np.ones(size, np.float32)
    response = await stubs.prediction.Predict(
        predict_request("tf2_add", output_filter=("sum",), a=a, b=a)
    )
    total = outputs_of(response)["sum"]
    assert total.shape == (size,) and float(total[0]) == 2.0


def test_warmup_requests_ran_before_half_plus_two_served(serving_server: EmbeddedServer) -> None:
    log_text = serving_server.log_path.read_text()
    assert "tf_serving_warmup_requests. Number of warmup records read: 1." in log_text
