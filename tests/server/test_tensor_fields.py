"""server.tensor_fields: the request and response tensor helpers on the Predict path."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.wire.protos import tensor_pb2, tensor_shape_pb2
from server import tensor_fields


def _shape(sizes: list[int], names: list[str] | None = None) -> tensor_shape_pb2.TensorShapeProto:
    shape = tensor_shape_pb2.TensorShapeProto()
    for index, size in enumerate(sizes):
        shape.dim.add(size=size, name=(names[index] if names else ""))
    return shape


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6))
def test_dims_of_reads_every_size_cached_or_not(sizes: list[int]) -> None:
    shape = _shape(sizes)
    assert tensor_fields.dims_of(shape) == tuple(sizes)
    assert tensor_fields.dims_of(shape) == tuple(sizes)  # the cached answer is the same


def test_named_dims_and_huge_shapes_read_right_and_huge_ones_are_not_kept() -> None:
    assert tensor_fields.dims_of(_shape([2, 3], ["batch", "width"])) == (2, 3)
    huge = _shape(list(range(300)))
    before = tensor_fields._dims_of_serialized.cache_info().currsize
    assert tensor_fields.dims_of(huge) == tuple(range(300))
    assert tensor_fields._dims_of_serialized.cache_info().currsize == before


def test_responses_copy_cached_shapes_without_sharing_them() -> None:
    first = tensor_pb2.TensorProto()
    tensor_fields.fill_proto_field(first, np.zeros((2, 1), np.float32))
    second = tensor_pb2.TensorProto()
    tensor_fields.fill_proto_field(second, np.ones((2, 1), np.float32))
    second.tensor_shape.dim[0].size = 9  # a copy: the cached shape and the first answer stay
    third = tensor_pb2.TensorProto()
    tensor_fields.fill_proto_field(third, np.ones((2, 1), np.float32))
    assert [dim.size for dim in first.tensor_shape.dim] == [2, 1]
    assert [dim.size for dim in third.tensor_shape.dim] == [2, 1]
    assert list(third.float_val) == [1.0, 1.0]
