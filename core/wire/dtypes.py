"""TensorFlow's DataType enums <-> numpy dtypes and dtype names, without TF.

One table of every dtype TF Serving carries (its enum, TF's names, numpy dtype, value kind and
TensorProto ``*_val`` field), shared by the TensorProto codec (core.wire.tensors) and the
nested-list converter (core.wire.nested). Names follow ``tf.as_dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from core.wire.protos import types_pb2

__all__ = [
    "dtype_name",
    "numpy_dtype",
    "resolve_dtype",
    "supported_dtype_names",
    "tf_dtype",
]


@dataclass(frozen=True)
class _DtypeInfo:
    """One TensorFlow dtype: its enum, names, numpy dtype, value kind and TensorProto field."""

    enum: int
    name: str  # TF's enum name, e.g. "DT_FLOAT"
    python_name: str  # tf.DType.name, e.g. "float32"
    numpy: np.dtype[Any]
    kind: str  # "bool", "int", "float", "complex" or "string"
    val_field: str  # the typed repeated field used when tensor_content is empty


_TABLE: tuple[_DtypeInfo, ...] = tuple(
    _DtypeInfo(getattr(types_pb2, name), name, python_name, np.dtype(numpy_type), kind, field)
    for name, python_name, numpy_type, kind, field in (
        ("DT_HALF", "float16", np.float16, "float", "half_val"),
        ("DT_BFLOAT16", "bfloat16", ml_dtypes.bfloat16, "float", "half_val"),
        ("DT_FLOAT", "float32", np.float32, "float", "float_val"),
        ("DT_DOUBLE", "float64", np.float64, "float", "double_val"),
        ("DT_INT8", "int8", np.int8, "int", "int_val"),
        ("DT_INT16", "int16", np.int16, "int", "int_val"),
        ("DT_INT32", "int32", np.int32, "int", "int_val"),
        ("DT_INT64", "int64", np.int64, "int", "int64_val"),
        ("DT_UINT8", "uint8", np.uint8, "int", "int_val"),
        ("DT_UINT16", "uint16", np.uint16, "int", "int_val"),
        ("DT_UINT32", "uint32", np.uint32, "int", "uint32_val"),
        ("DT_UINT64", "uint64", np.uint64, "int", "uint64_val"),
        ("DT_BOOL", "bool", np.bool_, "bool", "bool_val"),
        ("DT_COMPLEX64", "complex64", np.complex64, "complex", "scomplex_val"),
        ("DT_COMPLEX128", "complex128", np.complex128, "complex", "dcomplex_val"),
        ("DT_STRING", "string", object, "string", "string_val"),
    )
)

_BY_ENUM: dict[int, _DtypeInfo] = {info.enum: info for info in _TABLE}
_ENUM_BY_NUMPY: dict[np.dtype[Any], int] = {
    info.numpy: info.enum for info in _TABLE if info.enum != types_pb2.DT_STRING
}
# Every spelling TF's as_dtype accepts for these types, plus the enum names.
_ENUM_BY_NAME: dict[str, int] = {
    **{info.name.lower(): info.enum for info in _TABLE},
    **{info.python_name: info.enum for info in _TABLE},
    "half": types_pb2.DT_HALF,
    "float": types_pb2.DT_FLOAT,
    "double": types_pb2.DT_DOUBLE,
    "str": types_pb2.DT_STRING,
    "bytes": types_pb2.DT_STRING,
    "object": types_pb2.DT_STRING,
}
# TF's as_dtype maps these Python types differently from numpy (float -> float32).
_ENUM_BY_PYTHON_TYPE: dict[type, int] = {
    float: types_pb2.DT_FLOAT,
    bool: types_pb2.DT_BOOL,
    str: types_pb2.DT_STRING,
    bytes: types_pb2.DT_STRING,
    object: types_pb2.DT_STRING,
}


def supported_dtype_names() -> list[str]:
    """Names of the TensorFlow dtypes this codec reads and writes, e.g. ["DT_HALF", ...]."""
    return [info.name for info in _TABLE]


def _supported_text() -> str:
    return ", ".join(supported_dtype_names())


def _info(tf_dtype_enum: int, what: str = "dtype") -> _DtypeInfo:
    """The table entry for a TF DataType enum, or a ValueError naming it."""
    info = _BY_ENUM.get(tf_dtype_enum)
    if info is None:
        known = types_pb2.DataType.Name(tf_dtype_enum) if _is_data_type(tf_dtype_enum) else None
        label = f"{tf_dtype_enum} ({known})" if known else repr(tf_dtype_enum)
        raise ValueError(
            f"{what}: TensorFlow dtype {label} is not supported; expected one of "
            f"{_supported_text()}"
        )
    return info


def _is_data_type(value: int) -> bool:
    return value in types_pb2.DataType.values()


def numpy_dtype(tf_dtype: int) -> np.dtype[Any]:
    """The numpy dtype that holds a TF DataType (DT_STRING -> object, DT_BFLOAT16 -> ml_dtypes)."""
    return _info(tf_dtype).numpy


def dtype_name(tf_dtype: int) -> str:
    """TensorFlow's name for a DataType enum value, e.g. 1 -> "DT_FLOAT"."""
    if isinstance(tf_dtype, bool) or not isinstance(tf_dtype, int | np.integer):
        raise ValueError(f"dtype {tf_dtype!r}: expected a TensorFlow DataType enum number")
    if not _is_data_type(int(tf_dtype)):
        raise ValueError(f"dtype {tf_dtype}: not a TensorFlow DataType enum number")
    return str(types_pb2.DataType.Name(int(tf_dtype)))


def tf_dtype(np_dtype: Any) -> int:
    """The TF DataType enum for a numpy dtype (object, bytes and str dtypes -> DT_STRING)."""
    try:
        dtype = np.dtype(np_dtype)
    except TypeError as error:
        raise ValueError(f"dtype {np_dtype!r} is not a numpy dtype: {error}") from None
    if dtype.kind in "OSU":
        return int(types_pb2.DT_STRING)
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    enum = _ENUM_BY_NUMPY.get(dtype)
    if enum is None:
        raise ValueError(
            f"numpy dtype {dtype} has no TensorFlow Serving equivalent; expected one of "
            f"{', '.join(info.python_name for info in _TABLE)}"
        )
    return enum


def resolve_dtype(dtype: Any) -> int:
    """The TF DataType enum named by dtype: an enum number, "DT_FLOAT", "float32", a numpy dtype."""
    as_enum = getattr(dtype, "as_datatype_enum", None)  # a tf.DType, without importing TF
    if isinstance(as_enum, int):
        dtype = as_enum
    if isinstance(dtype, bool):
        raise ValueError(f"dtype {dtype!r}: expected a dtype name, enum number or numpy dtype")
    if isinstance(dtype, int | np.integer):
        return _info(int(dtype)).enum
    if isinstance(dtype, str):
        enum = _ENUM_BY_NAME.get(dtype.strip().lower())
        if enum is not None:
            return enum
        if dtype.strip().upper() in types_pb2.DataType.keys():
            return _info(types_pb2.DataType.Value(dtype.strip().upper())).enum
        try:
            return tf_dtype(np.dtype(dtype))
        except TypeError:
            raise ValueError(
                f"dtype {dtype!r} is not a known dtype name; expected one of "
                f"{_supported_text()} or a numpy name such as 'float32'"
            ) from None
    if isinstance(dtype, type) and dtype in _ENUM_BY_PYTHON_TYPE:
        return _ENUM_BY_PYTHON_TYPE[dtype]
    return tf_dtype(dtype)
