"""`deepchat-tfs status` usage: exit 2 on a command line that cannot run, 1 when one is down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main as deepchat_main
from cli.status import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "127.0.0.1:1", "--window", "0"], "--window 0.0: expected seconds > 0"),
        (["--target", "a:1", "--target", "b:2", "--metrics", "http://a:9/m"], "one per target"),
        (["--target", "a:1", "--metrics", "a:9/m"], "expected http://HOST:PORT/PATH"),
        (["--target", "unix:/tmp/x.sock"], "network address"),
        (["--target", "a:1", "--prometheus", "localhost:9090"], "expected http://HOST:PORT"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_and_name_the_problem(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_without_targets_the_embedded_default_is_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here: the built-in default, embedded
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert deepchat_main(["status"]) == 2
    err = capsys.readouterr().err
    assert "embedded server, which status does not start" in err
    assert "no replica is reachable" in err


def test_a_down_replica_exits_1_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "127.0.0.1:1", "--window", "0.2", "--json", "--model", "m"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["replicas"][0]["target"] == "127.0.0.1:1"
    assert report["replicas"][0]["up"] is False
    assert "UNAVAILABLE" in report["replicas"][0]["error"]
    assert report["fleet"]["qps"] is None  # nothing measured: unknown, not 0


def test_prometheus_alone_finds_the_replicas_and_says_when_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["--prometheus", "http://127.0.0.1:1", "--json"]) == 1  # nothing found: not all up
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["replicas"] == []
    assert report["problems"] and "127.0.0.1:1" in report["problems"][0]
