"""A logging filter that lets a repeated line through a few times per window, then counts it.

A flood of equal failures (say, accept() failing once per refused connection) must not fill the
disk with tracebacks: each distinct line (logger, level, first line of the message template)
passes BURST times per WINDOW_S seconds; the rest are dropped and a count of them is added to the
next one let through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

BURST = 5
WINDOW_S = 10.0
_MAX_KEYS = 1024


class RepeatedLineFilter(logging.Filter):
    """Rate-limits records that share a logger, level and message template."""

    def __init__(
        self,
        burst: int = BURST,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [window start, records passed in it, records dropped since the last one passed]
        self._windows: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a record to write; a passing record mentions how many were dropped."""
        # The first line only: asyncio's reports add the socket (and its fd) on later lines.
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0])
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.window_s:
                dropped = int(window[2]) if window is not None else 0
                if len(self._windows) >= _MAX_KEYS and window is None:
                    self._windows.clear()
                window = [now, 0.0, 0.0]
                self._windows[key] = window
                if dropped:
                    window[2] = dropped
            if window[1] >= self.burst:
                window[2] += 1
                return False
            window[1] += 1
            dropped = int(window[2])
            window[2] = 0
        if dropped:
            record.msg = f"{record.msg} [{dropped} similar lines suppressed]"
        return True
