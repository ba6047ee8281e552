"""Request validation and result shaping (server.inference), on hand-built SignatureDefs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.wire import protos
from core.wire.tensors import make_tensor_proto
from server import inference
from server.errors import ServingStatus


def _signature(inputs: dict[str, int], outputs: dict[str, int], method: str) -> Any:
    signature = protos.meta_graph_pb2.SignatureDef(method_name=method)
    for alias, dtype in inputs.items():
        signature.inputs[alias].name = f"{alias}:0"
        signature.inputs[alias].dtype = dtype
    for alias, dtype in outputs.items():
        signature.outputs[alias].name = f"{alias}_out:0"
        signature.outputs[alias].dtype = dtype
    return signature


FLOAT = protos.types_pb2.DT_FLOAT
STRING = protos.types_pb2.DT_STRING


def _request(**inputs: Any) -> Any:
    request = protos.predict_pb2.PredictRequest()
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(make_tensor_proto(value))
    return request


def test_defaults_fill_inputs_the_request_leaves_out() -> None:
    signature = _signature({"x": FLOAT, "scale": FLOAT}, {"y": FLOAT}, inference.PREDICT_METHOD)
    signature.defaults["scale"].CopyFrom(make_tensor_proto(np.float32(3.0)))
    prepared = inference.prepare_predict(
        "serving_default", signature, _request(x=np.ones(2, np.float32))
    )
    assert sorted(prepared.inputs) == ["scale", "x"]
    assert float(prepared.inputs["scale"]) == 3.0
    assert prepared.output_aliases == ("y",)


def test_output_filter_keeps_the_requested_order() -> None:
    signature = _signature({"x": FLOAT}, {"a": FLOAT, "b": FLOAT, "c": FLOAT}, "")
    request = _request(x=np.ones(1, np.float32))
    request.output_filter.extend(["c", "a"])
    assert inference.output_aliases(signature, request.output_filter) == ("c", "a")
    assert inference.output_aliases(signature, []) == ("a", "b", "c")


def test_a_signature_without_declared_dtype_accepts_any() -> None:
    signature = _signature({"x": protos.types_pb2.DT_INVALID}, {"y": FLOAT}, "")
    prepared = inference.prepare_predict("s", signature, _request(x=np.ones(1, np.int64)))
    assert prepared.inputs["x"].dtype == np.int64


@pytest.mark.parametrize(
    ("dtype", "text"),
    [
        (protos.types_pb2.DT_FLOAT, "float"),
        (protos.types_pb2.DT_INT64, "int64"),
        (protos.types_pb2.DT_STRING, "string"),
        (protos.types_pb2.DT_BFLOAT16, "bfloat16"),
    ],
)
def test_tf_dtype_strings(dtype: int, text: str) -> None:
    assert inference.tf_dtype_string(dtype) == text


def test_serialized_examples_put_the_context_first() -> None:
    request = protos.classification_pb2.ClassificationRequest()
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["c"].int64_list.value.append(1)
    with_context.examples.add().features.feature["x"].float_list.value.append(2.0)
    (serialized,) = inference.serialized_examples(request.input)
    merged = protos.example_pb2.Example.FromString(serialized)
    assert sorted(merged.features.feature) == ["c", "x"]


def _classify_signature(outputs: dict[str, int]) -> Any:
    return _signature({"inputs": STRING}, outputs, inference.CLASSIFY_METHOD)


def test_classify_signature_checks() -> None:
    assert inference.classify_outputs(_classify_signature({"scores": FLOAT})) == ("scores",)
    with pytest.raises(ServingStatus, match="at least one of"):
        inference.classify_outputs(_classify_signature({"probabilities": FLOAT}))
    with pytest.raises(ServingStatus, match="Expected one or two output Tensors, found 3"):
        inference.classify_outputs(
            _classify_signature({"classes": STRING, "scores": FLOAT, "extra": FLOAT})
        )


def test_classification_result_from_scores_only() -> None:
    result = protos.classification_pb2.ClassificationResult()
    scores = np.array([[0.25, 0.75]], np.float32)
    inference.fill_classification_result(result, 1, {"scores": scores})
    assert [(c.label, c.score) for c in result.classifications[0].classes] == [
        ("", 0.25),
        ("", 0.75),
    ]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {"scores": np.ones(2, np.float32)},
            "Expected Tensor shape: [batch_size num_classes] but got [2]",
        ),
        (
            {"scores": np.ones((2, 2), np.float64)},
            "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE",
        ),
        ({"scores": np.ones((3, 2), np.float32)}, "Expected scores output batch size of 2. Got: 3"),
        (
            {"classes": np.full((2, 3), b"a", dtype=object), "scores": np.ones((2, 2), np.float32)},
            "Tensors class and score should match in dim_size(1). Got 3 vs. 2",
        ),
    ],
)
def test_classification_result_shape_errors(outputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ServingStatus) as caught:
        inference.fill_classification_result(
            protos.classification_pb2.ClassificationResult(), 2, outputs
        )
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            np.ones((2, 2), np.float32),
            "Expected output Tensor shape to be either [batch_size] or "
            "[batch_size, 1] but got [2,2]",
        ),
        (np.ones(3, np.float32), "Input batch size did not match output batch size: 2 vs. 3"),
        (np.ones(2, np.int32), "Expected output Tensor of DT_FLOAT.  Got: DT_INT32"),
    ],
)
def test_regression_result_shape_errors(values: np.ndarray, message: str) -> None:
    with pytest.raises(ServingStatus) as caught:
        inference.fill_regression_result(
            protos.regression_pb2.RegressionResult(), 2, {"outputs": values}
        )
    assert caught.value.message == message


def test_regression_accepts_a_column() -> None:
    result = protos.regression_pb2.RegressionResult()
    inference.fill_regression_result(result, 2, {"outputs": np.array([[1.5], [2.5]], np.float32)})
    assert [r.value for r in result.regressions] == [1.5, 2.5]
