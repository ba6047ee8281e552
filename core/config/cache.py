"""Validated configurations remembered by what they were made from, so a start skips validation.

The key is the schema's own source, the config file's path and bytes, the working directory, the
DEEPCHAT_TFS_* variables and the command-line overrides: change any of them and the config is
validated again. Only configurations whose validity depends on nothing else are stored: a bearer
token variable (trust store, environment) or a file that must exist (TLS, labels, tokenizer)
always takes the full path. A bad config is never stored, so its file:line errors always show.

Nothing here imports pydantic until a stored entry is made into models (construct): the console
reads an entry (lookup) and draws its first frame before it loads the config models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

from core.config.source import ENV_PREFIX, find_config_file
from core.files import write_private
from core.identity import cache_dir as identity_cache_dir

if TYPE_CHECKING:
    from pydantic import BaseModel

CACHE_FORMAT = 2
CACHE_ENV = "DEEPCHAT_TFS_CONFIG_CACHE"
Model = TypeVar("Model", bound="BaseModel")
_SCHEMA_FILES = (
    "schema.py", "loader.py", "cache.py", "keys.py", "trust.py", "source.py", "errors.py"
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A stored configuration: its JSON dump and facts computed from it when it was stored.

    facts hold what the console needs before its first frame that only the models' methods
    compute (e.g. `uses_embedded_server`), so the first frame needs no models.
    """

    source: Path | None
    key: str
    dump: dict[str, Any]
    facts: dict[str, Any]


def lookup(
    path: str | Path | None,
    *,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
    allow_plaintext_token: bool,
    key_actions: Mapping[str, str] | None,
    cache_dir: Path,
) -> tuple[Path | None, str, Entry | None]:
    """The config file load_config reads, its cache key, and the stored entry (None: none)."""
    source = find_config_file(path)
    key = cache_key(source, env, ENV_PREFIX, overrides, allow_plaintext_token, key_actions)
    entry: Entry | None
    try:
        stored = json.loads((cache_dir / f"{key}.json").read_text())
        entry = Entry(source, key, dict(stored["config"]), dict(stored["facts"]))
        if not valid_on_inputs_alone(entry.dump):
            entry = None  # store() never writes one: not to be trusted
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        entry = None  # missing or unreadable: validate as usual
    return source, key, entry


def valid_on_inputs_alone(dump: Mapping[str, Any]) -> bool:
    """Whether a config (its JSON dump) is valid whatever the environment and the disk hold.

    A token variable depends on the trust store and the environment, a file path on the disk:
    such configs are validated at every start, never stored.
    """
    tfs = dump["model_serving"]["tensorflow_serving"]
    adapters = [model["adapter"] for model in dump["models"]]
    return (
        tfs.get("bearer_token_env") is None
        and tfs.get("tls") is None
        and all(a.get("labels_file") is None and a.get("tokenizer_file") is None for a in adapters)
    )


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


def load_cached(entry: Entry, root: type[Model]) -> Model | None:
    """The entry's configuration as models, built without validation; None if it does not fit."""
    try:
        return construct(root, entry.dump)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # an entry from another schema: validate as usual


def store(cache_dir: Path, key: str, config: BaseModel, facts: Mapping[str, Any]) -> None:
    """Remember a validated configuration and its facts under key (best effort)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob("*.json"):  # one entry: the config in use
            old.unlink(missing_ok=True)
        entry = {"config": config.model_dump(mode="json"), "facts": dict(facts)}
        write_private(cache_dir / f"{key}.json", json.dumps(entry))
    except OSError:
        pass


def construct(model: type[Model], data: Mapping[str, Any]) -> Model:
    """A model instance (nested sections too) from its JSON dump, trusted: no validation."""
    from core.config.loader import field_type, is_model

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
