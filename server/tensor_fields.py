"""numpy arrays -> TensorProto the way TensorFlow's C++ Tensor writes them for TF Serving.

Predict answers with ``Tensor::AsProtoField`` (typed ``float_val``, ``int64_val``,
``string_val``, ...), TF Serving's default "for backward compatibility";
``--enable_serialization_as_tensor_content`` switches to ``Tensor::AsProtoTensorContent``
(compact little-endian bytes).
"""

from __future__ import annotations

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


# TensorShapeProtos by shape, copied into responses instead of built dim by dim.
_SHAPES: dict[tuple[int, ...], Any] = {}
_MAX_CACHED_SHAPES = 1024


def _write_shape(proto: Any, array: np.ndarray, dtype_enum: int) -> None:
    proto.dtype = dtype_enum
    shape = array.shape
    cached = _SHAPES.get(shape)
    if cached is None:
        cached = tensor_shape_pb2.TensorShapeProto()
        for size in shape:
            cached.dim.add(size=size)
        if len(_SHAPES) < _MAX_CACHED_SHAPES:
            _SHAPES[shape] = cached
    proto.tensor_shape.CopyFrom(cached)


def _dtype_enum(array: np.ndarray) -> int:
    return int(tensors.tf_dtype(array.dtype))


# numpy dtype -> (DataType enum, typed field name): looked up once per dtype, not per response.
_FIELD_BY_NUMPY: dict[np.dtype[Any], tuple[int, str]] = {}
_MAX_CACHED_DTYPES = 64  # str dtypes differ by length ('<U5', '<U6', ...): keep the cache small


def _typed_field(array: np.ndarray) -> tuple[int, str]:
    entry = _FIELD_BY_NUMPY.get(array.dtype)
    if entry is None:
        dtype_enum = _dtype_enum(array)
        entry = (dtype_enum, _FIELD_BY_DTYPE[dtype_enum])
        if len(_FIELD_BY_NUMPY) < _MAX_CACHED_DTYPES:
            _FIELD_BY_NUMPY[array.dtype] = entry
    return entry


def fill_proto_field(proto: Any, array: np.ndarray) -> None:
    """Write array into an empty TensorProto's typed *_val field, as Tensor::AsProtoField."""
    dtype_enum, field_name = _typed_field(array)
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
_NUMPY_BY_DTYPE: dict[int, np.dtype[Any]] = {
    enum: tensors.numpy_dtype(enum) for enum in _FIELD_BY_DTYPE if enum != types_pb2.DT_STRING
}


_LITTLE_ENDIAN = sys.byteorder == "little"

# Dimension sizes by serialized TensorShapeProto: serializing a shape and one dict look-up cost
# a fifth of reading its dims one message wrapper at a time, and requests repeat their shapes.
_DIMS: dict[bytes, tuple[int, ...]] = {}
_MAX_CACHED_DIMS = 4096
_MAX_CACHED_SHAPE_BYTES = 64  # a few dims; a request cannot fill the cache with huge keys


def dims_of(shape: Any) -> tuple[int, ...]:
    """A TensorShapeProto's dimension sizes (unknown_rank aside)."""
    key = shape.SerializeToString()
    dims = _DIMS.get(key)
    if dims is None:
        dims = tuple([dim.size for dim in shape.dim])
        if len(_DIMS) < _MAX_CACHED_DIMS and len(key) <= _MAX_CACHED_SHAPE_BYTES:
            _DIMS[key] = dims
    return dims


def to_ndarray(proto: Any) -> np.ndarray:
    """The array a request's TensorProto holds: a fast path for well-formed tensor_content,
    core.wire.tensors.make_ndarray (with its errors) for everything else."""
    content = proto.tensor_content
    wire_dtype = _NUMPY_BY_DTYPE.get(proto.dtype)
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
