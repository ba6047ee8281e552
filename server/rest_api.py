"""TF Serving's REST API (and its Prometheus endpoint) on aiohttp, in the server's event loop.

Paths, JSON and error mapping follow http_rest_api_handler.cc / http_rest_api_util.cc.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from google.protobuf import json_format

from core.wire import rest_json, tensors
from core.wire.protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)
from server import errors, inference, rest_examples
from server.errors import ServingStatus
from server.rest_connections import GuardedTCPSite
from server.rest_cors import cors_middleware
from server.service import SIGNATURE_DEF_FIELD, InferenceService

log = logging.getLogger("deepchat_tfs.server.rest")

_API_PATH = re.compile(r"(?i)/v1/.*")
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
# aiohttp's 1 MiB default would refuse many tensors; --rest_api_max_body_bytes sets the bound.
# Python's JSON parse takes ~40x a body of small numbers in memory, hence not TF Serving's 2 GiB.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        # Raw UTF-8 as TF Serving's rapidjson writer emits it, not ASCII escapes.
        text=json.dumps(payload, indent=None, ensure_ascii=False) + "\n",
        status=status,
        content_type="application/json",
    )


def _error_response(error: ServingStatus) -> web.Response:
    return _json_response({"error": error.message}, error.http_status)


def _fill_model_spec(
    model_spec: Any, name: str, version_text: str | None, label: str | None
) -> None:
    model_spec.name = name
    if version_text and label:
        raise errors.invalid_argument(
            f"Both model version ({version_text}) and model version label ({label}) cannot be "
            "supplied."
        )
    if version_text:
        try:
            model_spec.version.value = int(version_text)
        except ValueError:
            raise errors.invalid_argument(
                f"Failed to convert version: {version_text} to numeric."
            ) from None
    if label:
        model_spec.version_label = label


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise errors.invalid_argument(f"JSON Parse error: {error}") from None
    except RecursionError:
        raise errors.invalid_argument(
            "JSON Parse error: the document nests arrays or objects too deeply"
        ) from None
    except ValueError:
        # Python refuses integers of more than 4300 digits; rapidjson's text for such numbers.
        raise errors.invalid_argument(
            "JSON Parse error: Number too big to be stored in double."
        ) from None


class RestApi:
    """Request handlers for /v1/models/... on top of the shared InferenceService."""

    def __init__(self, service: InferenceService, timeout_ms: int, max_body_bytes: int = 0) -> None:
        self._service = service
        self._timeout_ms = timeout_ms
        self._max_body_bytes = max_body_bytes

    def _deadline(self) -> float | None:
        return time.monotonic() + self._timeout_ms / 1000 if self._timeout_ms > 0 else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch one request under /v1/; anything else is 404 as in TF Serving."""
        path = request.raw_path.split("?", 1)[0]
        if not _API_PATH.fullmatch(path):
            raise web.HTTPNotFound()
        try:
            return await self._dispatch(request, path)
        except ServingStatus as error:
            return _error_response(error)
        except web.HTTPRequestEntityTooLarge:
            return _json_response(
                {
                    "error": "Request body is larger than the server's limit of "
                    f"{self._max_body_bytes} bytes (--rest_api_max_body_bytes)"
                },
                413,
            )
        except Exception as error:
            log.exception("REST %s %s failed", request.method, path)
            return _error_response(errors.internal(f"{type(error).__name__}: {error}"))

    async def _dispatch(self, request: web.Request, path: str) -> web.StreamResponse:
        malformed = errors.invalid_argument(f"Malformed request: {request.method} {path}")
        if request.method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version_text, label, method = match.groups()
            spec_args = (unquote(name), version_text, unquote(label) if label else None)
            handlers: dict[
                str, Callable[[tuple[str, str | None, str | None], bytes], Awaitable[Any]]
            ] = {
                "predict": self._predict,
                "classify": self._classify,
                "regress": self._regress,
            }
            handler = handlers.get(method)
            if handler is None:
                raise malformed
            return _json_response(await handler(spec_args, await self._read_body(request)))
        if request.method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version_text, label, subresource = match.groups()
            if not name:
                raise errors.invalid_argument("Missing model name in request.")
            spec_args = (unquote(name), version_text, unquote(label) if label else None)
            if subresource == "metadata":
                return _json_response(await self._metadata(spec_args))
            return _json_response(await self._status(spec_args))
        raise malformed

    async def _read_body(self, request: web.Request) -> bytes:
        """The request body, read within the REST timeout (a client trickling it is cut off)."""
        if self._timeout_ms <= 0:
            return await request.read()
        try:
            return await asyncio.wait_for(request.read(), self._timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise errors.deadline_exceeded(
                f"Request body not received within {self._timeout_ms} ms"
            ) from None

    async def _predict(self, spec_args: tuple[str, str | None, str | None], body: bytes) -> Any:
        return await self._service.measured(
            "Predict", "REST", spec_args[0], lambda: self._predict_json(spec_args, body)
        )

    async def _predict_json(
        self, spec_args: tuple[str, str | None, str | None], body: bytes
    ) -> Any:
        parsed = _parse_json(body)
        if not isinstance(parsed, dict):
            raise errors.invalid_argument("Request body must be a JSON object")
        signature_name = parsed.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise errors.invalid_argument("'signature_name' key must be a string value.")
        request = predict_pb2.PredictRequest()
        _fill_model_spec(request.model_spec, *spec_args)
        request.model_spec.signature_name = signature_name
        signature = self._signature_inputs(request.model_spec, signature_name)
        input_specs = {alias: info.dtype for alias, info in signature.inputs.items()}
        try:
            decoded = rest_json.decode_predict_request(parsed, input_specs)
            for alias, array in decoded.inputs.items():
                dtype = input_specs.get(alias) or None
                request.inputs[alias].CopyFrom(tensors.make_tensor_proto(array, dtype=dtype))
        except ValueError as error:
            raise errors.invalid_argument(str(error)) from None
        _, _, outputs = await self._service.run_predict_arrays(request, self._deadline())
        return rest_json.encode_predict_response(outputs, decoded.row_format)

    def _signature_inputs(self, model_spec: Any, signature_name: str) -> Any:
        """TF Serving's GetInfoMap: the signature whose inputs give JSON values their dtypes."""
        record = self._service.manager.resolve(model_spec)
        name = inference.signature_key(signature_name)
        assert record.servable is not None
        signature = record.servable.signature_defs.get(name)
        if signature is None:
            raise errors.invalid_argument(
                f'Serving signature name: "{name}" not found in signature def'
            )
        return signature

    async def _classify(self, spec_args: tuple[str, str | None, str | None], body: bytes) -> Any:
        async def handle() -> Any:
            request = classification_pb2.ClassificationRequest()
            _fill_model_spec(request.model_spec, *spec_args)
            rest_examples.fill_input_from_json(_parse_json(body), request)
            response = await self._service.run_classify(request, self._deadline())
            return rest_examples.classification_result_json(response.result)

        return await self._service.measured("Classify", "REST", spec_args[0], handle)

    async def _regress(self, spec_args: tuple[str, str | None, str | None], body: bytes) -> Any:
        async def handle() -> Any:
            request = regression_pb2.RegressionRequest()
            _fill_model_spec(request.model_spec, *spec_args)
            rest_examples.fill_input_from_json(_parse_json(body), request)
            response = await self._service.run_regress(request, self._deadline())
            return rest_examples.regression_result_json(response.result)

        return await self._service.measured("Regress", "REST", spec_args[0], handle)

    async def _status(self, spec_args: tuple[str, str | None, str | None]) -> Any:
        request = get_model_status_pb2.GetModelStatusRequest()
        _fill_model_spec(request.model_spec, *spec_args)
        response = await self._service.get_model_status(request)
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)

    async def _metadata(self, spec_args: tuple[str, str | None, str | None]) -> Any:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        _fill_model_spec(request.model_spec, *spec_args)
        response = await self._service.get_model_metadata(request, entrypoint="REST")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        options = {
            "always_print_fields_with_no_presence": True,
            "preserving_proto_field_name": True,
        }
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_map, **options)},
        }


def build_app(
    service: InferenceService,
    *,
    timeout_ms: int,
    metrics: Any = None,
    monitoring: Any = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cors: bool = False,
) -> web.Application:
    """The aiohttp application: the Prometheus path (when enabled) and everything under /v1/."""
    app = web.Application(
        client_max_size=max_body_bytes or 2**31 - 1, middlewares=[cors_middleware(cors)]
    )
    if metrics is not None and monitoring is not None and monitoring.prometheus_config.enable:
        metrics_path = monitoring.prometheus_config.path

        async def prometheus(request: web.Request) -> web.Response:
            body, content_type = metrics.render()
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get(metrics_path, prometheus)
    api = RestApi(service, timeout_ms, max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app


async def start_rest_server(
    service: InferenceService,
    host: str,
    port: int,
    *,
    timeout_ms: int,
    metrics: Any = None,
    monitoring: Any = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_connections: int = 2048,
    idle_timeout_s: float = 15.0,
    cors: bool = False,
) -> tuple[web.AppRunner, int]:
    """Listen for REST on host:port; returns the runner (for cleanup) and the bound port."""
    app = build_app(
        service,
        timeout_ms=timeout_ms,
        metrics=metrics,
        monitoring=monitoring,
        max_body_bytes=max_body_bytes,
        cors=cors,
    )
    # keepalive_timeout also closes a connection whose first request headers never complete.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=idle_timeout_s
    )
    await runner.setup()
    # reuse_port off (in the site): a second server on the same port must fail, not share it.
    site = GuardedTCPSite(runner, host, port, max_connections=max_connections)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, site.bound_port
