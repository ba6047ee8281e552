"""The server's per-request shortcuts give the same answers as the plain paths they replace."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest

from core.wire import protos
from core.wire.tensors import make_ndarray, make_tensor_proto
from server import inference, tensor_fields
from server.errors import ServingStatus
from server.run_placement import MIN_SAMPLES, RunPlacement

ARRAYS = [
    np.array([[1.5, -2.0]], np.float32),
    np.array([1.0, 2.5], np.float64),
    np.array([-3, 4], np.int8),
    np.array([7, 8], np.uint16),
    np.array([1, -(2**40)], np.int64),
    np.array([2**32 - 1], np.uint32),
    np.array([2**64 - 1], np.uint64),
    np.array([True, False]),
    np.array([1.5, -0.25], np.float16),
    np.array([1.5, -0.25], ml_dtypes.bfloat16),
    np.array([1 + 2j, -3j], np.complex64),
    np.array([1 + 2j], np.complex128),
    np.array([b"a", b"\xff"], dtype=object),
    np.zeros((0, 3), np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: str(a.dtype))
def test_typed_fields_and_tensor_content_round_trip(array: np.ndarray) -> None:
    typed = tensor_fields.as_proto_field(array)
    assert typed.tensor_content == b""
    packed = tensor_fields.as_proto_tensor_content(array)
    for proto in (typed, packed):
        decoded = make_ndarray(proto)
        assert decoded.dtype == array.dtype
        assert decoded.shape == array.shape
        assert decoded.tolist() == array.tolist()
        assert tensor_fields.to_ndarray(proto).tolist() == array.tolist()


def test_fast_decode_falls_back_to_cores_errors() -> None:
    proto = make_tensor_proto(np.ones(3, np.float32))
    proto.tensor_content = proto.tensor_content[:8]
    with pytest.raises(ValueError, match="needs 12 bytes"):
        tensor_fields.to_ndarray(proto)


def _signature() -> Any:
    signature = protos.meta_graph_pb2.SignatureDef(method_name=inference.PREDICT_METHOD)
    for alias in ("x", "scale"):
        signature.inputs[alias].name = f"{alias}:0"
        signature.inputs[alias].dtype = protos.types_pb2.DT_FLOAT
    signature.outputs["y"].name = "y:0"
    signature.outputs["y"].dtype = protos.types_pb2.DT_FLOAT
    signature.defaults["scale"].CopyFrom(make_tensor_proto(np.float32(3.0)))
    return signature


def test_a_cached_plan_answers_as_validation_does() -> None:
    signature = _signature()
    plans: dict[Any, Any] = {}
    request = protos.predict_pb2.PredictRequest()
    for value in (1.0, 2.0):
        request.inputs["x"].CopyFrom(make_tensor_proto(np.array([value], np.float32)))
        cached = inference.prepare_predict_cached("serving_default", signature, request, plans)
        plain = inference.prepare_predict("serving_default", signature, request)
        assert len(plans) == 1
        assert cached.output_aliases == plain.output_aliases == ("y",)
        assert {k: v.tolist() for k, v in cached.inputs.items()} == {
            k: v.tolist() for k, v in plain.inputs.items()
        }
    # A shape the plan has not seen is validated again, with TF Serving's error.
    request.inputs["x"].CopyFrom(make_tensor_proto(np.array([1], np.int64)))
    with pytest.raises(ServingStatus, match="Expects arg\\[1\\] to be float but int64"):
        inference.prepare_predict_cached("serving_default", signature, request, plans)
    # A known shape with a broken tensor still fails to parse.
    request.inputs["x"].CopyFrom(make_tensor_proto(np.array([1.0], np.float32)))
    request.inputs["x"].tensor_content = b"\x00"
    with pytest.raises(ServingStatus, match="tensor parsing error: x"):
        inference.prepare_predict_cached("serving_default", signature, request, plans)


def test_run_placement_goes_inline_only_for_short_known_runs() -> None:
    placement = RunPlacement(budget_s=0.001)
    small = {"x": np.ones(4, np.float32)}
    assert not placement.inline("fast", small)  # unknown cost: a thread first
    for _ in range(MIN_SAMPLES):
        placement.record("fast", 0.0001)
        placement.record("slow", 0.01)
    assert placement.inline("fast", small)
    assert not placement.inline("slow", small)
    assert not placement.inline("fast", {"x": np.ones(1 << 20, np.float32)})
    placement.forget(0)
    assert RunPlacement(enabled=False).inline("fast", small) is False
