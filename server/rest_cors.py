"""CORS for the REST API as tensorflow_model_server does it (http_server.cc).

An OPTIONS request under /v1/ is a CORS preflight: 200 with an empty body when its Origin header
names an http(s) origin, otherwise 400 ("Origin header is missing in CORS preflight"). With
--rest_api_enable_cors_support every /v1/ response also carries Access-Control-Allow-Origin: *,
-Methods: POST, GET and -Headers: Content-Type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
_API_PATH = re.compile(r"(?i)/v1/.*")
_HTTP_ORIGIN = re.compile(r"https?://")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def cors_middleware(enabled: bool) -> Middleware:
    """An aiohttp middleware answering preflights and, when enabled, adding the CORS headers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _API_PATH.fullmatch(request.raw_path.split("?", 1)[0]):
            return await handler(request)
        if request.method == "OPTIONS":
            has_origin = bool(_HTTP_ORIGIN.search(request.headers.get("Origin", "")))
            response: web.StreamResponse = web.Response(status=200 if has_origin else 400)
        else:
            response = await handler(request)
        if enabled:
            response.headers.update(CORS_HEADERS)
        return response

    return middleware
