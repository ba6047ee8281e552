"""Registers generated gRPC servicers so that an undecodable request gets INVALID_ARGUMENT.

grpc.aio answers a request whose bytes do not parse with UNKNOWN "Unexpected <class
'...DecodeError'>". Here each method's deserializer hands such bytes on as an Undecodable
marker, and the method answers INVALID_ARGUMENT naming the message type it expected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Undecodable:
    """Request bytes that did not parse as the method's request message."""

    size: int


class _Capture:
    """Stands in for a server to collect the handlers a generated add_*_to_server registers."""

    def __init__(self) -> None:
        self.generic_handlers: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Keep the generic handlers (every generated add_*_to_server calls this)."""
        self.generic_handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Ignored: the generic handlers carry the same methods."""


@dataclass(frozen=True)
class _CallDetails:
    method: str
    invocation_metadata: tuple[Any, ...] = ()


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:
            return Undecodable(len(raw))

    return parse


def _checked(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Any], what: str
) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    async def method(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Failed to parse the request: its {request.size} bytes are not a valid {what}",
            )
        return await behavior(request, context)

    return method


def add_servicer(
    add_to_server: Callable[[Any, Any], None],
    servicer: Any,
    server: grpc.aio.Server,
    service_descriptor: Any,
) -> None:
    """Register servicer as add_to_server would, with request parsing errors made plain."""
    capture = _Capture()
    add_to_server(servicer, capture)
    service = service_descriptor.full_name
    handlers = {}
    for method in service_descriptor.methods:
        details = _CallDetails(f"/{service}/{method.name}")
        handler = next(
            (
                found
                for found in (generic.service(details) for generic in capture.generic_handlers)
                if found is not None
            ),
            None,
        )
        if handler is None:
            continue
        if handler.unary_unary is not None and handler.request_deserializer is not None:
            handler = handler._replace(
                request_deserializer=_lenient(handler.request_deserializer),
                unary_unary=_checked(handler.unary_unary, method.input_type.full_name),
            )
        handlers[method.name] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
