"""Load over TF Serving's REST API: predict requests posted over keep-alive connections.

Requests are built once before the run (core.load.http1); a send writes bytes, parses the reply
and checks its status. The model check before a run is one aiohttp GET. HTTP statuses map back
to TF Serving's error codes (the inverse of its ToHTTPStatusCode).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from core.client.channel import tls_client_context
from core.client.serving import ModelSpec, ServingError
from core.load.generator import SendFunction

if TYPE_CHECKING:
    import aiohttp

    from core.load.http1 import Http1Pool

# TF Serving's HTTP status for each error code, read backwards; where two codes share a status,
# the one TF Serving returns more often is named.
ERROR_CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_code_for_status(status: int) -> str:
    """TF Serving's error code for an HTTP status (UNKNOWN for one it never sends)."""
    return ERROR_CODE_BY_HTTP_STATUS.get(status, "UNKNOWN")


class RestCallError(Exception):
    """A REST predict that did not answer 200; `code` is TF Serving's error code name.

    origin (core.client.errors): "server" when the server answered with an HTTP status,
    "transport" when the connection failed before an answer.
    """

    def __init__(self, code: str, origin: str = "server") -> None:
        super().__init__(code)
        self.code = code
        self.origin = origin


@dataclass(frozen=True)
class RestTarget:
    """A REST endpoint and the encoded predict bodies a run posts to it."""

    base_url: str
    predict_url: str
    bodies: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...] = ()
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    # Never shown: the headers may carry the bearer token.
    secret_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def model_path(model: ModelSpec) -> str:
    """TF Serving's REST path of a model: /v1/models/NAME[/versions/N | /labels/L]."""
    path = f"/v1/models/{quote(model.name, safe='')}"
    if model.version is not None:
        path += f"/versions/{model.version}"
    elif model.version_label is not None:
        path += f"/labels/{quote(model.version_label, safe='')}"
    return path


def predict_body(
    inputs: Mapping[str, np.ndarray], signature_name: str, raw_body: str | None = None
) -> bytes:
    """A REST predict body: the user's own JSON when given, else the inputs as instances."""
    from core.wire.rest_json import UNNAMED_INPUT, encode_predict_request

    if raw_body is not None:
        document: dict[str, Any] = json.loads(raw_body)
    elif len(inputs) == 1:
        # A single input goes unnamed, as TF Serving's docs send it.
        document = encode_predict_request({UNNAMED_INPUT: next(iter(inputs.values()))})
    else:
        document = encode_predict_request(inputs)
    if signature_name != "serving_default":
        document["signature_name"] = signature_name
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def ssl_context(target: RestTarget) -> ssl.SSLContext | None:
    """TLS for an https:// target: the CA file (or the system's roots) and a client certificate."""
    if not target.base_url.startswith("https://"):
        return None
    return tls_client_context(target.ca_file, target.cert_file, target.key_file)


def make_target(
    base_url: str,
    model: ModelSpec,
    bodies: Sequence[bytes],
    *,
    headers: Sequence[tuple[str, str]] = (),
    bearer_token: str | None = None,
    tls: Any = None,
) -> RestTarget:
    """A RestTarget for a base URL such as http://host:8501 (tls: core.client's TlsSettings)."""
    base = base_url.rstrip("/")
    secret = (("Authorization", f"Bearer {bearer_token}"),) if bearer_token else ()
    return RestTarget(
        base_url=base,
        predict_url=base + model_path(model) + ":predict",
        bodies=tuple(bodies),
        headers=tuple(headers),
        ca_file=str(tls.ca_file) if tls is not None and tls.ca_file else None,
        cert_file=str(tls.cert_file) if tls is not None and tls.cert_file else None,
        key_file=str(tls.key_file) if tls is not None and tls.key_file else None,
        server_name=tls.server_name_override if tls is not None else None,
        secret_headers=secret,
    )


def _session(target: RestTarget, timeout_s: float, connection_limit: int) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=connection_limit, ssl=ssl_context(target) or False, ttl_dns_cache=None
    )
    headers = {"Content-Type": "application/json", **dict(target.headers)}
    headers.update(target.secret_headers)
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        skip_auto_headers=("User-Agent",),
    )


async def check_model(target: RestTarget, model: ModelSpec, timeout_s: float) -> None:
    """GET the model's status: ServingError NOT_FOUND for a missing model, UNAVAILABLE if down."""
    import aiohttp

    url = target.base_url + model_path(model)
    session = _session(target, timeout_s, 1)
    try:
        async with session.get(url, server_hostname=target.server_name) as response:
            text = await response.text()
            if response.status != 200:
                try:
                    message = str(json.loads(text).get("error", text))
                except (ValueError, AttributeError):
                    message = text.strip()[:200]
                raise ServingError(error_code_for_status(response.status), message, origin="server")
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as error:
        raise ServingError(
            "UNAVAILABLE",
            f"cannot reach {target.base_url}: {error or type(error).__name__}",
            origin="transport",
        ) from None
    finally:
        await session.close()


async def rest_session(
    target: RestTarget, timeout_s: float, connection_limit: int
) -> tuple[Http1Pool, SendFunction]:
    """A keep-alive connection pool for a run and its send function (one connection open already).

    Each send writes a pre-built request (core.load.http1: an asyncio Protocol over httptools'
    parser) and returns its future: about half the CPU per request of an aiohttp session's post
    (docs/BENCHMARKS.md, the peers section).
    """
    from core.load.http1 import Http1Pool, Http1TransportError, build_request

    def outcome(status: int, failure: BaseException | None) -> BaseException | None:
        if isinstance(failure, Http1TransportError):
            # Refused, reset or closed before an answer (a timeout is TimeoutError: the client's).
            return RestCallError("UNAVAILABLE", origin="transport")
        if failure is not None:
            return failure
        return None if status == 200 else RestCallError(error_code_for_status(status))

    pool = Http1Pool(
        target.base_url,
        timeout_s=timeout_s,
        limit=connection_limit,
        ssl_context=ssl_context(target),
        server_name=target.server_name,
        outcome=outcome,
    )
    headers = [("Content-Type", "application/json"), *target.headers, *target.secret_headers]
    requests = [build_request("POST", target.predict_url, headers, body) for body in target.bodies]
    # A send's future settles with None (TF Serving's REST predict does not say which version
    # answered) or fails with RestCallError or TimeoutError; core.load.generator takes it as is.
    send: SendFunction = pool.sender(requests)

    # Open a connection before the clock starts; any answer will do.
    get_models = build_request("GET", target.base_url + "/v1/models", headers[1:])
    try:
        await pool.request(get_models)
    except (RestCallError, TimeoutError):
        pass
    return pool, send
