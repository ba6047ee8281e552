"""A lean TF Serving stand-in for the console benchmarks: the demo chat model, canned answers.

`python -m benchmarks.chat_stub_server PORT` serves Predict (text -> reply, confidence, version 1),
GetModelMetadata and GetModelStatus for `deepchat_model` with pre-serialized answers, so it spends
as little CPU per request as Python gRPC allows and the console's own cost is what is measured.
It prints `ready` once it listens.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import numpy as np

from core.identity import DEMO_MODEL_NAME
from core.wire import protos
from core.wire.tensors import make_tensor_proto

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def _signature() -> bytes:
    """GetModelMetadataResponse bytes: serving_default, text (string) -> reply, confidence."""
    signature = protos.meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    specs = (
        (signature.inputs, {"text": protos.types_pb2.DT_STRING}),
        (signature.outputs, {"reply": protos.types_pb2.DT_STRING, "confidence": 1}),
    )
    for tensors, dtypes in specs:
        for alias, dtype in dtypes.items():
            tensors[alias].name = f"{alias}:0"
            tensors[alias].dtype = dtype
            tensors[alias].tensor_shape.dim.add(size=-1)
    signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    response = protos.get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = DEMO_MODEL_NAME
    response.model_spec.version.value = 1
    response.metadata["signature_def"].Pack(signature_map)
    return bytes(response.SerializeToString())


def _status() -> bytes:
    response = protos.get_model_status_pb2.GetModelStatusResponse()
    status = response.model_version_status.add(version=1)
    status.state = protos.get_model_status_pb2.ModelVersionStatus.State.Value("AVAILABLE")
    return bytes(response.SerializeToString())


def _predict(items: int) -> bytes:
    response = protos.predict_pb2.PredictResponse()
    response.model_spec.name = DEMO_MODEL_NAME
    response.model_spec.signature_name = "serving_default"
    response.model_spec.version.value = 1
    reply = np.array([b"a canned reply of about chat size"] * items, dtype=object)
    response.outputs["reply"].CopyFrom(make_tensor_proto(reply))
    response.outputs["confidence"].CopyFrom(make_tensor_proto(np.full(items, 0.5, np.float32)))
    return bytes(response.SerializeToString())


async def serve(port: int) -> None:
    """Serve until killed."""
    metadata, status = _signature(), _status()
    # Replies for batches of up to 64 items: a request's item count is read from its size class.
    predict_by_items = {items: _predict(items) for items in range(1, 65)}

    async def predict(request: bytes, context: object) -> bytes:
        parsed = protos.predict_pb2.PredictRequest.FromString(request)
        items = len(parsed.inputs["text"].string_val) or 1
        return predict_by_items.get(items, predict_by_items[1])

    async def get_metadata(request: bytes, context: object) -> bytes:
        return metadata

    async def get_status(request: bytes, context: object) -> bytes:
        return status

    def raw(handler: object) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(handler)  # type: ignore[arg-type]

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                PREDICTION_SERVICE,
                {"Predict": raw(predict), "GetModelMetadata": raw(get_metadata)},
            ),
            grpc.method_handlers_generic_handler(
                MODEL_SERVICE, {"GetModelStatus": raw(get_status)}
            ),
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
