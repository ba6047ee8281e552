"""`deepchat-tfs allow FILE`: approve a config file to name a bearer-token variable."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Approve the file as it is now; an edited file needs approving again."""
    parser = argparse.ArgumentParser(
        prog="deepchat-tfs allow",
        description="Approve a config file (as it is now) to name a bearer-token variable. "
        "Files in your own config dir need no approval; any edit revokes it.",
    )
    parser.add_argument("config", type=Path, help="the config file to approve")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    from core.config.loader import ConfigError, read_yaml
    from core.config.trust import approvals_path, approve

    path: Path = args.config
    if not path.is_file():
        print(f"deepchat-tfs allow: {path}: expected an existing config file", file=sys.stderr)
        return 2
    try:
        data, _, _ = read_yaml(path, str(path))
    except ConfigError as error:
        print(f"deepchat-tfs allow: {error}", file=sys.stderr)
        return 2
    serving = (data or {}).get("model_serving", {}) if isinstance(data, dict) else {}
    tfs = serving.get("tensorflow_serving", {}) if isinstance(serving, dict) else {}
    tfs = tfs if isinstance(tfs, dict) else {}
    where = tfs.get("targets") or f"{tfs.get('host', 'embedded')}:{tfs.get('grpc_port', 8500)}"
    digest = approve(path)
    print(
        f"approved {path} (sha256 {digest[:12]}...): it names the token variable "
        f"{tfs.get('bearer_token_env') or '(none)'}, sent to {where}; kept in {approvals_path()}"
    )
    return 0
