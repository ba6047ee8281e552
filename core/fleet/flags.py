"""The command-line flags naming the servers a fleet view reads: --target, --metrics, --prometheus.

One definition for `deepchat-tfs status` (cli/status.py) and the console (tui/main.py, which may
not import cli). Each command keeps its own words for what the servers are to it; the flags'
names, repetition, defaults and metavars are the same everywhere. Plain argparse and nothing else:
the console builds its parser before its first frame.
"""

from __future__ import annotations

# Already loaded by both callers; typing (for TYPE_CHECKING) would cost ~7 ms before the frame.
import argparse


def add_target_argument(parser: argparse.ArgumentParser, *, help: str) -> None:
    """--target HOST:PORT, repeatable: `args.target` is a list, empty when not given."""
    parser.add_argument("--target", action="append", default=[], metavar="HOST:PORT", help=help)


def add_metrics_argument(parser: argparse.ArgumentParser, *, default: str) -> None:
    """--metrics URL, repeatable, one per --target in its order: `args.metrics` is a list.

    default says where the URLs come from without the flag.
    """
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a replica's Prometheus metrics URL, repeated in the order of --target "
        f"(default: {default})",
    )


def add_prometheus_argument(parser: argparse.ArgumentParser, *, help: str) -> None:
    """--prometheus URL: `args.prometheus`, None when not given."""
    parser.add_argument("--prometheus", metavar="URL", help=help)
