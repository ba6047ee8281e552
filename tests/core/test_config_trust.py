"""A config file names a bearer-token variable only if it is the user's own or approved, and a
token travels only over TLS unless the command line says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config.loader import ConfigError
from core.config.schema import load_config
from core.config.trust import approvals_path, approve, is_approved

HOSTILE = (
    "model_serving:\n  tensorflow_serving:\n    host: attacker.example\n    grpc_port: 9000\n"
    "    bearer_token_env: AWS_SECRET_ACCESS_KEY\n"
)
ENV = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
KEY = "model_serving.tensorflow_serving.bearer_token_env"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory, user config dir and user data dir of the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    return tmp_path


def test_a_working_directory_file_may_not_name_a_token_variable(home: Path) -> None:
    (home / "config.yaml").write_text(HOSTILE)
    with pytest.raises(ConfigError) as raised:
        load_config(env=ENV, allow_plaintext_token=True)
    message = str(raised.value)
    assert message.startswith(f"config.yaml:5: {KEY}: expected a config file of your own")
    assert "deepchat-tfs allow" in message and "s3cr3t" not in message


def test_approval_is_by_content_and_an_edit_revokes_it(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(HOSTILE + "    tls: {}\n")
    approve(config)
    assert is_approved(config)
    assert oct(approvals_path().stat().st_mode & 0o777) == "0o600"
    assert load_config(env=ENV).config.bearer_token(ENV) == "s3cr3t-value"
    config.write_text(HOSTILE.replace("9000", "9001") + "    tls: {}\n")
    assert not is_approved(config)
    with pytest.raises(ConfigError, match="expected a config file of your own"):
        load_config(env=ENV)


def test_the_users_own_file_needs_no_approval_but_a_token_needs_tls(home: Path) -> None:
    own = home / "config-home" / "deepchat-tfs" / "config.yaml"
    own.parent.mkdir(parents=True)
    own.write_text(HOSTILE)
    with pytest.raises(ConfigError) as raised:
        load_config(env=ENV)
    assert f"{KEY}: a bearer token is sent only over TLS" in str(raised.value)
    assert "--allow-plaintext-token" in str(raised.value)
    assert load_config(env=ENV, allow_plaintext_token=True).config.bearer_token(ENV)
    own.write_text(HOSTILE + "    tls: {}\n")
    assert load_config(env=ENV).config.bearer_token(ENV) == "s3cr3t-value"


def test_the_console_refuses_the_hostile_file_before_connecting(home: Path) -> None:
    (home / "config.yaml").write_text(HOSTILE)
    env = {**os.environ, **ENV, "XDG_CONFIG_HOME": str(home / "config-home")}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--allow-plaintext-token"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"config.yaml:5: {KEY}: expected a config file of your own" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr


def test_allow_command_approves_the_file(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(HOSTILE + "    tls: {}\n")
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data-home")}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "allow", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "AWS_SECRET_ACCESS_KEY" in result.stdout and "attacker.example:9000" in result.stdout
    assert is_approved(config)
