"""TF Serving's error statuses: a gRPC status code with TF Serving's own message text."""

from __future__ import annotations

import grpc

# TF Serving's REST mapping from a status code to an HTTP status (http_server.cc, ToHTTPStatusCode).
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingStatus(Exception):
    """A failed request: the gRPC status code and TF Serving's message for it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The status code's name as TF Serving writes it, e.g. "NOT_FOUND"."""
        return str(self.code.name)

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers this error with."""
        return HTTP_STATUS_BY_CODE.get(self.code, 500)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"

    def __repr__(self) -> str:
        return f"ServingStatus({self.code_name}, {self.message!r})"


def invalid_argument(message: str) -> ServingStatus:
    """An INVALID_ARGUMENT status with the given message."""
    return ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingStatus:
    """A NOT_FOUND status with the given message."""
    return ServingStatus(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingStatus:
    """A FAILED_PRECONDITION status with the given message."""
    return ServingStatus(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingStatus:
    """An UNAVAILABLE status with the given message."""
    return ServingStatus(grpc.StatusCode.UNAVAILABLE, message)


def deadline_exceeded(message: str) -> ServingStatus:
    """A DEADLINE_EXCEEDED status with the given message."""
    return ServingStatus(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def internal(message: str) -> ServingStatus:
    """An INTERNAL status with the given message."""
    return ServingStatus(grpc.StatusCode.INTERNAL, message)


def unimplemented(message: str) -> ServingStatus:
    """An UNIMPLEMENTED status with the given message."""
    return ServingStatus(grpc.StatusCode.UNIMPLEMENTED, message)


def for_resource_error(error: BaseException) -> ServingStatus:
    """The plain status for a MemoryError (RESOURCE_EXHAUSTED) or a RecursionError."""
    if isinstance(error, RecursionError):
        return invalid_argument("The request nests values too deeply to be read")
    return ServingStatus(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "OOM when allocating the request's tensors: the server is out of memory for them",
    )


# TF Serving's text when a batch queue is full (shared_batch_scheduler.h).
BATCH_QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"


def status_from_tf_error(error: BaseException) -> ServingStatus:
    """The status for a TensorFlow OpError (or any other exception) raised by a model run."""
    error_code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error)
    if isinstance(error_code, int):
        for code in grpc.StatusCode:
            if code.value[0] == error_code:
                return ServingStatus(code, message)
    return ServingStatus(grpc.StatusCode.INTERNAL, message)
