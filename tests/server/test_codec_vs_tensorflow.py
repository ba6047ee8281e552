"""core.wire.tensors agrees with tf.make_tensor_proto / tf.make_ndarray on every dtype."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.wire.protos import tensor_pb2
from core.wire.tensors import (
    make_ndarray,
    make_tensor_proto,
    numpy_dtype,
    resolve_dtype,
    supported_dtype_names,
)

pytestmark = pytest.mark.slow

DTYPE_NAMES = supported_dtype_names()
NUMERIC_NAMES = [name for name in DTYPE_NAMES if name != "DT_STRING"]
SHAPES = [(), (0,), (1,), (3,), (2, 3), (2, 0, 2)]


def sample(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic values of the dtype called name: random bit patterns, or bytes for strings."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    if name == "DT_STRING":
        items = np.empty(count, dtype=object)
        items[:] = [rng.bytes(int(rng.integers(0, 6))) for _ in range(count)]
        return items.reshape(shape)
    dtype = numpy_dtype(resolve_dtype(name))
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    bits = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
    return bits.view(dtype).reshape(shape)


def assert_identical(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same dtype, shape and bits; string tensors as the same bytes."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype == object:
        assert [bytes(item) for item in actual.ravel()] == list(expected.ravel())
    else:
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()


def test_tensorflow_shares_core_protos_message_class() -> None:
    assert isinstance(tf.make_tensor_proto([1.0]), tensor_pb2.TensorProto)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_our_protos_read_back_identically_in_tensorflow(name: str, shape: tuple[int, ...]) -> None:
    array = sample(name, shape)
    ours = make_tensor_proto(array)
    assert ours.dtype == tf.make_tensor_proto(array).dtype
    assert_identical(tf.make_ndarray(ours), array)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_tensorflows_protos_read_back_identically_here(name: str, shape: tuple[int, ...]) -> None:
    theirs = tf.make_tensor_proto(sample(name, shape, seed=1))
    assert_identical(make_ndarray(theirs), tf.make_ndarray(theirs))


@pytest.mark.parametrize("name", DTYPE_NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_both_directions_agree_on_random_arrays(name: str, data: Any) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    array = sample(name, shape, seed=data.draw(st.integers(0, 2**32 - 1)))
    assert_identical(tf.make_ndarray(make_tensor_proto(array)), array)
    # TF writes complex values through Python floats, which quiets signalling NaNs: so compare
    # with what TF itself reads back from its proto.
    theirs = tf.make_tensor_proto(array)
    assert_identical(make_ndarray(theirs), tf.make_ndarray(theirs))


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_val_field_fill_rule_matches_tensorflow(name: str) -> None:
    values = sample(name, (2,), seed=2)
    # TF itself writes *_val for one value, and for fewer values than an explicit shape.
    one_value_fills = tf.make_tensor_proto(values[:1], shape=[2, 3])
    two_values_pad = tf.make_tensor_proto(values, shape=[5])
    assert not one_value_fills.tensor_content and not two_values_pad.tensor_content
    for proto in (one_value_fills, two_values_pad):
        assert_identical(make_ndarray(proto), tf.make_ndarray(proto))
    empty = tensor_pb2.TensorProto(dtype=resolve_dtype(name))
    empty.tensor_shape.dim.add(size=2)
    expected = tf.make_ndarray(empty)
    if name == "DT_STRING":
        # TF pads an empty string_val with the str "", not bytes; we keep string tensors as bytes.
        assert expected.tolist() == ["", ""]
        expected = np.array([b"", b""], dtype=object)
    assert_identical(make_ndarray(empty), expected)


@pytest.mark.parametrize(
    "values",
    [
        [1, 2],
        [2**40, 1],
        [1.5, 2],
        7,
        3.0,
        [[1, 2], [3, 4]],
        [True, False],
        ["a", "héllo"],
        [b"\xff\x00", b""],
        b"bytes",
        [1 + 2j],
        [],
        [[], []],
        np.float64(0.1),
        np.array([1, 2], dtype=np.uint16),
    ],
    ids=repr,
)
def test_python_values_get_the_same_dtype_and_values_as_tensorflow(values: Any) -> None:
    ours, theirs = make_tensor_proto(values), tf.make_tensor_proto(values)
    assert ours.dtype == theirs.dtype
    assert_identical(make_ndarray(ours), tf.make_ndarray(theirs))


@pytest.mark.parametrize("name", [n for n in NUMERIC_NAMES if n != "DT_BOOL"])
def test_explicit_dtypes_convert_like_tensorflow(name: str) -> None:
    tf_dtype = tf.as_dtype(numpy_dtype(resolve_dtype(name)))
    ours = make_tensor_proto([1, 2, 3], dtype=name)
    theirs = tf.make_tensor_proto([1, 2, 3], dtype=tf_dtype)
    assert ours.dtype == theirs.dtype == tf_dtype.as_datatype_enum
    assert_identical(make_ndarray(ours), tf.make_ndarray(theirs))
    from_array = make_tensor_proto(np.array([0.5, -1.5]), dtype=tf_dtype)  # a tf.DType works too
    theirs_from_array = tf.make_tensor_proto(np.array([0.5, -1.5]), dtype=tf_dtype)
    with np.errstate(invalid="ignore"):
        assert_identical(make_ndarray(from_array), tf.make_ndarray(theirs_from_array))


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_dtype_names_and_numpy_types_match_tensorflows(name: str) -> None:
    enum = resolve_dtype(name)
    tf_dtype = tf.as_dtype(enum)
    assert tf_dtype.name == tf.as_dtype(tf_dtype.name).name
    assert resolve_dtype(tf_dtype.name) == enum
    if name != "DT_STRING":
        assert tf.as_dtype(numpy_dtype(enum)).as_datatype_enum == enum
    for alias in ("half", "float", "double"):
        assert resolve_dtype(alias) == tf.as_dtype(alias).as_datatype_enum
    assert numpy_dtype(resolve_dtype("bfloat16")) == np.dtype(ml_dtypes.bfloat16)
