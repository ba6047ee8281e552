"""core.wire.rest_json: TF Serving's REST predict JSON <-> numpy arrays."""

from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.wire.protos import types_pb2
from core.wire.rest_json import (
    UNNAMED_INPUT,
    UNNAMED_OUTPUT,
    decode_predict_request,
    decode_predict_response,
    encode_predict_request,
    encode_predict_response,
)
from core.wire.tensors import tf_dtype

DT = types_pb2
DOCS_ROWS = """{"instances": [
    {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
    {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]}"""
DOCS_COLUMNS = """{"inputs": {"tag": ["foo", "bar"],
    "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
    "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}}"""
DOCS_SPECS = {"tag": DT.DT_STRING, "signal": DT.DT_INT32, "sensor": DT.DT_FLOAT}


def as_lists(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: (array.dtype.name, array.tolist()) for name, array in tensors.items()}


# Examples from TF Serving's "RESTful API" documentation


def test_half_plus_three_example() -> None:
    request = decode_predict_request(b'{"instances": [1.0,2.0,5.0]}', {"x": DT.DT_FLOAT})
    assert request.row_format and request.signature_name is None
    assert as_lists(request.inputs) == {"x": ("float32", [1.0, 2.0, 5.0])}
    response = encode_predict_response({"y": request.inputs["x"] * 0.5 + 3.0}, row_format=True)
    assert json.dumps(response) == '{"predictions": [3.5, 4.0, 5.5]}'


def test_docs_single_input_rows() -> None:
    strings = decode_predict_request('{"instances": ["foo", "bar", "baz"]}').inputs
    assert as_lists(strings) == {UNNAMED_INPUT: ("object", [b"foo", b"bar", b"baz"])}
    nested = decode_predict_request('{"instances": [[[1, 2]], [[3, 4]]]}', {"x": "DT_INT64"})
    assert nested.inputs["x"].shape == (2, 1, 2)
    assert nested.inputs["x"].tolist() == [[[1, 2]], [[3, 4]]]


def test_docs_named_rows_and_their_columnar_form_decode_alike() -> None:
    rows = decode_predict_request(DOCS_ROWS, DOCS_SPECS)
    columns = decode_predict_request(DOCS_COLUMNS, DOCS_SPECS)
    assert rows.row_format and not columns.row_format
    expected = {
        "tag": ("object", [b"foo", b"bar"]),
        "signal": ("int32", [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]]),
        "sensor": ("float32", [[[1.0, 2.0], [3.0, 4.0]], [[4.0, 5.0], [6.0, 8.0]]]),
    }
    assert as_lists(rows.inputs) == expected
    assert as_lists(columns.inputs) == expected


def test_docs_b64_values_decode_to_bytes() -> None:
    body = {"instances": [{"b64": "aW1hZ2UgYnl0ZXM="}, {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}]}
    inputs = decode_predict_request(body, {"image_bytes": DT.DT_STRING}).inputs
    assert inputs["image_bytes"].tolist() == [b"image bytes", b"awesome image bytes"]


def test_nan_and_infinity_tokens_both_ways() -> None:
    inputs = decode_predict_request('{"inputs": [1.0, -3.14, NaN, Infinity, -Infinity]}').inputs
    values = inputs[UNNAMED_INPUT]
    assert values.dtype == np.float32
    assert np.isnan(values[2]) and values[3] == np.inf and values[4] == -np.inf
    text = json.dumps(encode_predict_response({"y": values}, row_format=False))
    assert text == '{"outputs": [1.0, -3.14, NaN, Infinity, -Infinity]}'


def test_signature_name_is_kept() -> None:
    request = decode_predict_request('{"signature_name": "classify", "inputs": {"a": [1]}}')
    assert request.signature_name == "classify"
    assert encode_predict_request({"a": np.array([1])}, signature_name="s")["signature_name"] == "s"


# Decoding: dtypes and names


def test_without_specs_ints_are_int64_floats_float32_bools_bool() -> None:
    inputs = decode_predict_request(
        '{"inputs": {"i": [1, 2], "f": [1, 2.5], "b": [true, false], "s": ["a", {"b64": "/w=="}]}}'
    ).inputs
    assert as_lists(inputs) == {
        "i": ("int64", [1, 2]),
        "f": ("float32", [1.0, 2.5]),
        "b": ("bool", [True, False]),
        "s": ("object", [b"a", b"\xff"]),
    }


def test_specs_type_the_numbers_and_name_a_single_unnamed_input() -> None:
    for enum, dtype in [
        (DT.DT_HALF, "float16"),
        (DT.DT_BFLOAT16, "bfloat16"),
        (DT.DT_UINT8, "uint8"),
    ]:
        inputs = decode_predict_request('{"inputs": [[1, 2]]}', {"pixels": enum}).inputs
        assert list(inputs) == ["pixels"]
        assert inputs["pixels"].dtype == np.dtype(
            ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
        )
        assert inputs["pixels"].tolist() == [[1, 2]]
    doubles = decode_predict_request('{"inputs": [0.1]}', {"x": "DT_DOUBLE"}).inputs["x"]
    assert doubles.dtype == np.float64 and doubles[0] == 0.1


def test_b64_without_padding_and_empty_lists_decode() -> None:
    inputs = decode_predict_request('{"inputs": {"s": {"b64": "aGk"}, "e": [[]]}}').inputs
    assert inputs["s"].shape == () and inputs["s"].item() == b"hi"
    assert inputs["e"].shape == (1, 0) and inputs["e"].dtype == np.float32


# Decoding: errors name the field and the problem


@pytest.mark.parametrize(
    ("body", "specs", "message"),
    [
        ("", None, r"predict request body is empty"),
        ("{", None, r"predict request body is not valid JSON: .* line 1 column 2"),
        (b"\xff", None, r"not UTF-8 text"),
        ("[1, 2]", None, r"must be a JSON object, got a list"),
        ('{"instances": [1], "inputs": [1]}', None, r"both 'instances' and 'inputs'"),
        ('{"examples": [1]}', None, r"neither 'instances' \(row format\) nor 'inputs'"),
        ('{"signature_name": 3, "inputs": [1]}', None, r"'signature_name' must be a string"),
        ('{"instances": {"x": 1}}', None, r"'instances' must be a list with one item per row"),
        ('{"instances": []}', None, r"'instances' is an empty list"),
        ('{"instances": [[1, 2], [3]]}', None, r"instances\[1\]: expected a list of 2 items"),
        ('{"instances": [1, {"x": 2}]}', None, r"instances\[1\] is an object but instances\[0\]"),
        ('{"instances": [{"x": 1}, 2]}', None, r"instances\[1\]: expected an object with keys"),
        (
            '{"instances": [{"x": 1}, {"y": 2}]}',
            None,
            r'instances\[1\]: missing "x" and unknown "y"',
        ),
        (
            '{"instances": [{"x": [1, 2]}, {"x": [3]}]}',
            None,
            r'instances\[1\]\["x"\]: expected a list of 2 items like instances\[0\]\["x"\]',
        ),
        (
            '{"instances": [{"x": [1, "a"]}]}',
            None,
            r'instances\[0\]\["x"\]\[1\] is a string .* but instances\[0\]\["x"\]\[0\] is an',
        ),
        ('{"instances": [1, 2]}', {"a": 1, "b": 1}, r"plain list, but the signature has 2 inputs"),
        ('{"inputs": [1, 2]}', {"a": 1, "b": 1}, r"plain value or list, but the signature has 2"),
        ('{"inputs": {"a": [1]}}', {"a": 1, "b": 1}, r"'inputs': missing \"b\""),
        ('{"inputs": {"a": [1], "c": 2}}', {"a": 1}, r"'inputs': unknown \"c\""),
        ('{"inputs": {}}', None, r"'inputs' is an empty object"),
        ('{"inputs": [{"b64": "@@"}]}', None, r'inputs\[0\]: the "b64" value is not valid base64'),
        ('{"inputs": [{"b64": 1}]}', None, r'inputs\[0\]: expected a value or \{"b64"'),
        ('{"inputs": [null]}', None, r"inputs\[0\]: expected a number or string, got null"),
        ('{"inputs": [1.5]}', {"x": DT.DT_INT32}, r"inputs\[0\]: a float 1.5 cannot be a DT_INT32"),
        ('{"inputs": [1.0]}', {"x": DT.DT_INT64}, r"a float 1.0 cannot be a DT_INT64"),
        ('{"inputs": [[200]]}', {"x": DT.DT_INT8}, r"inputs\[0\]\[0\]: 200 is outside DT_INT8"),
        ('{"inputs": [-1]}', {"x": DT.DT_UINT32}, r"-1 is outside DT_UINT32's range"),
        ('{"inputs": [1]}', {"x": DT.DT_BOOL}, r"an integer 1 cannot be a DT_BOOL value"),
        ('{"inputs": [true]}', {"x": DT.DT_FLOAT}, r"a bool True cannot be a DT_FLOAT value"),
        ('{"inputs": ["1"]}', {"x": DT.DT_FLOAT}, r"a string '1' cannot be a DT_FLOAT value"),
        ('{"inputs": [1]}', {"x": DT.DT_STRING}, r"an integer 1 cannot be a DT_STRING value"),
        (
            '{"inputs": [16777217]}',
            {"x": DT.DT_FLOAT},
            r"inputs\[0\]: cannot convert 16777217 to DT_FLOAT without loss of precision",
        ),
        ('{"inputs": [1e39]}', {"x": DT.DT_FLOAT}, r"cannot convert 1e\+39 to DT_FLOAT within its"),
        ('{"inputs": [70000]}', {"x": DT.DT_HALF}, r"cannot convert 70000 to DT_HALF within its"),
        ('{"inputs": [1]}', {"x": DT.DT_COMPLEX64}, r'"x" is DT_COMPLEX64; .* no JSON form'),
        ('{"inputs": [1]}', {}, r"input_specs is empty"),
        ('{"inputs": [1]}', {"x": "DT_NOPE"}, r'input_specs\["x"\]: dtype \'DT_NOPE\''),
    ],
)
def test_bad_requests_raise_value_error_naming_field_and_problem(
    body: str | bytes, specs: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decode_predict_request(body, specs)


def test_lossless_large_integers_are_accepted() -> None:
    exact = decode_predict_request('{"inputs": [16777216, -33554432]}', {"x": DT.DT_FLOAT})
    assert exact.inputs["x"].tolist() == [16777216.0, -33554432.0]


# Encoding responses


def test_several_outputs_are_rows_of_objects_or_one_columnar_object() -> None:
    outputs: dict[str, Any] = {
        "scores": np.array([[0.5, 0.25], [0.125, 1.0]], dtype=np.float32),
        "classes": np.array([[1, 0], [0, 1]], dtype=np.int64),
    }
    assert encode_predict_response(outputs, row_format=True) == {
        "predictions": [
            {"scores": [0.5, 0.25], "classes": [1, 0]},
            {"scores": [0.125, 1.0], "classes": [0, 1]},
        ]
    }
    assert encode_predict_response(outputs, row_format=False) == {
        "outputs": {"scores": [[0.5, 0.25], [0.125, 1.0]], "classes": [[1, 0], [0, 1]]}
    }


def test_strings_are_text_when_utf8_and_b64_otherwise_or_when_named_bytes() -> None:
    strings = np.array([b"caf\xc3\xa9", b"\xff\xfe"], dtype=object)
    assert encode_predict_response({"text": strings}, row_format=True) == {
        "predictions": ["café", {"b64": "//4="}]
    }
    encoded = encode_predict_response({"image_bytes": strings, "n": np.arange(2)}, False)
    assert encoded["outputs"]["image_bytes"] == [{"b64": "Y2Fmw6k="}, {"b64": "//4="}]
    scalar = encode_predict_response({"s": np.array(b"x", dtype=object)}, row_format=False)
    assert scalar == {"outputs": "x"}


def test_float32_outputs_are_written_short_like_tf_serving() -> None:
    values = np.array([0.1, 1 / 3, 3.0, -0.0, 1e-30, 3e38, 123456789.0], dtype=np.float32)
    text = json.dumps(encode_predict_response({"y": values}, row_format=False))
    assert text == '{"outputs": [0.1, 0.333333343, 3.0, -0.0, 1e-30, 3e+38, 123456792.0]}'
    halves = encode_predict_response({"h": np.array([0.5, 2048], dtype=np.float16)}, False)
    assert halves == {"outputs": [0.5, 2048.0]}
    doubles = encode_predict_response({"d": np.array([0.1, 1 / 3])}, False)
    assert doubles == {"outputs": [0.1, 1 / 3]}


@settings(max_examples=50, deadline=None)
@given(values=hnp.arrays(np.float32, 64, elements=st.floats(width=32, allow_nan=False)))
def test_float32_decimals_are_at_most_nine_digits_and_read_back_exactly(values: np.ndarray) -> None:
    written = encode_predict_response({"y": values}, row_format=False)["outputs"]
    for number in written:
        mantissa = repr(number).split("e")[0].lstrip("-").replace(".", "").strip("0")
        assert len(mantissa) <= 9
    read_back = np.array(json.loads(json.dumps(written)), dtype=np.float32)
    assert read_back.tobytes() == values.tobytes()


@pytest.mark.parametrize(
    ("outputs", "row_format", "message"),
    [
        ({}, True, r"outputs is empty"),
        ({"y": np.float32(1.0)}, True, r'output "y" is a scalar \(shape \[\]\); row format'),
        (
            {"a": np.zeros(2), "b": np.zeros(3)},
            True,
            r'outputs have different batch sizes \(dim 0: "a": 2, "b": 3\)',
        ),
        ({"c": np.array([1j])}, False, r'output "c" is DT_COMPLEX128; .* no form for complex'),
        ({"t": np.array(["2020"], dtype="datetime64[D]")}, False, r'output "t": numpy dtype'),
        ({"o": np.array([1, b"x"], dtype=object)}, False, r'string tensor "o" holds int'),
    ],
)
def test_bad_outputs_raise_value_error(
    outputs: dict[str, Any], row_format: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_predict_response(outputs, row_format)


# Requests and responses round trip

JSON_DTYPES = [
    np.float16,
    ml_dtypes.bfloat16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
]


def json_arrays(min_rank: int) -> st.SearchStrategy[np.ndarray]:
    """Arrays of every dtype TF Serving's JSON carries (NaN, infinities and -0.0 included)."""
    shapes = hnp.array_shapes(min_dims=min_rank, max_dims=3, min_side=1, max_side=3)

    def of(dtype: Any) -> st.SearchStrategy[np.ndarray]:
        if dtype is ml_dtypes.bfloat16:
            return hnp.arrays(np.uint16, shapes).map(lambda bits: bits.view(ml_dtypes.bfloat16))
        return hnp.arrays(np.dtype(dtype), shapes)

    strings = shapes.flatmap(
        lambda shape: hnp.arrays(object, shape, elements=st.binary(max_size=8))
    )
    return st.one_of(*[of(dtype) for dtype in JSON_DTYPES], strings)


def assert_same_values(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype.kind == "f" or expected.dtype == ml_dtypes.bfloat16:
        with np.errstate(invalid="ignore"):  # signalling NaNs
            wide_actual, wide_expected = actual.astype(np.float64), expected.astype(np.float64)
        assert np.array_equal(wide_actual, wide_expected, equal_nan=True)
        numbers = ~np.isnan(wide_expected)  # JSON's NaN has no sign; -0.0 keeps its own
        assert np.array_equal(np.signbit(wide_actual[numbers]), np.signbit(wide_expected[numbers]))
    else:
        assert actual.tolist() == expected.tolist()


@settings(max_examples=150, deadline=None)
@given(
    tensors=st.dictionaries(st.sampled_from(["a", "b_bytes", "c"]), json_arrays(1), min_size=1),
    row_format=st.booleans(),
)
def test_responses_round_trip_through_json_text(
    tensors: dict[str, np.ndarray], row_format: bool
) -> None:
    if row_format:  # every output shares dim 0 in row format
        batch = min(array.shape[0] for array in tensors.values())
        tensors = {name: array[:batch] for name, array in tensors.items()}
    specs = {name: tf_dtype(array.dtype) for name, array in tensors.items()}
    text = json.dumps(encode_predict_response(tensors, row_format))
    decoded = decode_predict_response(text, specs)
    assert list(decoded) == list(tensors)
    for name, array in tensors.items():
        assert_same_values(decoded[name], array)


@settings(max_examples=100, deadline=None)
@given(tensors=st.dictionaries(st.sampled_from(["x", "y"]), json_arrays(0), min_size=1))
def test_columnar_requests_round_trip_through_json_text(tensors: dict[str, np.ndarray]) -> None:
    specs = {name: tf_dtype(array.dtype) for name, array in tensors.items()}
    text = json.dumps(encode_predict_request(tensors, row_format=False))
    request = decode_predict_request(text, specs)
    assert not request.row_format
    for name, array in tensors.items():
        assert_same_values(request.inputs[name], array)


def test_row_requests_round_trip_named_and_unnamed() -> None:
    named = {"ids": np.array([[1, 2], [3, 4]], dtype=np.int32), "w": np.array([0.5, 2.0])}
    body = encode_predict_request(named)
    assert body == {"instances": [{"ids": [1, 2], "w": 0.5}, {"ids": [3, 4], "w": 2.0}]}
    decoded = decode_predict_request(json.dumps(body), {"ids": "int32", "w": "float64"})
    assert as_lists(decoded.inputs) == as_lists(named)
    unnamed = encode_predict_request({UNNAMED_INPUT: np.array([1.5], dtype=np.float32)})
    assert unnamed == {"instances": [1.5]}


def test_response_names_come_from_specs_or_the_placeholder() -> None:
    assert list(decode_predict_response('{"predictions": [1.5]}')) == [UNNAMED_OUTPUT]
    typed = decode_predict_response('{"predictions": [[1]]}', {"probs": DT.DT_DOUBLE})
    assert as_lists(typed) == {"probs": ("float64", [[1.0]])}
    empty = decode_predict_response({"predictions": []}, {"y": DT.DT_INT32})
    assert empty["y"].shape == (0,) and empty["y"].dtype == np.int32
    with pytest.raises(ValueError, match="predict response is an error: Servable not found"):
        decode_predict_response('{"error": "Servable not found for request: Latest(foo)"}')
    with pytest.raises(ValueError, match="neither 'predictions' nor 'outputs'"):
        decode_predict_response("{}")
