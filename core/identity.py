"""The facts every part of deepchat-tfs agrees on: its name, the demo model's name, its user dirs.

Each has one home here; the directories follow platformdirs (appauthor off on every platform).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "deepchat-tfs"
DEMO_MODEL_NAME = "deepchat_model"
# Bumped whenever the demo model's graph changes: an export with another revision is replaced.
DEMO_MODEL_REVISION = 6
DEMO_MODEL_REVISION_FILE = "REVISION"
REPORTS_DIR_ENV = "DEEPCHAT_TFS_REPORTS_DIR"


def data_dir() -> Path:
    """The user data dir: transcript, exports, reports and the demo model."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """The user config dir, searched for config.yaml after the working directory."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """The user cache dir: validated configurations (core.config.cache)."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    """The user log dir: the embedded server's log."""
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def reports_dir() -> Path:
    """Where bench and burst reports are kept ($DEEPCHAT_TFS_REPORTS_DIR overrides)."""
    override = os.environ.get(REPORTS_DIR_ENV)
    return Path(override) if override else data_dir() / "reports"


def demo_model_dir(model_name: str = DEMO_MODEL_NAME) -> Path:
    """Where the demo model is exported on first run."""
    return data_dir() / "models" / model_name
