"""Environment a subcommand starts with (cli.main.SUBCOMMAND_ENVIRONMENT)."""

from __future__ import annotations

import os

import pytest

import cli.main

SEEN: list[str | None] = []


def record_environment(argv: list[str]) -> int:
    """Stands in for a subcommand: notes what GRPC_EXPERIMENTS it started with."""
    SEEN.append(os.environ.get("GRPC_EXPERIMENTS"))
    return 0


@pytest.fixture
def probed_serve(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    monkeypatch.setitem(cli.main.SUBCOMMANDS, "serve", f"{__name__}:record_environment")
    monkeypatch.setitem(cli.main.SUBCOMMANDS, "bench", f"{__name__}:record_environment")
    SEEN.clear()
    return SEEN


def test_serve_starts_on_the_iomgr_listener(
    probed_serve: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    assert cli.main.main(["serve", "--port=1"]) == 0
    assert probed_serve == ["-event_engine_listener"]


def test_a_users_own_setting_wins_and_other_commands_get_none(
    probed_serve: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRPC_EXPERIMENTS", "event_engine_listener")
    cli.main.main(["serve"])
    monkeypatch.delenv("GRPC_EXPERIMENTS")
    cli.main.main(["bench"])
    assert probed_serve == ["event_engine_listener", None]
