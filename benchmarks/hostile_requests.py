"""Hostile requests for the embedded server: tiny ones declaring huge tensors, and malformed ones.

One home for what benchmarks/hardening_probe.py measures and tests/server/ checks (the tests
import it from here, as they import other benchmarks' stand-ins; benchmarks never import tests).
"""

from __future__ import annotations

import json
from typing import Any

from core.wire import protos

GRPC_GARBAGE = b"\xff\xfe garbage \x00\x01" * 10
"""Bytes that are not a PredictRequest, to send as one over gRPC."""


def declared_request(
    model: str, alias: str, dtype: int, shape: list[int], values: list[Any] | None = None
) -> Any:
    """A PredictRequest whose one tensor declares shape and carries only values (fill rule)."""
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs[alias]
    tensor.dtype = dtype
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    if values:
        field = "string_val" if dtype == protos.types_pb2.DT_STRING else "float_val"
        getattr(tensor, field).extend(values)
    return request


def nested_json_body(levels: int) -> bytes:
    """A REST predict body whose one instance is a number nested in `levels` arrays."""
    return b'{"instances": ' + b"[" * levels + b"1" + b"]" * levels + b"}"


def long_number_body(digits: int) -> bytes:
    """A REST predict body whose one value is an integer of `digits` nines."""
    return b'{"instances": [[' + b"9" * digits + b"]]}"


def text_rows_body(rows: int, text: str = "what is a canary") -> bytes:
    """A REST predict body of `rows` copies of a short text (for the demo chat model)."""
    return b'{"instances": [' + b",".join([json.dumps(text).encode()] * rows) + b"]}"
