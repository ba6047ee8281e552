"""The validated-config cache: same inputs reuse the config unvalidated; anything else validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import loader
from core.config.schema import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and user config dir with no config files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def forbid_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: loader.Layers) -> None:
        raise AssertionError("validated although the cache holds this config")

    monkeypatch.setattr(loader.Layers, "validate", fail)


def test_a_second_load_of_the_same_inputs_skips_validation(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = isolated / "cache"
    config_file = isolated / "config.yaml"
    config_file.write_text("ui:\n  refresh_hz: 2\nembedded:\n  model_base_path: models\n")
    env = {"DEEPCHAT_TFS_UI__LATENCY_WARN_MS": "50"}
    overrides = {"models[0].version": 3}
    fresh = load_config(config_file, env=env, overrides=overrides, cache_dir=cache)
    with monkeypatch.context() as patch:
        forbid_validation(patch)
        cached = load_config(config_file, env=env, overrides=overrides, cache_dir=cache)
    assert cached == fresh
    assert cached.config.ui.refresh_hz == 2.0 and cached.config.ui.latency_warn_ms == 50
    assert cached.config.models[0].version == 3
    assert cached.config.embedded.model_base_path == isolated / "models"
    # Another env var, flag or file content is another key: validated again.
    for changed in (
        {"env": {}},
        {"overrides": {"models[0].version": 4}},
    ):
        arguments = {"env": env, "overrides": overrides, **changed}
        assert load_config(config_file, cache_dir=cache, **arguments).config != fresh.config
    config_file.write_text("ui:\n  refresh_hz: 3\n")
    assert load_config(config_file, env=env, cache_dir=cache).config.ui.refresh_hz == 3


def test_a_bad_config_is_never_cached_and_always_shows_its_errors(isolated: Path) -> None:
    cache = isolated / "cache"
    config_file = isolated / "config.yaml"
    config_file.write_text("model_serving:\n  tensorflow_serving:\n    grpc_port: 85OO\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"config.yaml:3: .*grpc_port"):
            load_config(config_file, env={}, cache_dir=cache)
    assert not list(cache.glob("*.json"))


def test_a_config_naming_a_token_variable_is_validated_every_time(isolated: Path) -> None:
    cache = isolated / "cache"
    user_file = isolated / "xdg" / "deepchat-tfs" / "config.yaml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(
        "model_serving:\n  tensorflow_serving:\n    host: tfs.example\n"
        "    bearer_token_env: DEEPCHAT_TEST_TOKEN\n    tls: {}\n"
    )
    loaded = load_config(user_file, env={"DEEPCHAT_TEST_TOKEN": "t"}, cache_dir=cache)
    assert loaded.config.model_serving.tensorflow_serving.bearer_token_env == "DEEPCHAT_TEST_TOKEN"
    assert not list(cache.glob("*.json"))
    with pytest.raises(ConfigError, match="DEEPCHAT_TEST_TOKEN"):
        load_config(user_file, env={}, cache_dir=cache)


def test_a_cached_start_needs_neither_yaml_nor_the_built_schema(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.config.schema import Config, load_config\n"
        f"load_config('config.yaml', env={{}}, cache_dir=Path({str(tmp_path)!r}))\n"
        "print('yaml' in sys.modules, Config.__pydantic_complete__)\n"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["True", "True"]  # validated: YAML read, schema built
    second = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["False", "False"]


def test_a_cached_entry_naming_a_token_variable_is_not_trusted(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from core.config import cache

    cache_dir = isolated / "cache"
    key = cache.cache_key(None, {}, "DEEPCHAT_TFS_", {}, False)
    load_config(env={}, cache_dir=cache_dir)
    entry = json.loads((cache_dir / f"{key}.json").read_text())
    entry["config"]["model_serving"]["tensorflow_serving"]["bearer_token_env"] = "HOME"
    (cache_dir / f"{key}.json").write_text(json.dumps(entry))
    # Not by the console's fast start, which reads entries without the models...
    lookup = cache.lookup(
        None,
        env={},
        overrides={},
        allow_plaintext_token=False,
        key_actions=None,
        cache_dir=cache_dir,
    )
    assert lookup[1] == key and lookup[2] is None
    # ... nor by load_config.
    loaded = load_config(env={}, cache_dir=cache_dir)
    assert loaded.config.model_serving.tensorflow_serving.bearer_token_env is None
