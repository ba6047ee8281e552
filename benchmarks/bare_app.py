"""The floor for the console's first frame: a bare Textual app with one Static, nothing else.

bench_console launches it in the same pty set-up as the console, paired run by run.
"""

from __future__ import annotations

import sys

from textual.app import App, ComposeResult
from textual.widgets import Input, Static


class BareApp(App[None]):
    """One Static whose text carries the mark bench_console waits for; Ctrl-Q quits."""

    def compose(self) -> ComposeResult:
        yield Static(" Memory ")


class BareInputApp(App[None]):
    """One focused Input: the floor for a key's echo (bench_console's key latency)."""

    def compose(self) -> ComposeResult:
        yield Static(" Memory ")
        yield Input()


if __name__ == "__main__":
    (BareInputApp() if "--input" in sys.argv else BareApp()).run()
