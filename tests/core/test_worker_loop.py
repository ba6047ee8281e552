"""What a load worker runs on: its event loop and the gRPC settings it inherits."""

from __future__ import annotations

import asyncio

import pytest

from core.load.burst import WORKER_GRPC_EXPERIMENTS, worker_environment
from core.load.worker import LOOP_ENV, loop_factory


def test_workers_run_on_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop has no build for this platform")
    monkeypatch.delenv(LOOP_ENV, raising=False)
    factory = loop_factory()
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()


def test_asyncio_s_own_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert loop_factory() is None  # asyncio.Runner's default loop


def test_workers_take_the_cheaper_grpc_client_path_unless_told_otherwise() -> None:
    environment = worker_environment({"PATH": "/bin"})
    assert environment == {"PATH": "/bin", "GRPC_EXPERIMENTS": WORKER_GRPC_EXPERIMENTS}
    mine = worker_environment({"GRPC_EXPERIMENTS": "event_engine_client"})
    assert mine["GRPC_EXPERIMENTS"] == "event_engine_client"
