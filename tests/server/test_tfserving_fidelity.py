"""What TF Serving's own client code relies on: typed Predict outputs, REST `results`, and
Classify/Regress/MultiInference on TF2 SavedModels (method names unchecked by default)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import ml_dtypes
import numpy as np
import pytest

from core.embedded.launcher import EmbeddedServer
from core.wire import protos
from tests.fixtures.models import DTYPE_OUTPUTS
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

X = np.array([-1.5, 0.0, 2.0], np.float32)

# The typed field Tensor::AsProtoField fills for each output of the dtypes model.
TYPED_FIELD = {
    "float16": "half_val",
    "bfloat16": "half_val",
    "float32": "float_val",
    "float64": "double_val",
    "int8": "int_val",
    "int16": "int_val",
    "int32": "int_val",
    "int64": "int64_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "bool": "bool_val",
    "complex64": "scomplex_val",
    "complex128": "dcomplex_val",
    "string": "string_val",
}


@pytest.fixture
async def stubs(serving_server: EmbeddedServer) -> AsyncIterator[Stubs]:
    async with open_channel(serving_server.grpc_target) as channel:
        yield Stubs(channel)


def _expected(name: str) -> np.ndarray:
    if name == "bool":
        return X > 0
    if name == "string":
        return np.array([b"-1.500000", b"0.000000", b"2.000000"], dtype=object)
    if name.startswith("complex"):
        return (X + 1j).astype(name)
    if name == "bfloat16":
        return X.astype(ml_dtypes.bfloat16)
    with np.errstate(invalid="ignore"):
        return X.astype(name)


async def test_predict_writes_the_typed_fields_client_code_reads(stubs: Stubs) -> None:
    response = await stubs.prediction.Predict(
        predict_request("half_plus_two", x=np.array([[1.0], [2.0], [3.0]], np.float32))
    )
    y = response.outputs["y"]
    assert list(y.float_val) == [2.5, 3.0, 3.5]
    assert y.tensor_content == b""
    assert [dim.size for dim in y.tensor_shape.dim] == [3, 1]


async def test_every_dtype_goes_in_the_field_tensorflow_uses(stubs: Stubs) -> None:
    response = await stubs.prediction.Predict(predict_request("dtypes", x=X))
    assert sorted(response.outputs) == sorted(DTYPE_OUTPUTS)
    decoded = outputs_of(response)
    for name in DTYPE_OUTPUTS:
        proto = response.outputs[name]
        assert proto.tensor_content == b"", name
        filled = [field.name for field, _ in proto.ListFields() if field.name.endswith("_val")]
        assert filled == [TYPED_FIELD[name]], name
        expected = _expected(name)
        assert decoded[name].dtype == expected.dtype, name
        assert decoded[name].tolist() == expected.tolist(), name
    # 16-bit floats are their bit patterns; complex numbers are (real, imaginary) pairs.
    assert (
        list(response.outputs["float16"].half_val) == X.astype(np.float16).view(np.uint16).tolist()
    )
    assert list(response.outputs["complex64"].scomplex_val) == [-1.5, 1.0, 0.0, 1.0, 2.0, 1.0]


async def test_classify_regress_and_multi_inference_run_on_a_tf2_savedmodel(
    stubs: Stubs,
) -> None:
    classify = protos.classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two_tf2"
    classify.model_spec.signature_name = "classify_x_to_y"
    example_input(classify, {"x": 2.0})
    response = await stubs.prediction.Classify(classify)
    classes = response.result.classifications[0].classes
    assert [(item.label, item.score) for item in classes] == [("half", 3.0), ("two", -3.0)]

    regress = protos.regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two_tf2"
    regress.model_spec.signature_name = "regress_x_to_y"
    example_input(regress, {"x": 4.0})
    response = await stubs.prediction.Regress(regress)
    assert [item.value for item in response.result.regressions] == [4.0]

    multi = classify_and_regress("half_plus_two_tf2", 6.0)
    response = await stubs.prediction.MultiInference(multi)
    first, second = response.results
    assert first.classification_result.classifications[0].classes[0].score == 5.0
    assert second.regression_result.regressions[0].value == 5.0


async def test_rest_classify_and_regress_answer_results(serving_server: EmbeddedServer) -> None:
    async with aiohttp.ClientSession(base_url=serving_server.rest_url) as http:
        body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
        async with http.post("/v1/models/half_plus_two_tf2:classify", json=body) as response:
            assert response.status == 200
            assert await response.json() == {"results": [[["half", 3.0], ["two", -3.0]]]}
        body = {"signature_name": "regress_x_to_y", "examples": [{"x": 4.0}]}
        async with http.post("/v1/models/half_plus_two_tf2:regress", json=body) as response:
            assert response.status == 200
            assert await response.json() == {"results": [4.0]}


async def test_method_name_check_and_tensor_content_flags(
    start_server: Any, saved_models_root: Path
) -> None:
    server = start_server(
        models=[
            {"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"},
            {"name": "half_plus_two_tf2", "base_path": saved_models_root / "half_plus_two_tf2"},
        ],
        flags=[
            "--enable_signature_method_name_check",
            "--enable_serialization_as_tensor_content=true",
        ],
    )
    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)
        request = protos.classification_pb2.ClassificationRequest()
        request.model_spec.name = "half_plus_two_tf2"
        request.model_spec.signature_name = "classify_x_to_y"
        example_input(request, {"x": 2.0})
        assert await rpc_error(stubs.prediction.Classify(request)) == (
            "INVALID_ARGUMENT",
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict",
        )
        request.model_spec.name = "half_plus_two"  # TF1 export: the method name is right
        response = await stubs.prediction.Classify(request)
        assert response.result.classifications[0].classes[0].score == 3.0

        response = await stubs.prediction.Predict(
            predict_request("half_plus_two", x=np.array([[2.0]], np.float32))
        )
        y = response.outputs["y"]
        assert (list(y.float_val), y.tensor_content) == ([], np.float32([[3.0]]).tobytes())


def test_version_flag_prints_versions_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("TensorFlow ModelServer: deepchat-tfs ")
    assert second.startswith("TensorFlow Library: 2.")


async def test_cors_preflight_and_headers(start_server: Any, saved_models_root: Path) -> None:
    server = start_server(
        model_name="half_plus_two",
        base_path=saved_models_root / "half_plus_two",
        flags=["--rest_api_enable_cors_support"],
    )
    async with aiohttp.ClientSession(base_url=server.rest_url) as http:
        origin = {"Origin": "https://console.example"}
        async with http.options("/v1/models/half_plus_two:predict", headers=origin) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Access-Control-Allow-Methods"] == "POST, GET"
        async with http.options("/v1/models/half_plus_two:predict") as response:
            assert response.status == 400
        body = {"instances": [[1.0]]}
        async with http.post("/v1/models/half_plus_two:predict", json=body) as response:
            assert await response.json() == {"predictions": [[2.5]]}
            assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
