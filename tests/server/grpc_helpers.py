"""Small helpers for talking to the embedded server over raw gRPC stubs in tests."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from core.wire import protos
from core.wire.tensors import make_ndarray, make_tensor_proto


def predict_request(
    model: str,
    *,
    signature: str = "",
    version: int | None = None,
    label: str | None = None,
    output_filter: tuple[str, ...] = (),
    **inputs: Any,
) -> Any:
    """A PredictRequest with numpy inputs."""
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(make_tensor_proto(np.asarray(value)))
    request.output_filter.extend(output_filter)
    return request


def outputs_of(response: Any) -> dict[str, np.ndarray]:
    """A PredictResponse's outputs as numpy arrays."""
    return {alias: make_ndarray(proto) for alias, proto in response.outputs.items()}


def example_input(request: Any, *rows: dict[str, float]) -> None:
    """Fill request.input with tf.Examples holding float features."""
    for row in rows:
        example = request.input.example_list.examples.add()
        for name, value in row.items():
            example.features.feature[name].float_list.value.append(value)


def classify_and_regress(model: str, x: float) -> Any:
    """A MultiInferenceRequest: half_plus_two's classify_x_to_y and regress_x_to_y on one x."""
    request = protos.inference_pb2.MultiInferenceRequest()
    example_input(request, {"x": x})
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    return request


async def rpc_error(call: Any) -> tuple[str, str]:
    """Await a call expected to fail; its (code name, details)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, error.details() or ""
    raise AssertionError("the call succeeded; expected an error")


class Stubs:
    """PredictionService, ModelService and Health stubs on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        from grpc_health.v1 import health_pb2_grpc

        self.prediction = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.model = protos.model_service_pb2_grpc.ModelServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


def open_channel(target: str) -> grpc.aio.Channel:
    """An insecure channel that carries large messages."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", 64 * 2**20),
            ("grpc.max_receive_message_length", 64 * 2**20),
        ],
    )
