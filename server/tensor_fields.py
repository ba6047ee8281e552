"""numpy arrays -> TensorProto the way TensorFlow's C++ Tensor writes them for TF Serving.

Predict answers with ``Tensor::AsProtoField`` (typed ``float_val``, ``int64_val``,
``string_val``, ...), TF Serving's default "for backward compatibility";
``--enable_serialization_as_tensor_content`` switches to ``Tensor::AsProtoTensorContent``
(compact little-endian bytes).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from core import tensors
from core.protos import tensor_pb2, types_pb2

# ProtoHelper<T> in tensorflow/core/framework/tensor.cc: the typed field each dtype fills.
_FIELD_BY_DTYPE: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    # 16-bit floats travel as their bit patterns in the int32 half_val field.
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    # Complex numbers travel as (real, imaginary) pairs.
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}


def _new_proto(array: np.ndarray, dtype_enum: int) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _dtype_enum(array: np.ndarray) -> int:
    return int(tensors.tf_dtype(array.dtype))


def as_proto_field(array: np.ndarray) -> Any:
    """A TensorProto with array's values in its typed *_val field, as Tensor::AsProtoField."""
    dtype_enum = _dtype_enum(array)
    proto = _new_proto(array, dtype_enum)
    if array.size == 0:
        return proto
    field_name = _FIELD_BY_DTYPE[dtype_enum]
    flat = array.reshape(-1)
    if field_name == "string_val":
        values: Any = [
            item if isinstance(item, bytes) else str(item).encode("utf-8") for item in flat
        ]
    elif field_name == "half_val":
        values = flat.view(np.uint16).tolist()
    elif field_name in ("scomplex_val", "dcomplex_val"):
        values = flat.view(flat.real.dtype).tolist()
    else:
        values = flat.tolist()
    getattr(proto, field_name).extend(values)
    return proto


def as_proto_tensor_content(array: np.ndarray) -> Any:
    """A TensorProto with array's bytes in tensor_content (strings still in string_val)."""
    dtype_enum = _dtype_enum(array)
    if dtype_enum == types_pb2.DT_STRING:
        return as_proto_field(array)
    proto = _new_proto(array, dtype_enum)
    if array.size:
        if sys.byteorder != "little" and array.dtype.itemsize > 1:
            array = array.astype(array.dtype.newbyteorder("<"))
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto
