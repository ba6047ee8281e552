"""Keeps Python's cyclic garbage collector from pausing requests over TensorFlow's objects.

Importing TensorFlow and loading SavedModels leaves ~270,000 long-lived objects; the first full
collection after start-up walks them all while holding the GIL (160-280 ms on a 2-core machine),
stalling every request in flight. Before the server reports ready, one collection runs and the
survivors are frozen (gc.freeze): later collections skip them, and reference counting still frees
them. When a version unloads, its graph's reference cycles are only reachable by the collector,
so they are unfrozen and collected once, then the rest is frozen again.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect garbage, then freeze every surviving object out of later collections."""
    gc.collect()
    gc.freeze()


def release_unloaded() -> None:
    """Let the collector reclaim frozen objects that became garbage (an unloaded version)."""
    gc.unfreeze()
    settle()
