"""Validated configurations remembered by what they were made from, so a start skips validation.

The key is the schema's own source, the config file's path and bytes, the working directory, the
DEEPCHAT_TFS_* variables and the command-line overrides: change any of them and the config is
validated again. Only configurations whose validity depends on nothing else are stored: a bearer
token variable (trust store, environment) or a file that must exist (TLS, labels, tokenizer)
always takes the full path. A bad config is never stored, so its file:line errors always show.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel

from core.config.loader import field_type, is_model
from core.files import write_private
from core.identity import cache_dir as identity_cache_dir

CACHE_FORMAT = 1
CACHE_ENV = "DEEPCHAT_TFS_CONFIG_CACHE"
Model = TypeVar("Model", bound=BaseModel)
_SCHEMA_FILES = ("schema.py", "loader.py", "cache.py", "keys.py", "trust.py")


def cache_key(
    source: Path | None,
    env: Mapping[str, str],
    env_prefix: str,
    overrides: Mapping[str, object],
    allow_plaintext_token: bool,
    key_actions: Mapping[str, str] | None = None,
) -> str:
    """A digest of everything a validated configuration depends on."""
    digest = hashlib.sha256(f"format {CACHE_FORMAT}\0cwd {Path.cwd()}\0".encode())
    here = Path(__file__).parent
    for name in _SCHEMA_FILES:
        digest.update((here / name).read_bytes())
    if source is not None:
        digest.update(f"\0file {source.resolve()}\0".encode())
        digest.update(source.read_bytes())
    relevant_env = sorted(
        (k, v) for k, v in env.items() if k.startswith(env_prefix) and k != CACHE_ENV
    )
    extra = {
        "env": relevant_env,
        "overrides": overrides,
        "plaintext": allow_plaintext_token,
        "key_actions": key_actions,  # a config is reused only under the checks it passed
    }
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def load_cached(cache_dir: Path, key: str, root: type[Model]) -> Model | None:
    """The stored configuration for key, built without validation; None when there is none."""
    try:
        data = json.loads((cache_dir / f"{key}.json").read_text())
        return construct(root, data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing or unreadable: validate as usual


def store(cache_dir: Path, key: str, config: BaseModel) -> None:
    """Remember a validated configuration under key (best effort: a read-only disk is fine)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob("*.json"):  # one entry: the config in use
            old.unlink(missing_ok=True)
        write_private(cache_dir / f"{key}.json", json.dumps(config.model_dump(mode="json")))
    except OSError:
        pass


def construct(model: type[Model], data: Mapping[str, Any]) -> Model:
    """A model instance (nested sections too) from its JSON dump, trusted: no validation."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = data[name]
        annotation = field_type(field)[0]
        if value is None:
            pass
        elif is_model(annotation):
            value = construct(annotation, value)
        elif get_origin(annotation) is list and is_model(get_args(annotation)[0]):
            value = [construct(get_args(annotation)[0], item) for item in value]
        elif annotation is Path:
            value = Path(value)
        values[name] = value
    return model.model_construct(**values)


def cache_dir_from_env(env: Mapping[str, str]) -> Path | None:
    """Where the cache lives: the user cache dir, or DEEPCHAT_TFS_CONFIG_CACHE (`off`: none)."""
    setting = env.get(CACHE_ENV, "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    return Path(setting) if setting else identity_cache_dir() / "validated-config"
