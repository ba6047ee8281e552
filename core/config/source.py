"""Which config file the console reads, and the prefix of its environment variables.

No pydantic here: the cached-config fast start (core.config.cache.lookup) finds the file without
loading the schema.
"""

from __future__ import annotations

from pathlib import Path

from core.config.errors import ConfigError
from core.identity import config_dir

CONFIG_FILE_NAME = "config.yaml"
ENV_PREFIX = "DEEPCHAT_TFS_"


def config_search_paths() -> list[Path]:
    """The files tried in order when no --config is given."""
    user_dir = config_dir()
    return [Path.cwd() / CONFIG_FILE_NAME, user_dir / CONFIG_FILE_NAME]


def find_config_file(path: str | Path | None = None) -> Path | None:
    """The given file (which must exist), else the first of config_search_paths() that exists."""
    if path is None:
        return next((found for found in config_search_paths() if found.is_file()), None)
    given = Path(path).expanduser()
    if not given.is_file():
        found = "a directory" if given.is_dir() else "no such file"
        raise ConfigError([f"{path}: expected an existing config file, got {found}"])
    return given
