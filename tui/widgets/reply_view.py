"""A whole reply too long for the chat: shown in a scrollable read-only text area, or saved.

The chat renders the head of a long reply as Markdown (tui.widgets.chat.RENDER_LIMIT); this
screen holds all of it as plain text, which Textual's TextArea draws line by line, so megabytes
open at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from core.files import write_private
from tui.format import DIM_STYLE, size_text

# Soft wrapping measures every line; past this size the text area scrolls sideways instead.
WRAP_LIMIT = 1_000_000


class FullReplyScreen(ModalScreen[None]):
    """The whole of one reply; Escape or q closes it, s saves it to a file."""

    # Read when the screen first opens, not before the console's first frame.
    CSS_PATH = "../screens.tcss"

    BINDINGS = [  # noqa: RUF012 (Textual's own BINDINGS are plain lists)
        Binding("escape,q", "dismiss", "close"),
        Binding("s", "save", "save to a file"),
    ]

    def __init__(self, text: str, *, title: str, save_dir: Path) -> None:
        super().__init__()
        self.text = text
        self.title_text = title
        self.save_dir = save_dir
        self.saved_path: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="full-reply"):
            yield Static(
                Content.assemble(
                    Content.styled(self.title_text, "bold"),
                    Content.styled(
                        f"  {size_text(len(self.text))} · s save to a file · esc close", DIM_STYLE
                    ),
                ),
                id="full-reply-heading",
            )
            yield TextArea(
                self.text,
                read_only=True,
                soft_wrap=len(self.text) <= WRAP_LIMIT,
                show_cursor=False,
                id="full-reply-text",
            )

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        """Write the reply to a private file under the exports dir and say where."""
        path = self.save_dir / f"reply-{time.strftime('%Y%m%d-%H%M%S')}.md"
        try:
            self.saved_path = write_private(path, self.text)
        except OSError as error:
            self.notify(f"could not save the reply: {error}", severity="error")
            return
        self.notify(f"saved to {path}", timeout=8)
