"""TF Serving's REST predict JSON <-> numpy arrays.

Row format sends ``{"instances": [...]}`` (one item per row; items are values, or objects with
one key per input) and answers ``{"predictions": [...]}``; columnar format sends
``{"inputs": value-or-object}`` and answers ``{"outputs": ...}``. Binary strings travel as
``{"b64": "..."}``; NaN, Infinity and -Infinity are bare tokens, which TF Serving reads and
writes and Python's json module does too (keep ``allow_nan`` on when dumping these dicts).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.wire.dtypes import dtype_name, numpy_dtype, resolve_dtype, tf_dtype
from core.wire.nested import Locate, array_from_leaves, flatten_nested
from core.wire.protos import types_pb2

__all__ = [
    "UNNAMED_INPUT",
    "UNNAMED_OUTPUT",
    "RestPredictRequest",
    "decode_predict_request",
    "decode_predict_response",
    "encode_predict_request",
    "encode_predict_response",
]

UNNAMED_INPUT = "inputs"
"""Key for a request's unnamed input when no single-input signature names it."""
UNNAMED_OUTPUT = "outputs"
"""Key for a response's unnamed output when no single output spec names it."""

_BYTES_SUFFIX = "_bytes"  # TF Serving writes string outputs with this alias suffix as base64
_COMPLEX = (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128)
_FLOAT32_WRITTEN = (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16)


@dataclass(frozen=True)
class RestPredictRequest:
    """A decoded REST predict request: input tensors by alias, its format and signature."""

    inputs: dict[str, np.ndarray]
    row_format: bool
    signature_name: str | None


def decode_predict_request(
    body: bytes | str | Mapping[str, Any], input_specs: Mapping[str, Any] | None = None
) -> RestPredictRequest:
    """The input tensors of a REST predict request ("instances" rows or "inputs" columns).

    input_specs maps the signature's input aliases to TF dtypes; it types JSON numbers and names
    an unnamed input. Without it ints become int64 and floats float32.
    """
    document = _load_object(body, "predict request")
    specs = _normalize_specs(input_specs, "input_specs")
    signature_name = document.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise ValueError(f"'signature_name' must be a string, got {_json_type(signature_name)}")
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows and has_columns:
        raise ValueError("request has both 'instances' and 'inputs'; send exactly one of them")
    if not has_rows and not has_columns:
        raise ValueError(
            "request has neither 'instances' (row format) nor 'inputs' (columnar format)"
        )
    sole_name = next(iter(specs)) if specs and len(specs) == 1 else UNNAMED_INPUT
    if has_rows:
        inputs = _decode_rows(document["instances"], "instances", specs, True, sole_name)
    else:
        inputs = _decode_columns(document["inputs"], "inputs", specs, True, sole_name)
    return RestPredictRequest(inputs, has_rows, signature_name)


def decode_predict_response(
    body: bytes | str | Mapping[str, Any], output_specs: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The output tensors of a REST predict response ("predictions" or "outputs").

    output_specs maps output aliases to TF dtypes (ints -> int64, floats -> float32 without);
    a single unnamed output takes the sole spec's alias, else UNNAMED_OUTPUT.
    """
    document = _load_object(body, "predict response")
    if "error" in document:
        raise ValueError(f"predict response is an error: {document['error']}")
    specs = _normalize_specs(output_specs, "output_specs")
    sole_name = next(iter(specs)) if specs and len(specs) == 1 else UNNAMED_OUTPUT
    if "predictions" in document:
        return _decode_rows(document["predictions"], "predictions", specs, False, sole_name)
    if "outputs" in document:
        return _decode_columns(document["outputs"], "outputs", specs, False, sole_name)
    raise ValueError("predict response has neither 'predictions' nor 'outputs'")


def encode_predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's JSON for output tensors: {"predictions": rows} or {"outputs": columns}."""
    if not outputs:
        raise ValueError("outputs is empty; a predict response has at least one output tensor")
    named = len(outputs) > 1  # TF Serving leaves a single output unnamed
    if row_format:
        return {"predictions": _encode_rows(outputs, named, "output")}
    return {"outputs": _encode_columns(outputs, named, "output")}


def encode_predict_request(
    inputs: Mapping[str, np.ndarray], row_format: bool = True, signature_name: str | None = None
) -> dict[str, Any]:
    """TF Serving's JSON for input tensors: {"instances": rows} or {"inputs": columns}.

    Inputs are named, except a single input keyed UNNAMED_INPUT, which is sent unnamed.
    """
    if not inputs:
        raise ValueError("inputs is empty; a predict request needs at least one input tensor")
    named = not (len(inputs) == 1 and UNNAMED_INPUT in inputs)
    document: dict[str, Any] = {}
    if signature_name is not None:
        document["signature_name"] = signature_name
    if row_format:
        document["instances"] = _encode_rows(inputs, named, "input")
    else:
        document["inputs"] = _encode_columns(inputs, named, "input")
    return document


# Decoding


def _load_object(body: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The top-level JSON object of body (JSON text, UTF-8 bytes or an already parsed mapping)."""
    if isinstance(body, Mapping):
        document: Any = body
    else:
        if isinstance(body, bytes | bytearray | memoryview):
            try:
                text = bytes(body).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{what} body is not UTF-8 text (byte {error.start})") from None
        elif isinstance(body, str):
            text = body
        else:
            raise ValueError(
                f"{what} body must be JSON text, bytes or a mapping, got {type(body).__name__}"
            )
        if not text.strip():
            raise ValueError(f"{what} body is empty; expected a JSON object")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{what} body is not valid JSON: {error.msg} at line {error.lineno} "
                f"column {error.colno}"
            ) from None
        except RecursionError:
            raise ValueError(f"{what} body nests lists too deeply") from None
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} body must be a JSON object, got {_json_type(document)}")
    return document


def _normalize_specs(specs: Mapping[str, Any] | None, what: str) -> dict[str, int] | None:
    if specs is None:
        return None
    if not specs:
        raise ValueError(f"{what} is empty; a signature has at least one tensor")
    resolved: dict[str, int] = {}
    for name, dtype in specs.items():
        try:
            resolved[str(name)] = resolve_dtype(dtype)
        except ValueError as error:
            raise ValueError(f"{what}[{_quote(name)}]: {error}") from None
    return resolved


def _target(specs: dict[str, int] | None, name: str) -> np.dtype[Any] | None:
    """The numpy dtype for the tensor called name, or None to guess from the JSON."""
    if not specs or name not in specs:
        return None
    if specs[name] in _COMPLEX:
        raise ValueError(
            f"tensor {_quote(name)} is {dtype_name(specs[name])}; TF Serving's REST API has no "
            "JSON form for complex numbers, so use gRPC"
        )
    return numpy_dtype(specs[name])


def _decode_rows(
    rows: Any, field: str, specs: dict[str, int] | None, strict: bool, sole_name: str
) -> dict[str, np.ndarray]:
    """Tensors from a row-format list; strict (requests) checks the keys against specs."""
    if not isinstance(rows, list):
        raise ValueError(f"'{field}' must be a list with one item per row, got {_json_type(rows)}")
    if not rows and strict:
        raise ValueError(f"'{field}' is an empty list; send at least one row")
    if not rows or not _is_named(rows[0]):
        if strict and specs and len(specs) > 1:
            raise ValueError(
                f"'{field}' is a plain list, but the signature has {len(specs)} inputs "
                f"({_names(specs)}); send a list of objects with one key per input"
            )
        for index, row in enumerate(rows):
            if _is_named(row):
                raise ValueError(
                    f"{field}[{index}] is an object but {field}[0] is not; rows are either all "
                    "values or all objects"
                )
        return {sole_name: _tensor(rows, _target(specs, sole_name), _locator(field))}
    names = list(specs) if strict and specs else list(rows[0])
    if not names:
        raise ValueError(f"{field}[0] is an empty object; name at least one tensor")
    expected = set(names)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, row in enumerate(rows):
        if not _is_named(row):
            raise ValueError(
                f"{field}[{index}]: expected an object with keys {_names(names)} like "
                f"{field}[0], got {_json_type(row)}"
            )
        if row.keys() != expected:
            raise ValueError(
                f"{field}[{index}]: {_key_difference(row.keys(), names)}; every row needs "
                f"exactly the keys {_names(names)}"
            )
        for name in names:
            columns[name].append(row[name])
    return {
        name: _tensor(column, _target(specs, name), _row_locator(field, name))
        for name, column in columns.items()
    }


def _decode_columns(
    value: Any, field: str, specs: dict[str, int] | None, strict: bool, sole_name: str
) -> dict[str, np.ndarray]:
    """Tensors from a columnar value; strict (requests) checks the names against specs."""
    if not _is_named(value):
        if strict and specs and len(specs) > 1:
            raise ValueError(
                f"'{field}' is a plain value or list, but the signature has {len(specs)} inputs "
                f"({_names(specs)}); send an object with one key per input"
            )
        return {sole_name: _tensor(value, _target(specs, sole_name), _locator(field))}
    if not value:
        raise ValueError(f"'{field}' is an empty object; name at least one tensor")
    if strict and specs and value.keys() != set(specs):
        raise ValueError(
            f"'{field}': {_key_difference(value.keys(), list(specs))}; the signature's inputs "
            f"are {_names(specs)}"
        )
    return {
        name: _tensor(item, _target(specs, name), _locator(f"{field}[{_quote(name)}]"))
        for name, item in value.items()
    }


def _tensor(value: Any, target: np.dtype[Any] | None, locate: Locate) -> np.ndarray:
    """One tensor from a JSON value: nested lists of numbers, bools, strings or b64 objects."""
    shape, leaves = flatten_nested(value, locate)
    if any(issubclass(leaf_type, Mapping) for leaf_type in set(map(type, leaves))):
        leaves = [
            _b64_bytes(leaf, locate, shape, index) if isinstance(leaf, Mapping) else leaf
            for index, leaf in enumerate(leaves)
        ]
    return array_from_leaves(
        shape, leaves, target, locate=locate, default_float=np.float32, exact=True
    )


def _b64_bytes(
    leaf: Mapping[str, Any], locate: Locate, shape: tuple[int, ...], index: int
) -> bytes:
    place = locate(tuple(int(i) for i in np.unravel_index(index, shape)) if shape else ())
    if not _is_b64(leaf):
        raise ValueError(
            f'{place}: expected a value or {{"b64": "..."}}, got an object with keys '
            f"{_names(list(leaf))}"
        )
    text = leaf["b64"]
    try:
        # TF Serving accepts base64 with or without its trailing "=" padding.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f'{place}: the "b64" value is not valid base64') from None


def _is_b64(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    """True for an object of named tensors, as opposed to a value or a {"b64": ...} string."""
    return isinstance(value, Mapping) and not _is_b64(value)


def _locator(prefix: str) -> Locate:
    return lambda path: prefix + "".join(f"[{index}]" for index in path)


def _row_locator(field: str, name: str) -> Locate:
    def locate(path: tuple[int, ...]) -> str:
        if not path:
            return f"{field}[*][{_quote(name)}]"
        rest = "".join(f"[{index}]" for index in path[1:])
        return f"{field}[{path[0]}][{_quote(name)}]{rest}"

    return locate


def _quote(name: object) -> str:
    return json.dumps(str(name))


def _names(names: Any) -> str:
    return ", ".join(_quote(name) for name in names)


def _key_difference(keys: Any, expected: list[str]) -> str:
    missing = [name for name in expected if name not in keys]
    unknown = [name for name in keys if name not in expected]
    parts = [f"missing {_names(missing)}"] if missing else []
    parts += [f"unknown {_names(unknown)}"] if unknown else []
    return " and ".join(parts)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, Mapping) else "a list"


# Encoding


def _encode_rows(tensors: Mapping[str, Any], named: bool, role: str) -> Any:
    """Row-format JSON: one item per index of dim 0, as objects when named."""
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    for name, array in arrays.items():
        if array.ndim == 0:
            raise ValueError(
                f"{role} {_quote(name)} is a scalar (shape []); row format needs a batch "
                "dimension, so use the columnar format"
            )
    batch_sizes = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(batch_sizes.values())) > 1:
        sizes = ", ".join(f"{_quote(name)}: {size}" for name, size in batch_sizes.items())
        raise ValueError(
            f"{role}s have different batch sizes (dim 0: {sizes}); row format needs one "
            "batch size, so use the columnar format"
        )
    columns = {name: _json_values(array, name, role) for name, array in arrays.items()}
    if not named:
        return next(iter(columns.values()))
    batch_size = next(iter(batch_sizes.values()))
    return [{name: column[row] for name, column in columns.items()} for row in range(batch_size)]


def _encode_columns(tensors: Mapping[str, Any], named: bool, role: str) -> Any:
    columns = {name: _json_values(np.asarray(value), name, role) for name, value in tensors.items()}
    return columns if named else next(iter(columns.values()))


def _json_values(array: np.ndarray, name: str, role: str) -> Any:
    """array as nested JSON-ready lists (a bare value for a scalar)."""
    if array.dtype.kind in "OSU":
        return _json_strings(array, as_b64=name.endswith(_BYTES_SUFFIX), name=name)
    try:
        enum = tf_dtype(array.dtype)
    except ValueError as error:
        raise ValueError(f"{role} {_quote(name)}: {error}") from None
    if enum in _COMPLEX:
        raise ValueError(
            f"{role} {_quote(name)} is {dtype_name(enum)}; TF Serving's JSON has no form for "
            "complex numbers, so use gRPC"
        )
    if enum in _FLOAT32_WRITTEN:
        with np.errstate(invalid="ignore"):  # signalling NaNs are still NaN
            return _short_decimals(array.astype(np.float32)).tolist()
    return array.tolist()


def _json_strings(array: np.ndarray, *, as_b64: bool, name: str) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return {"b64": base64.b64encode(value.encode()).decode()} if as_b64 else str(value)
        if not isinstance(value, bytes | bytearray):
            raise ValueError(
                f"string tensor {_quote(name)} holds {type(value).__name__} {value!r:.40}; "
                "expected bytes or str"
            )
        if not as_b64:
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                pass  # not text: fall through to base64, as TF Serving's "_bytes" outputs
        return {"b64": base64.b64encode(value).decode("ascii")}

    if array.ndim == 0:
        return convert(array.item())
    return np.frompyfunc(convert, 1, 1)(array).tolist()


def _short_decimals(values: np.ndarray) -> np.ndarray:
    """float32 values as float64s of their short decimals, so JSON shows 0.1, not 0.100000001.

    Like TF Serving: 6 significant digits when they read back as the same float32, else 9
    (which always do). Vectorised, because per-element formatting costs more than json.dumps.
    """
    wide = values.astype(np.float64)
    magnitude = np.abs(wide)
    # In this band the powers of ten used below are exact doubles, so the rounding is exact.
    regular = np.isfinite(wide) & (magnitude >= 1e-13) & (magnitude < 1e13)
    if regular.any():
        subset, originals = wide[regular], values[regular]
        exponent = np.floor(np.log10(np.abs(subset)))
        six = _round_significant(subset, exponent, 6)
        nine = _round_significant(subset, exponent, 9)
        chosen = np.where(six.astype(np.float32) == originals, six, nine)
        wide[regular] = np.where(chosen.astype(np.float32) == originals, chosen, subset)
    extreme = np.isfinite(wide) & ~regular & (magnitude > 0)
    if extreme.any():
        wide[extreme] = [float(str(value)) for value in values[extreme]]
    return wide


def _round_significant(values: np.ndarray, exponent: np.ndarray, digits: int) -> np.ndarray:
    power = digits - 1 - exponent
    scale = 10.0 ** np.abs(power)
    return np.where(power >= 0, np.round(values * scale) / scale, np.round(values / scale) * scale)
