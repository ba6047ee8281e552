"""core.wire.tensors: numpy <-> TensorProto for every dtype TF Serving carries, without TF."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.wire.protos import tensor_pb2, types_pb2
from core.wire.tensors import (
    dtype_name,
    make_ndarray,
    make_tensor_proto,
    numpy_dtype,
    resolve_dtype,
    supported_dtype_names,
    tf_dtype,
)

NUMERIC_DTYPES: dict[int, Any] = {
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_BFLOAT16: ml_dtypes.bfloat16,
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_COMPLEX64: np.complex64,
    types_pb2.DT_COMPLEX128: np.complex128,
}
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


def numeric_arrays(dtype: Any) -> st.SearchStrategy[np.ndarray]:
    """Arrays of dtype with every bit pattern (NaNs, infinities, subnormals) allowed."""
    if dtype is ml_dtypes.bfloat16:  # hypothesis has no bfloat16: draw the 16-bit patterns
        return hnp.arrays(np.uint16, SHAPES).map(lambda bits: bits.view(ml_dtypes.bfloat16))
    return hnp.arrays(np.dtype(dtype), SHAPES)


def string_arrays() -> st.SearchStrategy[np.ndarray]:
    """Object arrays of arbitrary bytes (NULs and invalid UTF-8 included)."""

    def build(shape: tuple[int, ...], items: list[bytes]) -> np.ndarray:
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)

    return SHAPES.flatmap(
        lambda shape: st.lists(
            st.binary(max_size=12), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
        ).map(lambda items: build(shape, items))
    )


def assert_identical(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same dtype, shape and bits (so NaN payloads and -0.0 count)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype == object:
        assert actual.tolist() == expected.tolist()
        assert all(type(item) is bytes for item in actual.ravel())
    else:
        assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()


def with_typed_values(array: np.ndarray) -> Any:
    """A TensorProto holding array in its typed *_val field, as TF's own writer does for scalars."""
    proto = tensor_pb2.TensorProto(dtype=tf_dtype(array.dtype))
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if array.dtype in (np.float16, ml_dtypes.bfloat16):
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif array.dtype.kind == "c":
        parts = flat.view(np.float32 if array.dtype == np.complex64 else np.float64).tolist()
        getattr(proto, "scomplex_val" if array.dtype == np.complex64 else "dcomplex_val").extend(
            parts
        )
    else:
        field = {
            np.float32: "float_val",
            np.float64: "double_val",
            np.int64: "int64_val",
            np.uint32: "uint32_val",
            np.uint64: "uint64_val",
            np.bool_: "bool_val",
            np.object_: "string_val",
        }.get(array.dtype.type, "int_val")
        getattr(proto, field).extend(flat.tolist())
    return proto


# Round trips


@pytest.mark.parametrize("enum", list(NUMERIC_DTYPES), ids=dtype_name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_numeric_dtype_round_trips_through_tensor_content(enum: int, data: Any) -> None:
    array = data.draw(numeric_arrays(NUMERIC_DTYPES[enum]))
    proto = make_tensor_proto(array)
    assert proto.dtype == enum
    assert [dim.size for dim in proto.tensor_shape.dim] == list(array.shape)
    assert len(proto.tensor_content) == array.nbytes  # compact: no *_val fields
    wire = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    assert_identical(make_ndarray(wire), array)


@pytest.mark.parametrize("enum", list(NUMERIC_DTYPES), ids=dtype_name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_numeric_dtype_reads_from_typed_val_fields(enum: int, data: Any) -> None:
    array = data.draw(numeric_arrays(NUMERIC_DTYPES[enum]))
    assert_identical(make_ndarray(with_typed_values(array)), array)


@settings(max_examples=60, deadline=None)
@given(array=string_arrays())
def test_arbitrary_bytes_round_trip_as_string_tensors(array: np.ndarray) -> None:
    proto = make_tensor_proto(array)
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == array.ravel().tolist()
    wire = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    assert_identical(make_ndarray(wire), array)


def test_tensor_content_is_little_endian_and_arrays_come_back_writable() -> None:
    proto = make_tensor_proto(np.array([1, 258], dtype=np.int32))
    assert proto.tensor_content == b"\x01\x00\x00\x00\x02\x01\x00\x00"
    big_endian = np.array([1.5, -2.0], dtype=">f8")
    decoded = make_ndarray(make_tensor_proto(big_endian))
    assert decoded.dtype == np.float64 and decoded.tolist() == [1.5, -2.0]
    decoded[0] = 7.0  # a frombuffer view of the proto's bytes would be read-only
    assert decoded[0] == 7.0


# TF's *_val rules


def test_one_value_in_val_field_fills_the_whole_shape() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[7.0])
    for size in (2, 3):
        proto.tensor_shape.dim.add(size=size)
    assert make_ndarray(proto).tolist() == [[7.0] * 3] * 2


def test_fewer_values_than_the_shape_repeat_the_last_one() -> None:
    ints = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT8, int_val=[1, -2])
    ints.tensor_shape.dim.add(size=4)
    assert make_ndarray(ints).tolist() == [1, -2, -2, -2]
    halves = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_HALF, half_val=[int(np.float16(1.5).view(np.uint16))]
    )
    halves.tensor_shape.dim.add(size=3)
    assert make_ndarray(halves).tolist() == [1.5, 1.5, 1.5]
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b"])
    strings.tensor_shape.dim.add(size=3)
    assert make_ndarray(strings).tolist() == [b"a", b"b", b"b"]
    pairs = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64, scomplex_val=[1.0, 2.0])
    pairs.tensor_shape.dim.add(size=2)
    assert make_ndarray(pairs).tolist() == [1 + 2j, 1 + 2j]


def test_no_values_at_all_give_zeros() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT16)
    proto.tensor_shape.dim.add(size=3)
    zeros = make_ndarray(proto)
    assert zeros.dtype == np.uint16 and zeros.tolist() == [0, 0, 0]
    proto.dtype = types_pb2.DT_STRING
    assert make_ndarray(proto).tolist() == [b"", b"", b""]


# Python values and dtypes


@pytest.mark.parametrize(
    ("values", "enum", "expected"),
    [
        ([1, 2, 3], types_pb2.DT_INT32, [1, 2, 3]),
        ([[1, 2], [3, 2**40]], types_pb2.DT_INT64, [[1, 2], [3, 2**40]]),
        ([2**63], types_pb2.DT_UINT64, [2**63]),
        ([1, 2.5], types_pb2.DT_FLOAT, [1.0, 2.5]),
        (3.0, types_pb2.DT_FLOAT, 3.0),
        ((True, False), types_pb2.DT_BOOL, [True, False]),
        ([1, 2j], types_pb2.DT_COMPLEX128, [1, 2j]),
        (["héllo", b"\xff\x00"], types_pb2.DT_STRING, ["héllo".encode(), b"\xff\x00"]),
        (b"raw\x00", types_pb2.DT_STRING, b"raw\x00"),
        ([], types_pb2.DT_FLOAT, []),
        ([[], []], types_pb2.DT_FLOAT, [[], []]),
        ([np.float16(0.5), np.float16(1)], types_pb2.DT_FLOAT, [0.5, 1.0]),
        (np.float64(0.1), types_pb2.DT_DOUBLE, 0.1),
        (np.array(["ab", "ç"]), types_pb2.DT_STRING, [b"ab", "ç".encode()]),
        (np.array([b"x", "y"], dtype=object), types_pb2.DT_STRING, [b"x", b"y"]),
        ([np.array([1, 2]), np.array([3, 4])], types_pb2.DT_INT32, [[1, 2], [3, 4]]),
    ],
)
def test_python_values_get_tensorflows_dtype_guess(values: Any, enum: int, expected: Any) -> None:
    proto = make_tensor_proto(values)
    assert dtype_name(proto.dtype) == dtype_name(enum)
    assert make_ndarray(proto).tolist() == expected


@pytest.mark.parametrize(
    "spelling",
    [types_pb2.DT_HALF, "DT_HALF", "dt_half", "half", "float16", np.float16, np.dtype("<f2")],
)
def test_dtype_accepts_every_spelling(spelling: Any) -> None:
    proto = make_tensor_proto([1, 2.5], dtype=spelling)
    assert proto.dtype == types_pb2.DT_HALF
    assert make_ndarray(proto).tolist() == [1.0, 2.5]


def test_dtype_tables_agree_with_each_other() -> None:
    assert len(supported_dtype_names()) == 16
    for name in supported_dtype_names():
        enum = resolve_dtype(name)
        assert dtype_name(enum) == name
        if enum != types_pb2.DT_STRING:
            assert tf_dtype(numpy_dtype(enum)) == enum
    assert numpy_dtype(types_pb2.DT_STRING) == np.dtype(object)
    assert tf_dtype(np.dtype("S3")) == tf_dtype(np.dtype("U2")) == types_pb2.DT_STRING
    assert resolve_dtype("float") == types_pb2.DT_FLOAT  # TF's alias, unlike numpy's float64
    assert resolve_dtype(float) == types_pb2.DT_FLOAT
    assert resolve_dtype("bfloat16") == types_pb2.DT_BFLOAT16
    assert dtype_name(types_pb2.DT_RESOURCE) == "DT_RESOURCE"  # named, though not carried


def test_dtype_converts_arrays_and_lists() -> None:
    as_int8 = make_tensor_proto(np.array([1.9, -3.2]), dtype="int8")  # explicit cast, like TF
    assert make_ndarray(as_int8).tolist() == [1, -3]
    assert make_ndarray(make_tensor_proto([1, 2], dtype="DT_DOUBLE")).dtype == np.float64
    as_uint8 = make_ndarray(make_tensor_proto([[1, 255]], dtype="uint8"))
    assert as_uint8.dtype == np.uint8 and as_uint8.tolist() == [[1, 255]]
    strings = make_tensor_proto(["a"], dtype=types_pb2.DT_STRING)
    assert list(strings.string_val) == [b"a"]


def test_shape_reshapes_or_fills_from_one_value() -> None:
    reshaped = make_ndarray(make_tensor_proto([1, 2, 3, 4, 5, 6], shape=[2, 3]))
    assert reshaped.tolist() == [[1, 2, 3], [4, 5, 6]]
    filled = make_ndarray(make_tensor_proto(0.5, dtype="float32", shape=(2, 2)))
    assert filled.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert make_ndarray(make_tensor_proto(b"s", shape=[3])).tolist() == [b"s"] * 3


def test_a_tensor_proto_passes_through_unchanged() -> None:
    proto = make_tensor_proto([1.0])
    assert make_tensor_proto(proto) is proto


# Errors name the input and the problem


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([[1, 2], [3]], {}, r"values\[1\]: expected a list of 2 items like values\[0\].*ragged"),
        ([[1, 2], 3], {}, r"values\[1\]: expected a list of 2 items.*got an integer 3"),
        ([[1, [2]]], {}, r"values\[0\]\[1\]: expected a single value, got a list of 1 item"),
        ([1, "a"], {}, r"values\[1\] is a string 'a' but values\[0\] is an integer 1.*mix"),
        ([True, 1], {}, r"values\[1\] is an integer 1 but values\[0\] is a bool"),
        ([1, None], {}, r"values\[1\]: expected a number or string, got null"),
        ([{"a": 1}], {}, r"values\[0\]: expected a number or string, got a dict"),
        (None, {}, r"values is None"),
        ([1.5], {"dtype": "int32"}, r"values\[0\]: a float 1.5 cannot be a DT_INT32 value"),
        ([[1], [300]], {"dtype": "DT_INT8"}, r"values\[1\]\[0\]: 300 is outside DT_INT8's range"),
        (["x"], {"dtype": "float"}, r"values\[0\]: a string 'x' cannot be a DT_FLOAT value"),
        ([1], {"dtype": types_pb2.DT_STRING}, r"an integer 1 cannot be a DT_STRING value"),
        ([2**64], {}, r"values\[0\]: 18446744073709551616 does not fit a 64-bit integer"),
        ([-1, 2**63], {}, r"does not fit a 64-bit integer"),
        (np.array([1 + 1j]), {"dtype": "float32"}, r"would drop the imaginary part"),
        (np.array([1, 2]), {"dtype": "string"}, r"DT_INT64 array and cannot become DT_STRING"),
        (np.array(["2020"], dtype="datetime64[D]"), {}, r"numpy dtype datetime64\[D\] has no"),
        ([1.0], {"dtype": "DT_RESOURCE"}, r"DT_RESOURCE\) is not supported; expected one of"),
        ([1.0], {"dtype": 999}, r"TensorFlow dtype 999 is not supported"),
        ([1.0], {"dtype": "floaty"}, r"dtype 'floaty' is not a known dtype name"),
        ([1, 2, 3], {"shape": [2, 2]}, r"values has 3 elements but shape \[2, 2\] holds 4"),
        ([1, 2], {"shape": [-1]}, r"shape \[-1\]: dimensions must be known"),
    ],
)
def test_bad_values_raise_value_error_naming_input_and_problem(
    values: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_tensor_proto(values, **kwargs)


def proto_with(dtype: int, shape: list[int], **fields: Any) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (
            proto_with(types_pb2.DT_FLOAT, [3], tensor_content=b"\x00" * 8),
            r"DT_FLOAT with shape \[3\] needs 12 bytes of tensor_content, got 8",
        ),
        (
            proto_with(types_pb2.DT_INT32, [2], int_val=[1, 2, 3]),
            r"holds 3 values in int_val but its shape \[2\] has only 2 elements",
        ),
        (
            proto_with(types_pb2.DT_UINT8, [1], int_val=[256]),
            r"DT_UINT8 has 256 in int_val, outside uint8 range \[0, 255\]",
        ),
        (
            proto_with(types_pb2.DT_HALF, [1], half_val=[70000]),
            r"70000 in half_val, outside uint16 range",
        ),
        (
            proto_with(types_pb2.DT_COMPLEX128, [1], dcomplex_val=[1.0, 2.0, 3.0]),
            r"3 numbers in dcomplex_val; expected \(real, imaginary\) pairs",
        ),
        (
            proto_with(types_pb2.DT_STRING, [1], tensor_content=b"abc"),
            r"DT_STRING uses tensor_content",
        ),
        (proto_with(types_pb2.DT_RESOURCE, []), r"TensorProto.dtype: TensorFlow dtype 20"),
        (proto_with(types_pb2.DT_FLOAT, [-1, 2]), r"unknown \(-1\) dimension"),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"unknown_rank": True}),
            r"unknown rank",
        ),
    ],
)
def test_bad_protos_raise_value_error_naming_the_problem(proto: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_ndarray(proto)


def test_non_protos_and_bad_dtype_lookups_raise_value_error() -> None:
    with pytest.raises(ValueError, match="expected a TensorProto, got list"):
        make_ndarray([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a TensorFlow DataType enum number"):
        dtype_name(12345)
    with pytest.raises(ValueError, match=r"numpy dtype \|V4 has no TensorFlow Serving equivalent"):
        tf_dtype(np.dtype("V4"))
    with pytest.raises(ValueError, match="expected a dtype name"):
        resolve_dtype(True)
