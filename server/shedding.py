"""Load shedding for the unbatched path: a bound on requests running or queued for a run.

The batching path sheds on its own (a full queue answers UNAVAILABLE at once, as TF Serving's
batch scheduler does when max_enqueued_batches is reached); without batching nothing else would
stop requests from queueing for the session threads until their deadlines pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from server import errors

# Requests allowed per session thread (running plus queued) when no bound is given.
DEFAULT_INFLIGHT_PER_THREAD = 16


class InflightLimit:
    """Counts requests inside the unbatched executor; past the bound they are shed at once."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0
        self.shed = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one in-flight slot for the block; UNAVAILABLE when none is free.

        Callers run on the event loop thread, so the counter needs no lock.
        """
        if self.inflight >= self.max_inflight:
            self.shed += 1
            raise errors.unavailable(
                f"Server overloaded: {self.inflight} requests are running or queued and "
                f"--max_inflight_requests is {self.max_inflight}; retry later"
            )
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1


def default_max_inflight(session_threads: int) -> int:
    """The bound used when --max_inflight_requests is 0."""
    return DEFAULT_INFLIGHT_PER_THREAD * max(1, session_threads)
