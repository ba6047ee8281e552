"""The console's entries in the command palette, offered through App.get_system_commands.

Plain functions of what they need (no provider class that has to find the app again): each entry
runs a slash command line, fills the prompt, or runs an action by name.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from textual.app import SystemCommand

from tui.options import ChatModel


def console_commands(
    *,
    run_line: Callable[[str], object],
    prefill: Callable[[str], object],
    run_action: Callable[[str], object],
    models: Sequence[ChatModel],
    versions: Sequence[int],
    labels: Sequence[str],
    signatures: Sequence[str],
) -> Iterator[SystemCommand]:
    """The console's actions, versions, labels, models and signatures as palette commands."""
    yield SystemCommand(
        "Pause / resume live panels", "stop refreshing panels", partial(run_action, "pause_panels")
    )
    yield SystemCommand("Help: keys and commands", "the help screen", partial(run_action, "help"))
    yield SystemCommand(
        "Export transcript", "Markdown and JSONL", partial(run_action, "export_transcript")
    )
    yield SystemCommand("Clear chat", "start a new conversation", partial(run_action, "clear_chat"))
    yield SystemCommand("Retry last failed prompt", "send it again", partial(run_action, "retry"))
    yield SystemCommand(
        "Show the whole long reply", "the latest reply cut at 16 KB", partial(run_line, "/full")
    )
    yield SystemCommand(
        "Replicas",
        "every replica's QPS, latency, errors, versions",
        partial(run_action, "replicas"),
    )
    yield SystemCommand("Burst load…", "open the burst form", partial(run_line, "/burst"))
    yield SystemCommand(
        "Compare two versions…", "answers side by side", partial(prefill, "/compare ")
    )
    yield SystemCommand("Follow the latest version", "", partial(run_line, "/version latest"))
    for version in versions:
        yield SystemCommand(
            f"Pin chat to version {version}", "", partial(run_line, f"/version {version}")
        )
    for label in labels:
        yield SystemCommand(f"Pin chat to label {label}", "", partial(run_line, f"/label {label}"))
    for model in models:
        yield SystemCommand(
            f"Chat with model {model.label} ({model.spec.name})",
            "",
            partial(run_line, f"/model {shlex.quote(model.label)}"),
        )
    for signature in signatures:
        yield SystemCommand(
            f"Use signature {signature}",
            "",
            partial(run_line, f"/signature {shlex.quote(signature)}"),
        )
