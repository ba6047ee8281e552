"""Which event loop a process runs: uvloop's where it is installed, else asyncio's own.

Load workers and the embedded server spend most of their CPU per request in the grpc.aio call
path and the loop under it; uvloop takes a share of that off (docs/BENCHMARKS.md). Each user
names an environment variable that, set to "asyncio", keeps asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(env_var: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's new_event_loop where it is installed, else None (asyncio's own loop).

    None also when the environment variable env_var is "asyncio".
    """
    if os.environ.get(env_var, "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T], env_var: str) -> T:
    """asyncio.run(main) on the loop loop_factory(env_var) picks (asyncio's own before 3.11,
    which has no asyncio.Runner)."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory(env_var)) as runner:
            return runner.run(main)
    return asyncio.run(main)
