"""Where a session run happens: inline on the event loop when it is short, else a worker thread.

Handing a run to a thread pool costs more CPU than a small model's whole run (a queue put that
wakes a thread, a GIL handoff, a self-pipe write that wakes the loop: ~0.2-0.4 ms on a 2-core
machine against ~0.03 ms for half_plus_two). TF Serving runs each request on the gRPC thread that
received it; the Python equivalent for a short run is the event loop itself. Each signature's
recent run time is tracked; runs expected under INLINE_BUDGET_S with small inputs stay inline, the
rest (and every signature's first runs, whose cost is unknown) go to the pool, so a slow model
never holds the loop for long.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

# A run expected to take less than this runs inline on the event loop.
INLINE_BUDGET_S = 0.0005
# Inputs larger than this always go to a thread: a run's cost can grow with its input.
INLINE_MAX_INPUT_BYTES = 64 * 1024
# Runs measured in a thread before a signature may run inline.
MIN_SAMPLES = 3
# Weight of the newest run in the moving average.
SMOOTHING = 0.2


class RunPlacement:
    """Chooses inline or thread for each run from the signature's moving-average run time."""

    def __init__(self, *, budget_s: float = INLINE_BUDGET_S, enabled: bool = True) -> None:
        self._budget_s = budget_s
        self._enabled = enabled
        # key -> (runs seen, moving average of run seconds)
        self._estimates: dict[Hashable, tuple[int, float]] = {}

    def inline(self, key: Hashable, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether this run should happen on the event loop."""
        return self.short(key) and input_bytes(inputs) <= INLINE_MAX_INPUT_BYTES

    def short(self, key: Hashable) -> bool:
        """Whether runs under key are known to be short (inputs aside)."""
        if not self._enabled:
            return False
        seen, average_s = self._estimates.get(key, (0, 0.0))
        return seen >= MIN_SAMPLES and average_s < self._budget_s

    def record(self, key: Hashable, run_s: float) -> None:
        """Fold one measured run time into the signature's average."""
        seen, average_s = self._estimates.get(key, (0, run_s))
        self._estimates[key] = (seen + 1, average_s + SMOOTHING * (run_s - average_s))

    def forget(self, servable_id: int) -> None:
        """Drop the estimates of an unloaded servable (keys start with its id)."""
        for key in [key for key in self._estimates if _servable_id(key) == servable_id]:
            del self._estimates[key]


def input_bytes(inputs: Mapping[str, np.ndarray]) -> int:
    """The bytes a run's inputs hold (an object element, e.g. a string, counted as 64)."""
    size = 0
    for array in inputs.values():
        size += array.nbytes if array.dtype != object else 64 * array.size
    return size


def _servable_id(key: Hashable) -> object:
    return key[0] if isinstance(key, tuple) and key else None
