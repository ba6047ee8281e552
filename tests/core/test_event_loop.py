"""core.event_loop: uvloop where installed, asyncio's own loop on request."""

from __future__ import annotations

import asyncio

import pytest

from core import event_loop

ENV = "DEEPCHAT_TFS_TEST_LOOP"


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run_uses_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop has no build for this platform")
    monkeypatch.delenv(ENV, raising=False)
    assert event_loop.run(_loop_type(), ENV) is uvloop.Loop


def test_run_keeps_asyncio_s_loop_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "asyncio")
    assert event_loop.loop_factory(ENV) is None
    assert issubclass(event_loop.run(_loop_type(), ENV), asyncio.BaseEventLoop)
