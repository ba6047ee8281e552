"""The shared async TF Serving client: one grpc.aio channel for chat, panels and bursts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.client.channel import ClientSettings, TlsSettings, channel_credentials, open_channel
from core.wire import protos
from core.wire.metadata import (
    SIGNATURE_DEF_FIELD,
    ModelMetadata,
    SignatureInfo,
    TensorInfo,
    VersionStatus,
    enum_name,
    model_metadata,
    version_statuses,
)
from core.wire.model_spec import ModelSpec
from core.wire.tensors import make_ndarray, make_tensor_proto

if TYPE_CHECKING:
    from core.metrics.stats import StatsCollector

__all__ = [
    "ClassifyResult",
    "ClientSettings",
    "ModelMetadata",
    "ModelSpec",
    "PredictResult",
    "RegressResult",
    "ServingClient",
    "ServingError",
    "SignatureInfo",
    "TensorInfo",
    "TlsSettings",
    "VersionStatus",
    "make_example",
]


class ServingError(Exception):
    """A failed call: the gRPC status code name and the server's message.

    origin is set when this client made the error itself ("client" or "transport", see
    core.client.errors); None leaves it to be read from the code and message.
    """

    def __init__(self, code: str, message: str, origin: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.origin = origin

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ServingError:
        """The ServingError for a grpc.aio call failure."""
        return cls(error.code().name, error.details() or "")


@dataclass(frozen=True)
class PredictResult:
    """A Predict answer: outputs as numpy arrays and the version that served it."""

    outputs: dict[str, np.ndarray]
    model_name: str
    model_version: int | None
    signature_name: str
    latency_s: float


@dataclass(frozen=True)
class ClassifyResult:
    """A Classify answer: (label, score) pairs per example."""

    classes: list[list[tuple[str, float]]]
    model_version: int | None
    latency_s: float


@dataclass(frozen=True)
class RegressResult:
    """A Regress answer: one value per example."""

    values: list[float]
    model_version: int | None
    latency_s: float


def _feature(name: str, value: object) -> Any:
    """A tf.train.Feature from a str/bytes/int/float value or a list of one of those kinds."""
    feature = protos.feature_pb2.Feature()
    values = value.tolist() if isinstance(value, np.ndarray | np.generic) else value
    items = list(values) if isinstance(values, list | tuple) else [values]
    if not items:
        raise ValueError(f"feature {name!r} is an empty list; expected at least one value")
    texts = [item for item in items if isinstance(item, str | bytes)]
    integers = [item for item in items if isinstance(item, int)]  # bool too: 0/1, as in TF
    numbers = [item for item in items if isinstance(item, int | float)]
    if len(texts) == len(items):
        feature.bytes_list.value.extend(
            item.encode() if isinstance(item, str) else item for item in texts
        )
    elif len(integers) == len(items):
        feature.int64_list.value.extend(int(item) for item in integers)
    elif len(numbers) == len(items):
        feature.float_list.value.extend(float(item) for item in numbers)
    else:
        kinds = sorted({type(item).__name__ for item in items})
        raise ValueError(
            f"feature {name!r} holds {', '.join(kinds)}; expected str/bytes, int or float "
            "values, one kind per feature"
        )
    return feature


def make_example(features: Mapping[str, object]) -> Any:
    """A tf.train.Example from plain feature values (str/bytes, int, float, or lists of one)."""
    example = protos.example_pb2.Example()
    for name, value in features.items():
        example.features.feature[name].CopyFrom(_feature(name, value))
    return example


def served_version(response: Any) -> int | None:
    """The version in a response's model_spec, or None when the server left it out."""
    spec = response.model_spec
    return int(spec.version.value) if spec.HasField("version") else None


class ServingClient:
    """Async client for TF Serving's PredictionService, ModelService and gRPC health."""

    def __init__(self, settings: ClientSettings, stats: StatsCollector | None = None) -> None:
        self.settings = settings
        self.stats = stats
        # Built now so a bad certificate path fails at construction, not at the first call.
        self._credentials = None if settings.tls is None else channel_credentials(settings.tls)
        self._metadata: tuple[tuple[str, str], ...] = tuple(
            (key.lower(), value) for key, value in settings.headers
        )
        if settings.bearer_token:
            self._metadata += (("authorization", f"Bearer {settings.bearer_token}"),)
        self._channel: grpc.aio.Channel | None = None
        self._channel_lock = asyncio.Lock()
        self._closed = False
        # Each RPC's callable by method name, set when the channel opens.
        self._rpcs: dict[str, Callable[..., Awaitable[Any]]] = {}

    async def __aenter__(self) -> ServingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls made afterwards raise ServingError CANCELLED."""
        self._closed = True
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _ensure_channel(self) -> None:
        """Open the channel on first use, inside the event loop that will use it."""
        if self._closed:
            raise ServingError("CANCELLED", "the ServingClient is closed", origin="client")
        if self._channel is not None:
            return
        async with self._channel_lock:
            if self._channel is not None:
                return
            try:
                channel = await open_channel(self.settings, self._credentials)
            except OSError as error:
                raise ServingError(
                    "UNAVAILABLE",
                    f"cannot resolve targets {list(self.settings.targets)}: {error}",
                    origin="transport",
                ) from None
            prediction = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
            models = protos.model_service_pb2_grpc.ModelServiceStub(channel)
            self._rpcs = {
                "Predict": prediction.Predict,
                "Classify": prediction.Classify,
                "Regress": prediction.Regress,
                "GetModelMetadata": prediction.GetModelMetadata,
                "GetModelStatus": models.GetModelStatus,
                "HandleReloadConfigRequest": models.HandleReloadConfigRequest,
                "Check": health_pb2_grpc.HealthStub(channel).Check,
            }
            self._channel = channel

    async def _call(
        self,
        method: str,
        request: Any,
        timeout_s: float | None,
        *,
        recorded: bool = False,
    ) -> tuple[Any, float]:
        """Run one unary RPC with deadline and metadata; returns (response, latency_s).

        recorded calls (Predict, Classify, Regress) go into stats with their status code.
        """
        await self._ensure_channel()
        timeout = self.settings.timeout_s if timeout_s is None else timeout_s
        stats = self.stats if recorded else None
        code = "UNKNOWN"
        version: int | None = None
        if stats is not None:
            stats.request_started()
        started = time.perf_counter()
        try:
            response = await self._rpcs[method](request, timeout=timeout, metadata=self._metadata)
            code = "OK"
            if recorded:
                version = served_version(response)
            return response, time.perf_counter() - started
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            raise ServingError.from_rpc_error(error) from None
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            if stats is not None:
                stats.request_finished(time.perf_counter() - started, code, version)

    async def predict(
        self,
        model: ModelSpec,
        inputs: Mapping[str, np.ndarray | Any],
        *,
        output_filter: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> PredictResult:
        """Predict with numpy arrays (or TensorProtos) by input alias; outputs as numpy arrays."""
        request = protos.predict_pb2.PredictRequest()
        model.fill(request.model_spec)
        for alias, value in inputs.items():
            if isinstance(value, protos.tensor_pb2.TensorProto):
                request.inputs[alias].CopyFrom(value)
                continue
            try:
                request.inputs[alias].CopyFrom(make_tensor_proto(value))
            except ValueError as error:
                raise ValueError(f"predict input {alias!r}: {error}") from None
        request.output_filter.extend(output_filter)
        response, latency_s = await self._call("Predict", request, timeout_s, recorded=True)
        return PredictResult(
            outputs={alias: make_ndarray(tensor) for alias, tensor in response.outputs.items()},
            model_name=response.model_spec.name or model.name,
            model_version=served_version(response),
            signature_name=response.model_spec.signature_name or model.signature_name,
            latency_s=latency_s,
        )

    async def connect(self) -> None:
        """Open the channel now rather than at the first call (it connects in the background)."""
        await self._ensure_channel()

    @property
    def connected(self) -> bool:
        """Whether the channel is open (it may still be connecting)."""
        return self._channel is not None

    def start_predict(self, request: Any, timeout_s: float) -> grpc.aio.UnaryUnaryCall:
        """Start a Predict with a ready-made request and return grpc.aio's call as is.

        For load generators that settle calls by callback: no coroutine, no stats. The channel
        must be open (connect() or any earlier call); the call raises grpc.aio.AioRpcError when
        it fails.
        """
        if self._channel is None:
            raise ServingError("CANCELLED", "the ServingClient is not connected", origin="client")
        predict = self._rpcs["Predict"]
        call: grpc.aio.UnaryUnaryCall = predict(request, timeout=timeout_s, metadata=self._metadata)
        return call

    async def predict_raw(self, request: Any, *, timeout_s: float | None = None) -> Any:
        """Send a ready-made PredictRequest and return the PredictResponse as is."""
        response, _ = await self._call("Predict", request, timeout_s, recorded=True)
        return response

    async def classify(
        self,
        model: ModelSpec,
        examples: Sequence[Mapping[str, object]],
        *,
        timeout_s: float | None = None,
    ) -> ClassifyResult:
        """Classify examples given as plain feature dicts; (label, score) pairs per example."""
        request = protos.classification_pb2.ClassificationRequest()
        model.fill(request.model_spec)
        request.input.example_list.examples.extend(make_example(item) for item in examples)
        response, latency_s = await self._call("Classify", request, timeout_s, recorded=True)
        return ClassifyResult(
            classes=[
                [(entry.label, float(entry.score)) for entry in classification.classes]
                for classification in response.result.classifications
            ],
            model_version=served_version(response),
            latency_s=latency_s,
        )

    async def regress(
        self,
        model: ModelSpec,
        examples: Sequence[Mapping[str, object]],
        *,
        timeout_s: float | None = None,
    ) -> RegressResult:
        """Regress examples given as plain feature dicts; one value per example."""
        request = protos.regression_pb2.RegressionRequest()
        model.fill(request.model_spec)
        request.input.example_list.examples.extend(make_example(item) for item in examples)
        response, latency_s = await self._call("Regress", request, timeout_s, recorded=True)
        return RegressResult(
            values=[float(regression.value) for regression in response.result.regressions],
            model_version=served_version(response),
            latency_s=latency_s,
        )

    async def get_model_metadata(
        self, model: ModelSpec, *, timeout_s: float | None = None
    ) -> ModelMetadata:
        """The model's signatures (inputs/outputs with dtype and shape) and served version."""
        request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
        model.fill(request.model_spec, with_signature=False)
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        response, _ = await self._call("GetModelMetadata", request, timeout_s)
        try:
            return model_metadata(response, model.name)
        except ValueError as error:
            raise ServingError("INTERNAL", str(error)) from None

    async def get_model_status(
        self,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[VersionStatus]:
        """State of each version of a model (or of the one version asked for)."""
        request = protos.get_model_status_pb2.GetModelStatusRequest()
        ModelSpec(model_name, version, version_label).fill(request.model_spec, with_signature=False)
        response, _ = await self._call("GetModelStatus", request, timeout_s)
        return version_statuses(response)

    async def health(self, service: str = "", *, timeout_s: float | None = None) -> str:
        """grpc.health.v1 status of a service ("" = the whole server): "SERVING", ..."""
        request = health_pb2.HealthCheckRequest(service=service)
        response, _ = await self._call("Check", request, timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def reload_config(self, config: Any, *, timeout_s: float | None = None) -> None:
        """Send a ModelServerConfig to HandleReloadConfigRequest; ServingError if refused."""
        request = protos.model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        response, _ = await self._call("HandleReloadConfigRequest", request, timeout_s)
        if response.status.error_code != protos.error_codes_pb2.OK:
            code = enum_name(protos.error_codes_pb2.Code, response.status.error_code)
            raise ServingError(code, response.status.error_message)
