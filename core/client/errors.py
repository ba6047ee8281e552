"""What a failed call means: TF Serving's status code for each client-side failure.

Codes are gRPC status code names, the ones TF Serving returns, so a user reads the same code
whether the server or this client gave up.
"""

from __future__ import annotations

import asyncio

from core.client.batcher import BatcherFull
from core.client.serving import ServingError

# Codes that mean "the server cannot be reached" rather than "the server said no".
UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"})


def is_unreachable(code: str) -> bool:
    """Whether a status code means the server could not be reached (retry later)."""
    return code in UNREACHABLE_CODES


def call_status(error: BaseException) -> tuple[str, str] | None:
    """(code, message) for a failed call; None for an error that is not a call's failure."""
    if isinstance(error, ServingError):
        return error.code, error.message
    if isinstance(error, BatcherFull):
        return "RESOURCE_EXHAUSTED", str(error) or "the chat queue is full"
    if isinstance(error, asyncio.TimeoutError):
        return "DEADLINE_EXCEEDED", "no answer before the deadline"
    if isinstance(error, ValueError):
        return "INVALID_ARGUMENT", str(error)
    return None
