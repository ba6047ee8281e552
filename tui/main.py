"""Entry points of the console: `deepchat-tfs` and `deepchat-tfs chat`.

Imports stay inside the functions so `deepchat-tfs --help` never loads Textual or gRPC.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tui.options import ConsoleOptions


class Choices(NamedTuple):
    """What the command line chose besides the config (build_options' keywords)."""

    targets: tuple[str, ...]
    model_name: str | None
    signature_name: str | None
    data_dir: Path | None
    debug: bool


def _parser(prog: str, description: str, *, chat: bool) -> argparse.ArgumentParser:
    # Imported here, as everything else: `import tui.main` stays as light as `deepchat-tfs --help`.
    from core.fleet.flags import add_metrics_argument, add_prometheus_argument, add_target_argument

    parser = argparse.ArgumentParser(prog=prog, description=description)
    if chat:
        add_target_argument(
            parser, help="a TF Serving gRPC endpoint; repeat for replicas (default: the config's)"
        )
        parser.add_argument("--model", metavar="NAME", help="model name to chat with")
        parser.add_argument("--signature", metavar="S", help="signature name (serving_default)")
    add_metrics_argument(parser, default="each target's host, rest_port and metrics_path")
    add_prometheus_argument(
        parser, help="read the servers' figures from this Prometheus server (PromQL) instead"
    )
    parser.add_argument("--config", type=Path, metavar="F", help="config file (config.yaml)")
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="where the transcript and exports live"
    )
    parser.add_argument(
        "--allow-plaintext-token",
        action="store_true",
        help="send the bearer token even without TLS (never settable from a file)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Open the console on the configured target; returns the exit code."""
    parser = _parser(
        "deepchat-tfs", "Open the console on the configured target (config.yaml).", chat=False
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return _run(args, targets=(), model_name=None, signature_name=None)


def chat_main(argv: Sequence[str] | None = None) -> int:
    """Open the console against given servers and model; returns the exit code."""
    parser = _parser(
        "deepchat-tfs chat", "Open the console against given TF Serving targets.", chat=True
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return _run(
        args, targets=tuple(args.target), model_name=args.model, signature_name=args.signature
    )


def _run(
    args: argparse.Namespace,
    *,
    targets: tuple[str, ...],
    model_name: str | None,
    signature_name: str | None,
) -> int:
    """Load the config (errors print before anything is drawn), then run the app."""
    import gc

    # No cyclic collections while the console starts: what it loads and builds until the first
    # frame (Textual, the widgets, their styles) lives until exit, and some hundred collections
    # walking it were a tenth of the time to the first frame. The app turns the collector back
    # on once that frame is out (DeepChatApp.first_frame_drawn).
    gc.disable()
    try:
        return _run_console(args, targets, model_name, signature_name)
    finally:
        gc.enable()


def _run_console(
    args: argparse.Namespace,
    targets: tuple[str, ...],
    model_name: str | None,
    signature_name: str | None,
) -> int:
    import os

    from core.config.cache import cache_dir_from_env
    from core.config.errors import ConfigError
    from tui.keys import default_keys

    # Targets and metrics URLs go through the config loader, which validates them like the
    # file's own.
    section = "model_serving.tensorflow_serving"
    overrides: dict[str, object] = {f"{section}.targets": list(targets)} if targets else {}
    if args.metrics:
        overrides[f"{section}.metrics_urls"] = list(args.metrics)
    if args.prometheus:
        overrides[f"{section}.prometheus_url"] = args.prometheus
    choices = Choices(targets, model_name, signature_name, args.data_dir, args.debug)
    cache_dir = cache_dir_from_env(os.environ)
    try:
        options = _cached_options(args, overrides, cache_dir, choices)
        if options is None:
            from core.config.schema import load_config
            from tui.options import build_options

            loaded = load_config(
                args.config,
                overrides=overrides,
                allow_plaintext_token=args.allow_plaintext_token,
                key_actions=default_keys(),
                cache_dir=cache_dir,
            )
            options = build_options(loaded.config, **choices._asdict())
    except (ConfigError, ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"deepchat-tfs: {error}", file=sys.stderr)
        return 2

    from tui.app import DeepChatApp

    app = DeepChatApp(options)
    app_ended = threading.Event()
    if sys.__stdin__ is not None and sys.__stdin__.isatty():
        from tui.terminal_watch import watch_terminal

        watch_terminal(sys.__stdin__.fileno(), app_ended)
    try:
        app.run()
    finally:
        app_ended.set()
        # Whatever ended the app (quit, Ctrl-C, a crash), the embedded server must not outlive it.
        if app.session is not None:
            app.session.kill_server_now()
    return int(app.return_code or 0)


def _cached_options(
    args: argparse.Namespace,
    overrides: dict[str, object],
    cache_dir: Path | None,
    choices: Choices,
) -> ConsoleOptions | None:
    """The options from a config validated before from the same inputs, without loading the
    config models (pydantic) before the first frame; None when there is no such config."""
    import os

    if cache_dir is None:
        return None
    from core.config.cache import lookup
    from tui.keys import default_keys
    from tui.options import options_from_cache

    _, _, entry = lookup(
        args.config,
        env=os.environ,
        overrides=overrides,
        allow_plaintext_token=args.allow_plaintext_token,
        key_actions=default_keys(),
        cache_dir=cache_dir,
    )
    if entry is None:
        return None
    try:
        return options_from_cache(entry, **choices._asdict())
    except (KeyError, TypeError, AttributeError):
        return None  # an entry this version cannot read: load the config as usual
