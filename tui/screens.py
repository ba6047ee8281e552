"""The help screen: key bindings as remapped by the config, and the slash commands."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.format import DIM_STYLE
from tui.slash import SLASH_COMMANDS

KEY_NAMES = {"question_mark": "?", "escape": "esc", "slash": "/"}


def key_display(keys: str) -> str:
    """Textual key names as people read them: 'f1,question_mark' -> 'F1  ?'."""
    shown = []
    for key in keys.split(","):
        key = key.strip()
        name = KEY_NAMES.get(key, key)
        if len(name) >= 2 and name[0] == "f" and name[1:].isdigit():
            name = name.upper()
        shown.append(name.replace("ctrl+", "^") if name.startswith("ctrl+") else name)
    return "  ".join(shown)


class HelpScreen(ModalScreen[None]):
    """Keys and commands; Escape, q, F1 or ? closes it."""

    # Read when the screen first opens, not before the console's first frame.
    CSS_PATH = "screens.tcss"

    BINDINGS = [  # noqa: RUF012 (Textual's own BINDINGS are plain lists)
        Binding("escape,q,f1,question_mark", "dismiss", "close", show=False),
    ]

    def __init__(self, key_rows: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.key_rows = list(key_rows)

    def compose(self) -> ComposeResult:
        width = max((len(key_display(keys)) for keys, _ in self.key_rows), default=8) + 2
        keys = Content("\n").join(
            Content.assemble(Content.styled(key_display(keys).ljust(width), "bold $accent"), text)
            for keys, text in self.key_rows
        )
        usage_width = max(len(spec.usage) for spec in SLASH_COMMANDS.values()) + 2
        commands = Content("\n").join(
            Content.assemble(Content.styled(spec.usage.ljust(usage_width), "bold"), spec.summary)
            for spec in SLASH_COMMANDS.values()
        )
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Help"
            body.border_subtitle = "esc to close"
            yield Static(Content.styled("Keys", "bold underline"), classes="help-heading")
            yield Static(keys)
            yield Static(Content.styled("Commands", "bold underline"), classes="help-heading")
            yield Static(commands)
            yield Static(
                Content.styled(
                    "Type a message and press Enter to send it through the micro-batcher. "
                    "Up/down walk earlier prompts. Each reply shows the version that served it "
                    "and its latency; errors show TF Serving's status code and message with a "
                    "retry button. Keys are remapped in config.yaml under ui.key_bindings; the "
                    "F-keys are there for terminals and tmux that swallow Ctrl chords.",
                    DIM_STYLE,
                ),
                classes="help-note",
            )

    async def action_dismiss(self, result: None = None) -> None:
        """Close the help screen."""
        self.dismiss(result)
