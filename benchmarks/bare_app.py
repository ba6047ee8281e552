"""The floor for the console's first frame: a bare Textual app with one Static, nothing else.

bench_console launches it in the same pty set-up as the console, paired run by run.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static


class BareApp(App[None]):
    """One Static whose text carries the mark bench_console waits for; Ctrl-Q quits."""

    def compose(self) -> ComposeResult:
        yield Static(" Memory ")


if __name__ == "__main__":
    BareApp().run()
