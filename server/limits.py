"""Size checks on a request's tensors, made on the TensorProtos before any array is built.

A TensorProto may declare far more elements than it carries: TensorFlow fills a tensor from one
value (or none), so a 30-byte request can ask for gigabytes. The checks here follow
TensorFlow's Tensor::FromProto (a shape it calls invalid, or tensor_content of the wrong size,
is TF Serving's "tensor parsing error: ALIAS") and add the server's ceiling on the bytes a
request's tensors take once built: over it is RESOURCE_EXHAUSTED with TensorFlow's OOM wording.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from core.wire.protos import types_pb2
from server import errors
from server.errors import ServingStatus
from server.tensor_fields import NUMPY_BY_DTYPE, dims_of

# TensorShape::kMaxDimensions and the largest element count TensorShape accepts (int64).
MAX_DIMENSIONS = 254
MAX_ELEMENTS = 2**63 - 1
# A string element fed to a session costs numpy's object pointer and TensorFlow's tstring.
STRING_ELEMENT_BYTES = 8 + 24
DEFAULT_MAX_REQUEST_TENSOR_BYTES = 256 * 2**20


def _parsing_error(alias: str) -> ServingStatus:
    return errors.invalid_argument(f"tensor parsing error: {alias}")


def _shape_text(dims: tuple[int, ...]) -> str:
    return "[" + ",".join(str(size) for size in dims) + "]"


def _dtype_text(dtype: int) -> str:
    try:
        return str(types_pb2.DataType.Name(dtype))[3:].lower()
    except ValueError:
        return str(dtype)


# Element sizes of the numeric DataTypes, read once instead of per tensor; any other dtype
# (no numpy equivalent) is a parsing error.
_ITEMSIZE = {enum: dtype.itemsize for enum, dtype in NUMPY_BY_DTYPE.items()}


def tensor_bytes(alias: str, proto: Any) -> int:
    """Bytes the tensor takes once built; INVALID_ARGUMENT where TF's FromProto would fail."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise _parsing_error(alias)
    dims = dims_of(shape)
    if len(dims) > MAX_DIMENSIONS:
        raise _parsing_error(alias)
    if dims and min(dims) < 0:
        raise _parsing_error(alias)
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise _parsing_error(alias)
    if proto.dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            raise _parsing_error(alias)
        values = proto.string_val
        payload = sum(map(len, values))
        if count > len(values) and len(values) > 0:
            # The fill rule copies the last string into every missing element.
            payload += (count - len(values)) * len(values[-1])
        return count * STRING_ELEMENT_BYTES + payload
    itemsize = _ITEMSIZE.get(proto.dtype)
    if itemsize is None:
        raise _parsing_error(alias)
    content = proto.tensor_content
    if content and len(content) != count * itemsize:
        # TensorFlow's Helper<T>::Decode: the content must hold exactly the declared elements.
        raise _parsing_error(alias)
    return count * itemsize


@dataclass(frozen=True)
class RequestLimits:
    """The checks a request's tensors pass before they are built."""

    max_request_tensor_bytes: int = DEFAULT_MAX_REQUEST_TENSOR_BYTES
    """Ceiling on the bytes of one request's tensors once built; 0 = none."""
    max_batch_size: int = 0
    """Batching's max_batch_size when a task may not be split; 0 = no batch check here."""

    def check(self, tensors: Mapping[str, Any]) -> int:
        """Check a request's TensorProtos by alias; the bytes they will take once built.

        The order is TF Serving's: a tensor that does not parse, then batching's task size,
        then the byte ceiling (which TF Serving meets only when its allocator fails).
        """
        aliases = sorted(tensors) if len(tensors) > 1 else list(tensors)
        sizes = {alias: tensor_bytes(alias, tensors[alias]) for alias in aliases}
        if self.max_batch_size:
            for alias in aliases:
                dims = tensors[alias].tensor_shape.dim
                if dims and dims[0].size > self.max_batch_size:
                    raise errors.invalid_argument(
                        f"Task size {dims[0].size} is larger than maximum input batch size "
                        f"{self.max_batch_size}"
                    )
        total = 0
        for alias, size in sizes.items():
            total += size
            if self.max_request_tensor_bytes and total > self.max_request_tensor_bytes:
                raise _over_ceiling(alias, tensors[alias], size, total, self)
        return total


def _over_ceiling(
    alias: str, proto: Any, size: int, total: int, limits: RequestLimits
) -> ServingStatus:
    dims = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
    return ServingStatus(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"OOM when allocating tensor with shape{_shape_text(dims)} and type "
        f"{_dtype_text(proto.dtype)}: input {alias} needs {size} bytes, the request's tensors "
        f"{total}, over the server's limit of {limits.max_request_tensor_bytes} bytes "
        "(--max_request_tensor_bytes)",
    )


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft before, soft after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def limit_tensorflow_cpu_memory(limit_mb: int) -> None:
    """Make TensorFlow allocate CPU tensors from a BFC allocator capped at limit_mb (0 = no cap).

    Must run before TensorFlow is imported. A run that needs more fails with TensorFlow's own
    RESOURCE_EXHAUSTED "OOM when allocating tensor ...", instead of growing the process.
    """
    if limit_mb > 0:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
        os.environ["TF_CPU_BFC_MEM_LIMIT_IN_MB"] = str(limit_mb)
