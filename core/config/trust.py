"""Which config files may name a bearer-token variable: the user's own, or ones they approved.

A config.yaml in the working directory (or a --config from elsewhere) could otherwise send any
environment variable to any host. Approval is remembered by the file's SHA-256, as direnv's
`allow` does: an edited file needs approving again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.files import write_private
from core.identity import config_dir, data_dir

APPROVALS_FILE_NAME = "approved-configs.json"


def approvals_path() -> Path:
    """Where approvals are kept (private, in the user data dir)."""
    return data_dir() / APPROVALS_FILE_NAME


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_users_own(path: Path) -> bool:
    """Whether the file lives in the user's config dir, which only the user writes."""
    try:
        path.resolve().relative_to(config_dir().resolve())
    except ValueError:
        return False
    return True


def _approvals() -> dict[str, str]:
    try:
        data = json.loads(approvals_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def is_approved(path: Path) -> bool:
    """Whether this file, as it is now, was approved."""
    return _approvals().get(str(path.resolve())) == file_digest(path)


def approve(path: Path) -> str:
    """Remember this file, as it is now, as approved; returns its digest."""
    approvals = _approvals()
    digest = file_digest(path)
    approvals[str(path.resolve())] = digest
    write_private(approvals_path(), json.dumps(approvals, indent=2, sort_keys=True) + "\n")
    return digest


def may_name_token_variable(path: Path) -> bool:
    """Whether a config file may name the bearer-token variable."""
    return is_users_own(path) or is_approved(path)
