"""TF Serving's model metadata and status answers as plain, immutable Python data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.wire import protos
from core.wire.tensors import dtype_name

SIGNATURE_DEF_FIELD = "signature_def"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: alias, graph tensor name, dtype name and shape.

    shape uses -1 for an unknown dimension and is None when even the rank is unknown.
    """

    alias: str
    name: str
    dtype: str
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class SignatureInfo:
    """One SignatureDef: its key, method name and tensors by alias."""

    key: str
    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    """A model's served version and signatures, from GetModelMetadata."""

    model_name: str
    model_version: int | None
    signatures: dict[str, SignatureInfo]


@dataclass(frozen=True)
class VersionStatus:
    """One version's state from GetModelStatus (state: START, LOADING, AVAILABLE, ...)."""

    version: int
    state: str
    error_code: str
    error_message: str


def enum_name(enum_type: Any, value: int) -> str:
    """The enum's name for value, or the number itself when a newer server sends an unknown one."""
    try:
        return str(enum_type.Name(value))
    except ValueError:
        return str(value)


def tensor_info(alias: str, info: Any) -> TensorInfo:
    """A TensorInfo from a meta_graph_pb2.TensorInfo."""
    shape: tuple[int, ...] | None = None
    if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
        shape = tuple(int(dim.size) for dim in info.tensor_shape.dim)
    try:
        dtype = dtype_name(info.dtype)
    except ValueError:
        dtype = enum_name(protos.types_pb2.DataType, info.dtype)
    return TensorInfo(alias=alias, name=info.name, dtype=dtype, shape=shape)


def signature_info(key: str, signature: Any) -> SignatureInfo:
    """A SignatureInfo from a meta_graph_pb2.SignatureDef, tensors sorted by alias."""
    inputs, outputs = signature.inputs, signature.outputs
    return SignatureInfo(
        key=key,
        method_name=signature.method_name,
        inputs={alias: tensor_info(alias, inputs[alias]) for alias in sorted(inputs)},
        outputs={alias: tensor_info(alias, outputs[alias]) for alias in sorted(outputs)},
    )


def model_metadata(response: Any, requested_name: str) -> ModelMetadata:
    """A ModelMetadata from a GetModelMetadataResponse (signature_def unpacked from its Any)."""
    signatures: dict[str, SignatureInfo] = {}
    if SIGNATURE_DEF_FIELD in response.metadata:
        signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map):
            raise ValueError(
                "GetModelMetadata: metadata['signature_def'] holds "
                f"{response.metadata[SIGNATURE_DEF_FIELD].type_url!r}; expected a SignatureDefMap"
            )
        signatures = {
            key: signature_info(key, signature_map.signature_def[key])
            for key in sorted(signature_map.signature_def)
        }
    spec = response.model_spec
    return ModelMetadata(
        model_name=spec.name or requested_name,
        model_version=spec.version.value if spec.HasField("version") else None,
        signatures=signatures,
    )


def version_statuses(response: Any) -> list[VersionStatus]:
    """VersionStatus list from a GetModelStatusResponse, in the server's order."""
    state_enum = protos.get_model_status_pb2.ModelVersionStatus.State
    return [
        VersionStatus(
            version=int(status.version),
            state=enum_name(state_enum, status.state),
            error_code=enum_name(protos.error_codes_pb2.Code, status.status.error_code),
            error_message=status.status.error_message,
        )
        for status in response.model_version_status
    ]
