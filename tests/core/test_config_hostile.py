"""Hostile or broken config files stop with one line naming the file, fast, with no traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config.loader import MAX_CONFIG_BYTES, ConfigError
from core.config.schema import load_config


def _error_for(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_an_alias_bomb_stops_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    bomb = tmp_path / "config.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    started = time.process_time()
    message = _error_for(bomb)
    assert message.startswith(f"{bomb}: expected a config file, got YAML whose aliases expand")
    assert time.process_time() - started < 5  # 9**10 values would take hours and all memory


def test_binary_and_control_characters_are_named_not_traced(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    assert _error_for(binary).startswith(f"{binary}: expected a readable UTF-8 YAML file")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"ui:\n  refresh_hz: 2\x00\n")
    assert _error_for(nul) == f"{nul}: expected a YAML text file, got binary data (NUL bytes)"
    control = tmp_path / "control.yaml"
    control.write_bytes(b"ui:\n  refresh_hz: 2\n\x01\x02\n")
    assert _error_for(control).startswith(f"{control}:")
    assert "invalid YAML" in _error_for(control)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 10))
    assert "expected a config file of at most 1024 KiB" in _error_for(huge)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("ui: " + "[" * 5000 + "]" * 5000 + "\n")
    message = _error_for(deep)
    assert message.startswith(f"{deep}")


def test_an_empty_model_list_says_what_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: []\n")
    assert _error_for(config) == (
        f"{config}:1: models: expected a list of model sections with at least 1, got an empty one"
    )
