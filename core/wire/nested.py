"""Nested Python values (lists, JSON) -> numpy arrays, with errors that name the bad item.

``flatten_nested`` checks that a nested list is dense and returns its shape and leaves in C
order; ``array_from_leaves`` turns those leaves into an array of one dtype, given or guessed.
core.wire.tensors builds arrays from Python lists this way and core.wire.rest_json builds its
arrays from JSON the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np

from core.wire.dtypes import _BY_ENUM, _ENUM_BY_NUMPY, _DtypeInfo, tf_dtype

__all__ = ["Locate", "array_from_leaves", "flatten_nested"]


Locate = Callable[[tuple[int, ...]], str]
"""Names the item at an index path for error messages, e.g. (1, 2) -> "values[1][2]"."""

_KIND_BY_TYPE: dict[type, str] = {bool: "bool", int: "int", float: "float", complex: "complex"}
_KIND_BY_TYPE.update({str: "string", bytes: "string", bytearray: "string"})
_KIND_BY_NUMPY_KIND = {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex"}
_KIND_BY_NUMPY_KIND.update({"U": "string", "S": "string"})
_NUMERIC_KINDS = ("int", "float", "complex")  # each converts losslessly to the next
_NOUNS = {"bool": "a bool", "int": "an integer", "float": "a float", "string": "a string"}


def _is_nested(value: Any) -> bool:
    return isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.ndim > 0)


def _unravel(index: int, dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(index, tuple(dims))) if dims else ()


def _describe(value: Any) -> str:
    if _is_nested(value):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if value is None:
        return "null (None)"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{_NOUNS.get(_kind_of_type(type(value)), f'a {type(value).__name__}')} {text}"


def flatten_nested(values: Any, locate: Locate) -> tuple[tuple[int, ...], list[Any]]:
    """The shape of a dense nested list and its leaves in C order; ValueError if ragged."""
    shape: list[int] = []
    probe = values
    while _is_nested(probe):
        shape.append(len(probe))
        if not len(probe):
            break
        probe = probe[0]
    level: list[Any] = [values]
    for depth, size in enumerate(shape):
        below: list[Any] = []
        for index, item in enumerate(level):
            if not _is_nested(item) or len(item) != size:
                raise ValueError(
                    f"{locate(_unravel(index, shape[:depth]))}: expected a list of {size} items "
                    f"like {locate((0,) * depth)}, got {_describe(item)}; nested lists must "
                    "be dense, not ragged"
                )
            below.extend(item)
        level = below
    return tuple(shape), level


def _kind_of_type(value_type: type) -> str:
    """The kind ("bool", "int", "float", "complex", "string", "list", ...) of a leaf's type."""
    kind = _KIND_BY_TYPE.get(value_type)
    if kind is not None:
        return kind
    if issubclass(value_type, np.generic):
        dtype = np.dtype(value_type)
        if dtype in _ENUM_BY_NUMPY:  # covers ml_dtypes.bfloat16, whose numpy kind is "V"
            return _BY_ENUM[_ENUM_BY_NUMPY[dtype]].kind
        return _KIND_BY_NUMPY_KIND.get(dtype.kind, "unsupported")
    for base in (int, float, str, bytes):  # subclasses such as IntEnum
        if issubclass(value_type, base):
            return _KIND_BY_TYPE[base]
    return "list" if issubclass(value_type, list | tuple | np.ndarray) else "unsupported"


def _combined_kind(kinds: set[str]) -> str | None:
    """The one kind a tensor of these leaf kinds has, or None for an invalid mix."""
    if not kinds:
        return "empty"
    if len(kinds) == 1 and kinds <= {"bool", "string"}:
        return next(iter(kinds))
    if kinds <= set(_NUMERIC_KINDS):
        return max(kinds, key=_NUMERIC_KINDS.index)
    return None


def array_from_leaves(
    shape: tuple[int, ...],
    leaves: list[Any],
    target: np.dtype[Any] | None,
    *,
    locate: Locate,
    default_float: Any = np.float32,
    exact: bool = False,
) -> np.ndarray:
    """An array of shape from flat leaves of one kind, as target dtype or a guessed one.

    Without target: bools -> bool, ints -> int64 (uint64 past int64), floats -> default_float,
    strings -> object array of bytes. exact=True rejects numbers the target cannot hold
    exactly, as TF Serving's JSON decoder does.
    """
    leaf_types = set(map(type, leaves))
    if np.ndarray in leaf_types:  # 0-d arrays are scalars; deeper ones are reported below
        leaves = [v[()] if type(v) is np.ndarray and v.ndim == 0 else v for v in leaves]
        leaf_types = set(map(type, leaves))
    kind_by_type = {leaf_type: _kind_of_type(leaf_type) for leaf_type in leaf_types}
    kinds = set(kind_by_type.values())

    def first_where(predicate: Callable[[Any], bool]) -> tuple[str, Any]:
        index = next(i for i, leaf in enumerate(leaves) if predicate(leaf))
        return locate(_unravel(index, shape)), leaves[index]

    for bad_kind, expected in (("list", "a single value"), ("unsupported", "a number or string")):
        if bad_kind in kinds:
            place, leaf = first_where(lambda v: kind_by_type[type(v)] == bad_kind)  # noqa: B023
            raise ValueError(f"{place}: expected {expected}, got {_describe(leaf)}")
    kind = _combined_kind(kinds)
    if kind is None:
        first_kind = kind_by_type[type(leaves[0])]
        place, leaf = first_where(
            lambda v: _combined_kind({first_kind, kind_by_type[type(v)]}) is None
        )
        raise ValueError(
            f"{place} is {_describe(leaf)} but {locate(_unravel(0, shape))} is "
            f"{_describe(leaves[0])}; a tensor holds one type of value, not a mix"
        )
    if target is None:
        if kind == "int":
            return _ints(shape, leaves, locate)
        guesses = {"bool": np.bool_, "complex": np.complex128, "string": object}
        target = np.dtype(guesses.get(kind, default_float))
    if kind == "empty":
        return np.empty(shape, dtype=target)
    info = _BY_ENUM[tf_dtype(target)]
    numeric_widening = (
        kind in _NUMERIC_KINDS
        and info.kind in _NUMERIC_KINDS
        and _NUMERIC_KINDS.index(kind) <= _NUMERIC_KINDS.index(info.kind)
    )
    if kind != info.kind and not numeric_widening:
        place, leaf = first_where(lambda v: kind_by_type[type(v)] == kind)
        raise ValueError(f"{place}: {_describe(leaf)} cannot be a {info.name} value")
    if kind == "string":
        return _strings(shape, leaves, locate)
    if info.kind == "int":
        return _fit_ints(_ints(shape, leaves, locate), info, locate)
    if info.kind in ("bool", "complex"):
        return np.array(leaves, dtype=target).reshape(shape)
    return _floats(shape, leaves, info, locate, exact=exact)


def _strings(shape: tuple[int, ...], leaves: list[Any], locate: Locate) -> np.ndarray:
    strings = np.empty(len(leaves), dtype=object)
    try:
        strings[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in leaves]
    except UnicodeEncodeError:
        index = next(i for i, v in enumerate(leaves) if isinstance(v, str) and not v.isascii())
        raise ValueError(
            f"{locate(_unravel(index, shape))}: string is not valid Unicode (it has a lone "
            "surrogate); send binary data as bytes or base64"
        ) from None
    return strings.reshape(shape)


def _ints(shape: tuple[int, ...], leaves: list[Any], locate: Locate) -> np.ndarray:
    for dtype in (np.int64, np.uint64):
        try:
            return np.array(leaves, dtype=dtype).reshape(shape)
        except OverflowError:
            continue
    index = next((i for i, v in enumerate(leaves) if not -(2**63) <= int(v) < 2**64), 0)
    raise ValueError(
        f"{locate(_unravel(index, shape))}: {leaves[index]} does not fit a 64-bit integer "
        "tensor together with the other values"
    )


def _fit_ints(values: np.ndarray, info: _DtypeInfo, locate: Locate) -> np.ndarray:
    limits = np.iinfo(info.numpy)
    if values.size and (int(values.min()) < limits.min or int(values.max()) > limits.max):
        flat = values.ravel().tolist()
        index = next(i for i, v in enumerate(flat) if not limits.min <= v <= limits.max)
        raise ValueError(
            f"{locate(_unravel(index, values.shape))}: {flat[index]} is outside {info.name}'s "
            f"range [{limits.min}, {limits.max}]"
        )
    return values.astype(info.numpy)


def _floats(
    shape: tuple[int, ...], leaves: list[Any], info: _DtypeInfo, locate: Locate, *, exact: bool
) -> np.ndarray:
    try:
        wide = np.array(leaves, dtype=np.float64)
    except OverflowError:  # a Python int beyond float64's range
        index = next(i for i, v in enumerate(leaves) if isinstance(v, int) and abs(v) > 2**1023)
        raise ValueError(
            f"{locate(_unravel(index, shape))}: {leaves[index]} is too large for {info.name}"
        ) from None
    if exact:
        # Past 2**(mantissa bits + 1) integers and floats may not survive: check just those.
        limits = ml_dtypes.finfo(info.numpy)
        for index in np.flatnonzero(np.abs(wide) > 2.0 ** (limits.nmant + 1)).tolist():
            leaf = leaves[index]
            with np.errstate(over="ignore"):
                converted = float(np.asarray(float(leaf)).astype(info.numpy))
            if math.isinf(converted) and not math.isinf(float(leaf)):
                problem = f"within its range (max {float(limits.max):g})"
            elif converted != leaf and not isinstance(leaf, float | np.floating):
                problem = "without loss of precision"
            else:
                continue
            raise ValueError(
                f"{locate(_unravel(index, shape))}: cannot convert {leaf} to {info.name} {problem}"
            )
    with np.errstate(over="ignore"):
        return wide.astype(info.numpy).reshape(shape)
