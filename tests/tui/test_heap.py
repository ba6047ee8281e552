"""tui.heap: with the thresholds pinned, a freed large block leaves large blocks mmapped."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

from core.metrics.latency import LatencyRecorder
from tui.heap import DEFAULT_THRESHOLD


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mapped_blocks() -> int:
    """How many blocks glibc serves with their own mapping right now."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblks)


_PROBE = """
import numpy as np
from tests.tui.test_heap import _mapped_blocks
from tui.heap import pin_malloc_thresholds

assert pin_malloc_thresholds()
# Unpinned, freeing this 16 MiB block raises glibc's mmap threshold to 16 MiB, and the
# 8 MiB block below would be carved from the heap (and its space kept once freed).
block = np.ones(16 * 2**20, dtype=np.uint8)
del block
before = _mapped_blocks()
after_free = np.ones(8 * 2**20, dtype=np.uint8)
during = _mapped_blocks()
del after_free
print(before, during, _mapped_blocks())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_after_a_large_block_is_freed_the_next_large_one_still_gets_its_own_mapping() -> None:
    _mapped_blocks()  # skips where glibc has no mallinfo2
    # In a fresh interpreter: in this one, free heap space left by earlier tests (before any
    # pinning) can serve a large block without a new mapping, whatever the thresholds.
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    before, during, after = map(int, probe.stdout.split())
    assert (during, after) == (before + 1, before)
    # A latency histogram is above the threshold: it too gets (and returns) its own mapping.
    assert LatencyRecorder().counts().nbytes > DEFAULT_THRESHOLD
