"""numpy arrays -> TensorProto the way TensorFlow's C++ Tensor writes them for TF Serving.

Predict answers with ``Tensor::AsProtoField`` (typed ``float_val``, ``int64_val``,
``string_val``, ...), TF Serving's default "for backward compatibility";
``--enable_serialization_as_tensor_content`` switches to ``Tensor::AsProtoTensorContent``
(compact little-endian bytes).
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np

from core.wire import tensors
from core.wire.protos import tensor_pb2, tensor_shape_pb2, types_pb2

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


@functools.lru_cache(maxsize=1024)
def _shape_proto(shape: tuple[int, ...]) -> Any:
    """A TensorShapeProto for shape, built once and copied into responses (never changed)."""
    proto = tensor_shape_pb2.TensorShapeProto()
    for size in shape:
        proto.dim.add(size=size)
    return proto


def _write_shape(proto: Any, array: np.ndarray, dtype_enum: int) -> None:
    proto.dtype = dtype_enum
    proto.tensor_shape.CopyFrom(_shape_proto(array.shape))


def _dtype_enum(array: np.ndarray) -> int:
    return int(tensors.tf_dtype(array.dtype))


@functools.lru_cache(maxsize=64)  # str dtypes differ by length ('<U5', '<U6', ...)
def _typed_field(dtype: np.dtype[Any]) -> tuple[int, str]:
    """(DataType enum, typed field name) of a numpy dtype: looked up once per dtype."""
    dtype_enum = int(tensors.tf_dtype(dtype))
    return dtype_enum, _FIELD_BY_DTYPE[dtype_enum]


def fill_proto_field(proto: Any, array: np.ndarray) -> None:
    """Write array into an empty TensorProto's typed *_val field, as Tensor::AsProtoField."""
    dtype_enum, field_name = _typed_field(array.dtype)
    _write_shape(proto, array, dtype_enum)
    if array.size == 0:
        return
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


def fill_tensor_content(proto: Any, array: np.ndarray) -> None:
    """Write array's bytes into an empty TensorProto's tensor_content (strings: string_val)."""
    dtype_enum = _dtype_enum(array)
    if dtype_enum == types_pb2.DT_STRING:
        fill_proto_field(proto, array)
        return
    _write_shape(proto, array, dtype_enum)
    if array.size:
        if sys.byteorder != "little" and array.dtype.itemsize > 1:
            array = array.astype(array.dtype.newbyteorder("<"))
        proto.tensor_content = np.ascontiguousarray(array).tobytes()


def as_proto_field(array: np.ndarray) -> Any:
    """A new TensorProto holding array in its typed *_val field."""
    proto = tensor_pb2.TensorProto()
    fill_proto_field(proto, array)
    return proto


def as_proto_tensor_content(array: np.ndarray) -> Any:
    """A new TensorProto holding array in tensor_content."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_content(proto, array)
    return proto


# Numeric dtypes whose tensor_content a request may carry, decoded without core's checks.
NUMPY_BY_DTYPE: dict[int, np.dtype[Any]] = {
    enum: tensors.numpy_dtype(enum) for enum in _FIELD_BY_DTYPE if enum != types_pb2.DT_STRING
}


_LITTLE_ENDIAN = sys.byteorder == "little"

_MAX_CACHED_SHAPE_BYTES = 64  # a few dims; a request cannot fill the cache with huge keys


def dims_of(shape: Any) -> tuple[int, ...]:
    """A TensorShapeProto's dimension sizes (unknown_rank aside).

    Serializing a small shape and one cache look-up cost a fifth of reading its dims one message
    wrapper at a time, and requests repeat their shapes."""
    serialized = shape.SerializeToString()
    if len(serialized) <= _MAX_CACHED_SHAPE_BYTES:
        return _dims_of_serialized(serialized)
    return tuple([dim.size for dim in shape.dim])


@functools.lru_cache(maxsize=4096)
def _dims_of_serialized(serialized: bytes) -> tuple[int, ...]:
    return tuple([dim.size for dim in tensor_shape_pb2.TensorShapeProto.FromString(serialized).dim])


def to_ndarray(proto: Any) -> np.ndarray:
    """The array a request's TensorProto holds: a fast path for well-formed tensor_content,
    core.wire.tensors.make_ndarray (with its errors) for everything else."""
    content = proto.tensor_content
    wire_dtype = NUMPY_BY_DTYPE.get(proto.dtype)
    if content and wire_dtype is not None and _LITTLE_ENDIAN:
        shape_proto = proto.tensor_shape
        shape = dims_of(shape_proto)
        if (
            len(content) == math.prod(shape) * wire_dtype.itemsize
            and (not shape or min(shape) >= 0)
            and not shape_proto.unknown_rank
        ):
            # A copy: TensorFlow may reuse a fed buffer, and the proto's bytes are immutable.
            return np.frombuffer(content, dtype=wire_dtype).reshape(shape).copy()
    return tensors.make_ndarray(proto)
