"""The console's default keys as plain data (no Textual): the one list BINDINGS is built from.

tui.app builds its BINDINGS from KEY_ACTIONS; tui.main hands default_keys() to the config loader,
which checks ui.key_bindings against them before the app is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyAction:
    """One remappable action: its name (the binding id ui.key_bindings uses) and default keys."""

    name: str
    keys: str
    description: str
    show: bool = True
    priority: bool = False


KEY_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("quit", "ctrl+q", "quit", priority=True),
    KeyAction("help", "f1,question_mark", "help"),
    KeyAction("command_palette", "ctrl+p", "commands", show=False, priority=True),
    KeyAction("pause_panels", "f2,ctrl+o", "pause", priority=True),
    KeyAction("retry", "ctrl+r", "retry", priority=True),
    KeyAction("clear_chat", "ctrl+l", "clear", priority=True),
    KeyAction("export_transcript", "ctrl+e", "export", priority=True),
    KeyAction("replicas", "f3", "replicas"),
    KeyAction("burst", "f5", "burst"),
    KeyAction("focus_prompt", "escape", "prompt", show=False),
)


def default_keys() -> dict[str, str]:
    """Action name -> its default keys (comma-separated), in BINDINGS' order."""
    return {action.name: action.keys for action in KEY_ACTIONS}
