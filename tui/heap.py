"""The console process's malloc settings (glibc): large blocks always go back to the system.

glibc serves a block of 128 KiB or more with its own mmap, unmapped when freed, but each time
such a block is freed it raises that threshold to the block's size (up to 32 MiB), and from
then on blocks that size come from the heap. The console's latency histograms are 184 KiB
(23,552 buckets): after the first one is freed, later ones (a second's stats, each burst
worker's delta decoded four times a second) were carved from the heap between small long-lived
objects, and the holes they left were kept: with the thresholds left to glibc the console's RSS
was 3.6 MB higher at the end of bench_console_memory's 60 s burst, 2.5 MB of it free heap
(mallinfo2) that malloc_trim would hand back.

pin_malloc_thresholds() sets the two thresholds to glibc's own defaults (128 KiB), which turns
the adjustment off. The cost: a fresh mapping, and its page faults, for each such block (a
worker delta's decode 31 -> 150 us); during that 1,000 req/s burst the console used 0.5 % of a
core more (3.67 s of CPU in 50 s instead of 3.41 s, one run each). Elsewhere than glibc (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h) and glibc's default for both thresholds.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 128 * 1024

_pinned: bool | None = None


def pin_malloc_thresholds(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds at threshold bytes; whether it applied (once)."""
    global _pinned
    if _pinned is None:
        _pinned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):
                return False  # not glibc (e.g. musl without mallopt)
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            _pinned = bool(
                mallopt(M_MMAP_THRESHOLD, threshold) and mallopt(M_TRIM_THRESHOLD, threshold)
            )
    return _pinned
