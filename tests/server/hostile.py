"""Helpers for hostile-input tests: the server's RSS while it answers.

The hostile requests themselves are in benchmarks/hostile_requests.py, shared with the probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

MB = 2**20


@dataclass
class RssRecord:
    """The server's RSS before a block and the highest seen while it ran; its wall time."""

    before_mb: float = 0.0
    peak_mb: float = 0.0
    elapsed_s: float = 0.0

    @property
    def growth_mb(self) -> float:
        """How far the peak rose above the RSS before."""
        return self.peak_mb - self.before_mb


@contextmanager
def watch_rss(pid: int | None) -> Iterator[RssRecord]:
    """Sample the process's RSS every 10 ms while the block runs."""
    assert pid is not None
    process = psutil.Process(pid)
    record = RssRecord(before_mb=process.memory_info().rss / MB)
    record.peak_mb = record.before_mb
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            record.peak_mb = max(record.peak_mb, process.memory_info().rss / MB)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        yield record
    finally:
        record.elapsed_s = time.monotonic() - started
        time.sleep(0.05)
        stop.set()
        sampler.join()
