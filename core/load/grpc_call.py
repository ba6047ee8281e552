"""A grpc.aio unary call settled as a future by callbacks: no task or coroutine of bench's own.

grpc.aio runs each unary call in a task of its own; awaiting the call from another task costs a
second task and its steps per request. PendingCall instead drives the call's awaitable from the
done callback of whatever it waits on (what a task would do), so a load worker's only per-request
objects are gRPC's own and this future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import grpc.aio

from core.client.serving import served_version


class PendingCall(asyncio.Future[int | None]):
    """The served model version of one grpc.aio Predict call, or the call's error.

    Cancelling it cancels the call. Errors are what awaiting the call raises (AioRpcError).
    """

    __slots__ = ("_call", "_steps")

    def __init__(self, call: grpc.aio.UnaryUnaryCall) -> None:
        super().__init__()
        self._call = call
        self._steps: Generator[Any, None, Any] = call.__await__()
        self._step()

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the call and this future."""
        self._call.cancel()
        return super().cancel(msg)

    def _step(self, _waited: object = None) -> None:
        if self.done():
            return
        try:
            waited = self._steps.send(None)
        except StopIteration as stop:
            self.set_result(served_version(stop.value))
        except asyncio.CancelledError:
            super().cancel()
        except Exception as error:
            self.set_exception(error)
        else:
            if isinstance(waited, asyncio.Future):
                waited.add_done_callback(self._step)
            else:  # a bare yield: step again on the next loop iteration
                self.get_loop().call_soon(self._step)
