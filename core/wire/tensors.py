"""numpy arrays <-> TensorFlow's TensorProto for every dtype TF Serving carries, without TF.

Reading follows ``tf.make_ndarray``: ``tensor_content`` when present, otherwise the typed
``*_val`` field, where fewer values than the shape holds are padded with the last value (so a
single value fills the whole tensor). Writing puts numeric tensors in compact little-endian
``tensor_content`` and strings in ``string_val``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

# The dtype functions and the nested-list converter live in core.wire.dtypes and core.wire.nested;
# they are re-exported here (see __all__) for callers that import them from this module.
from core.wire.dtypes import (
    _DtypeInfo,
    _info,
    dtype_name,
    numpy_dtype,
    resolve_dtype,
    supported_dtype_names,
    tf_dtype,
)
from core.wire.nested import Locate, array_from_leaves, flatten_nested
from core.wire.protos import tensor_pb2, types_pb2

__all__ = [
    "Locate",
    "array_from_leaves",
    "dtype_name",
    "flatten_nested",
    "make_ndarray",
    "make_tensor_proto",
    "numpy_dtype",
    "resolve_dtype",
    "supported_dtype_names",
    "tf_dtype",
]


# tensor_pb2.TensorProto: the generated protobuf classes carry no static types here.
_TensorProto = Any
_TENSOR_CONTENT_LIMIT = 1 << 31  # a protobuf bytes field cannot hold 2 GB


def make_tensor_proto(
    values: Any, dtype: Any = None, shape: Sequence[int] | None = None
) -> _TensorProto:
    """A TensorProto holding values (array, nested list, scalar, bytes or str), like TF's."""
    if isinstance(values, tensor_pb2.TensorProto):
        return values
    target = None if dtype is None else numpy_dtype(resolve_dtype(dtype))
    array = _to_array(values, target)
    if shape is not None:
        array = _fit_shape(array, shape)
    return _array_to_proto(array)


def _to_array(values: Any, target: np.dtype[Any] | None) -> np.ndarray:
    """values as a numpy array of a supported dtype (target when given)."""
    if values is None:
        raise ValueError("values is None; expected an array, a (nested) list or a scalar")
    if isinstance(values, np.ndarray | np.generic) or hasattr(values, "__array__"):
        array = np.asarray(values)
        if array.dtype.kind not in "OSU":
            return _convert_numeric_array(array, target)
        # Strings and object arrays: normalise element by element (str -> UTF-8 bytes).
        if target is None and (array.dtype.kind in "SU" or array.size == 0):
            target = np.dtype(object)
        return array_from_leaves(array.shape, array.ravel().tolist(), target, locate=_locate)
    shape, leaves = flatten_nested(values, _locate)
    array = array_from_leaves(shape, leaves, target, locate=_locate)
    if target is None and array.dtype == np.int64 and _fits(array, np.int32):
        # TF guesses int32 for Python ints when no value needs 64 bits.
        array = array.astype(np.int32)
    return array


def _locate(path: tuple[int, ...]) -> str:
    return "values" + "".join(f"[{index}]" for index in path)


def _fits(array: np.ndarray, dtype: type[np.integer[Any]]) -> bool:
    limits = np.iinfo(dtype)
    return array.size == 0 or (int(array.min()) >= limits.min and int(array.max()) <= limits.max)


def _convert_numeric_array(array: np.ndarray, target: np.dtype[Any] | None) -> np.ndarray:
    """A numeric numpy array in native byte order, cast to target like TF's astype."""
    source_enum = tf_dtype(array.dtype)  # rejects datetime64, float128, ...
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if target is None or target == array.dtype:
        return array
    source_name, target_name = _info(source_enum).name, _info(tf_dtype(target)).name
    if target.kind == "O":
        raise ValueError(
            f"values is a {source_name} array and cannot become {target_name}; "
            "pass strings or bytes for a string tensor"
        )
    if array.dtype.kind == "c" and target.kind != "c":
        raise ValueError(
            f"values is a {source_name} array; converting it to {target_name} would drop "
            "the imaginary part"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        return array.astype(target)


def _fit_shape(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """array reshaped to shape, or a single value broadcast to fill it."""
    try:
        dims = tuple(int(dim) for dim in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape {shape!r}: expected a list of non-negative integers") from None
    if any(dim < 0 for dim in dims):
        raise ValueError(f"shape {list(dims)}: dimensions must be known and non-negative")
    count = math.prod(dims)
    if array.size == count:
        return array.reshape(dims)
    if array.size == 1:
        return np.broadcast_to(array.reshape(()), dims)
    raise ValueError(
        f"values has {array.size} elements but shape {list(dims)} holds {count}; "
        "give exactly that many values, or one value to fill the shape"
    )


def _array_to_proto(array: np.ndarray) -> _TensorProto:
    info = _info(tf_dtype(array.dtype))
    proto = tensor_pb2.TensorProto(dtype=info.enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if info.enum == types_pb2.DT_STRING:
        proto.string_val.extend(array.ravel().tolist())
        return proto
    content = _little_endian(array).tobytes()
    if len(content) >= _TENSOR_CONTENT_LIMIT:
        raise ValueError(
            f"values holds {len(content)} bytes; a TensorProto cannot carry 2 GB or more, "
            "so split the request"
        )
    proto.tensor_content = content
    return proto


def _little_endian(array: np.ndarray) -> np.ndarray:
    """The array in little-endian byte order, the order of TensorProto.tensor_content."""
    if sys.byteorder == "little" or array.dtype.itemsize == 1:
        return array
    return array.astype(array.dtype.newbyteorder("<"))


def make_ndarray(proto: _TensorProto) -> np.ndarray:
    """The numpy array a TensorProto holds (DT_STRING -> object array of bytes)."""
    if not isinstance(proto, tensor_pb2.TensorProto):
        raise ValueError(f"expected a TensorProto, got {type(proto).__name__}")
    info = _info(proto.dtype, "TensorProto.dtype")
    shape = _proto_shape(proto)
    count = math.prod(shape)
    if proto.tensor_content:
        return _from_tensor_content(proto.tensor_content, info, shape)
    values = _typed_values(proto, info)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        if info.enum == types_pb2.DT_STRING:
            return np.full(shape, b"", dtype=object)
        return np.zeros(shape, dtype=info.numpy)
    if values.size > count:
        raise ValueError(
            f"TensorProto of {info.name} holds {values.size} values in {info.val_field} but "
            f"its shape {list(shape)} has only {count} elements"
        )
    # TF's rule: missing trailing values repeat the last one given.
    padding = np.full(count - values.size, values[-1], dtype=info.numpy)
    return np.concatenate([values, padding]).reshape(shape)


def _proto_shape(proto: _TensorProto) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise ValueError("TensorProto.tensor_shape has unknown rank; a tensor value needs a shape")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise ValueError(
            f"TensorProto.tensor_shape {list(shape)} has an unknown (-1) dimension; "
            "a tensor value needs every dimension"
        )
    return shape


def _from_tensor_content(content: bytes, info: _DtypeInfo, shape: tuple[int, ...]) -> np.ndarray:
    if info.enum == types_pb2.DT_STRING:
        raise ValueError("TensorProto of DT_STRING uses tensor_content; strings go in string_val")
    expected = math.prod(shape) * info.numpy.itemsize
    if len(content) != expected:
        raise ValueError(
            f"TensorProto of {info.name} with shape {list(shape)} needs {expected} bytes of "
            f"tensor_content, got {len(content)}"
        )
    wire_dtype = info.numpy if sys.byteorder == "little" else info.numpy.newbyteorder("<")
    # frombuffer shares the proto's immutable bytes; copy so callers get a writable array.
    return np.frombuffer(content, dtype=wire_dtype).astype(info.numpy).reshape(shape)


def _typed_values(proto: _TensorProto, info: _DtypeInfo) -> np.ndarray:
    """The flat values of the typed *_val field that info's dtype uses."""
    field = getattr(proto, info.val_field)
    if info.enum == types_pb2.DT_STRING:
        strings = np.empty(len(field), dtype=object)
        strings[:] = list(field)
        return strings
    if info.val_field in ("scomplex_val", "dcomplex_val"):
        parts_dtype = np.float32 if info.val_field == "scomplex_val" else np.float64
        parts = np.fromiter(field, dtype=parts_dtype, count=len(field))
        if parts.size % 2:
            raise ValueError(
                f"TensorProto of {info.name} has {parts.size} numbers in {info.val_field}; "
                "expected (real, imaginary) pairs"
            )
        return parts.view(info.numpy)
    if info.val_field in ("half_val", "int_val"):
        # These int32 fields carry narrower types (half_val: the 16-bit patterns).
        wide = np.fromiter(field, dtype=np.int64, count=len(field))
        storage = np.uint16 if info.val_field == "half_val" else info.numpy
        limits = np.iinfo(storage)
        if wide.size and (int(wide.min()) < limits.min or int(wide.max()) > limits.max):
            bad = next(v for v in wide.tolist() if not limits.min <= v <= limits.max)
            raise ValueError(
                f"TensorProto of {info.name} has {bad} in {info.val_field}, outside "
                f"{np.dtype(storage).name} range [{limits.min}, {limits.max}]"
            )
        return wide.astype(storage).view(info.numpy)
    return np.fromiter(field, dtype=info.numpy, count=len(field))
