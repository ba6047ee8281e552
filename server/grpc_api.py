"""TF Serving's gRPC services (PredictionService, ModelService, grpc.health.v1) on grpc.aio."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from core.wire.protos import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from server.errors import ServingStatus
from server.flags import parse_channel_arguments
from server.grpc_requests import add_servicer
from server.service import InferenceService

log = logging.getLogger("deepchat_tfs.server.grpc")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

# Channel arguments the Python server applies; others in --grpc_channel_arguments are logged.
_SUPPORTED_CHANNEL_ARGUMENT_PREFIXES = ("grpc.",)


class BindError(OSError):
    """A listening address that could not be bound (port in use, bad socket path)."""


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + remaining


async def _abort(context: grpc.aio.ServicerContext, error: ServingStatus) -> NoReturn:
    await context.abort(error.code, error.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


async def _call(context: grpc.aio.ServicerContext, handler: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await handler()
    except ServingStatus as error:
        await _abort(context, error)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[name-defined]
    """tensorflow.serving.PredictionService."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    # Each handler awaits the service itself (no closure per call): the path every request takes.
    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Predict on named input tensors."""
        try:
            return await self._service.predict(request, deadline=_deadline(context))
        except ServingStatus as error:
            await _abort(context, error)

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Classify tf.Examples."""
        try:
            return await self._service.classify(request, deadline=_deadline(context))
        except ServingStatus as error:
            await _abort(context, error)

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Regress tf.Examples."""
        try:
            return await self._service.regress(request, deadline=_deadline(context))
        except ServingStatus as error:
            await _abort(context, error)

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Several classify/regress signatures over one set of examples."""
        try:
            return await self._service.multi_inference(request, deadline=_deadline(context))
        except ServingStatus as error:
            await _abort(context, error)

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """The model's SignatureDefs."""
        try:
            return await self._service.get_model_metadata(request)
        except ServingStatus as error:
            await _abort(context, error)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[name-defined]
    """tensorflow.serving.ModelService."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """States of a model's versions."""
        return await _call(context, lambda: self._service.get_model_status(request))

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Replace the served model list."""
        return await _call(context, lambda: self._service.reload_config(request))


def channel_options(options_text: str) -> list[tuple[str, Any]]:
    """Server channel options: large messages, no port sharing, plus --grpc_channel_arguments."""
    options: dict[str, Any] = {
        # TF Serving accepts messages up to 2 GiB; gRPC's 4 MiB default is a known pitfall.
        "grpc.max_receive_message_length": 2**31 - 1,
        "grpc.max_send_message_length": 2**31 - 1,
        # Linux gRPC shares ports by default; a second server must fail, not split the traffic.
        "grpc.so_reuseport": 0,
    }
    for key, value in parse_channel_arguments(options_text):
        if key.startswith(_SUPPORTED_CHANNEL_ARGUMENT_PREFIXES):
            options[key] = value
        else:
            log.warning(
                "ignoring --grpc_channel_arguments entry %s=%s (not a grpc.* key)", key, value
            )
    return list(options.items())


class GrpcEndpoint:
    """The gRPC server: bound at creation (so a taken port fails early), serving after start()."""

    def __init__(
        self,
        service: InferenceService,
        addresses: Sequence[str],
        *,
        channel_arguments: str = "",
        max_threads: int = 0,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.server = grpc.aio.server(
            options=channel_options(channel_arguments),
            maximum_concurrent_rpcs=max_threads or None,
        )
        # Requests whose bytes do not parse get INVALID_ARGUMENT, not grpc.aio's UNKNOWN.
        add_servicer(
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
            PredictionServicer(service),
            self.server,
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
        )
        add_servicer(
            model_service_pb2_grpc.add_ModelServiceServicer_to_server,
            ModelServicer(service),
            self.server,
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
        )
        self._credentials = credentials
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.ports: list[int] = []
        for address in addresses:
            self.ports.append(self._bind(address))

    def _bind(self, address: str) -> int:
        if address.startswith("unix:"):
            socket_path = address[len("unix:") :]
            if os.path.exists(socket_path):
                # A socket file left by a server that died; gRPC cannot bind over it.
                os.unlink(socket_path)
        try:
            if self._credentials is not None and not address.startswith("unix:"):
                # TLS on TCP only; the local socket stays plaintext, as in TF Serving.
                port = int(self.server.add_secure_port(address, self._credentials))
            else:
                port = int(self.server.add_insecure_port(address))
        except RuntimeError as error:
            raise BindError(f"cannot listen on {address}: {error}") from None
        if port == 0 and not address.startswith("unix:"):
            raise BindError(f"cannot listen on {address}: address already in use")
        return port

    async def start(self) -> None:
        """Start answering RPCs and report SERVING on the health service."""
        await self.server.start()
        for name in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float | None) -> None:
        """Stop accepting RPCs; running ones get grace_s seconds to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
