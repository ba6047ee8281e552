"""The chat pane: prompts, replies (Markdown), inline errors with retry, /compare side by side.

Model output and server messages are untrusted: they arrive sanitized
(core.chat.adapters.sanitize_text) and are shown as Content or Markdown text, never parsed as
Rich/Textual markup. A long reply is rendered in pieces and only up to RENDER_LIMIT characters,
so the prompt line stays live; "show all" opens the whole text (tui.widgets.reply_view).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Input, Static

from core.wire.model_spec import ModelSpec
from tui.format import CRIT_STYLE, DIM_STYLE, format_ms, size_text
from tui.options import ChatModel

if TYPE_CHECKING:
    from textual.timer import Timer
    from textual.widgets import Markdown

    from core.chat.session import ChatOutcome

MARKDOWN_MODULE = "textual.widgets._markdown"
# Characters of a reply rendered as Markdown in the chat; the rest is one "show all" away.
RENDER_LIMIT = 16_000
# A longer reply goes into its Markdown widget this many characters at a time, each piece
# parsed and mounted on its own, so no single step holds the event loop for long.
RENDER_PIECE = 1_000


def _cut(text: str, limit: int) -> int:
    """Where to cut text to at most limit characters: after a line break near the end if any."""
    if len(text) <= limit:
        return len(text)
    line_break = text.rfind("\n", limit // 2, limit)
    return line_break + 1 if line_break >= 0 else limit


def rendered_head(text: str, limit: int = RENDER_LIMIT) -> str:
    """The part of a reply the chat renders: all of it, or its first ~limit characters."""
    return text[: _cut(text, limit)]


def pieces(text: str, size: int = RENDER_PIECE) -> Iterator[str]:
    """text in consecutive pieces of at most size characters, cut at line breaks where near."""
    while text:
        cut = _cut(text, size)
        yield text[:cut]
        text = text[cut:]


def reply_heading(outcome: ChatOutcome) -> Content:
    """'v2 · 4.1 ms · confidence 0.830' for a reply."""
    served = f"v{outcome.served_version}" if outcome.served_version is not None else "v?"
    parts: list[Content | str] = [Content.styled(served, "bold $accent")]
    if outcome.latency_ms is not None:
        parts += [" · ", Content.styled(f"{format_ms(outcome.latency_ms)} ms", DIM_STYLE)]
    if outcome.reply is not None:
        for name, value in outcome.reply.details:
            parts += [" · ", Content.styled(f"{name} {value}", DIM_STYLE)]
    return Content.assemble(*parts)


class PromptEntry(Static):
    """A prompt the reader sent."""

    def __init__(self, prompt: str) -> None:
        super().__init__(Content.assemble(Content.styled("you  ", "bold $primary"), prompt))
        self.prompt = prompt


class ReplyEntry(Vertical):
    """One answer: pending, then a Markdown reply or an inline error with a retry button."""

    class RetryRequested(Message):
        """The reader asked to send a failed prompt again."""

        def __init__(self, entry: ReplyEntry) -> None:
            super().__init__()
            self.entry = entry

    class ShowAllRequested(Message):
        """The reader asked for the whole of a reply the chat shows only in part."""

        def __init__(self, entry: ReplyEntry) -> None:
            super().__init__()
            self.entry = entry

    def __init__(self, prompt_id: int, prompt: str, model: ChatModel) -> None:
        super().__init__(classes="pending")
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.model = model
        self.outcome: ChatOutcome | None = None
        self.rendered = asyncio.Event()
        """Set once the reply (or error) is fully on screen."""

    @property
    def truncated(self) -> bool:
        """Whether the chat shows only the head of this entry's reply."""
        reply = self.outcome.reply if self.outcome is not None else None
        return reply is not None and len(reply.text) > len(rendered_head(reply.text))

    @property
    def spec(self) -> ModelSpec:
        """The model spec this entry asked."""
        return self.model.spec

    def _waiting(self) -> Static:
        return Static(
            Content.styled(f"… waiting for {self.spec.describe()}", DIM_STYLE),
            classes="reply-heading",
        )

    def compose(self) -> ComposeResult:
        yield self._waiting()

    async def show(self, outcome: ChatOutcome) -> None:
        """Replace the pending line with the reply or the error."""
        # Imported on first reply, in a thread so keys keep working: Markdown brings markdown-it
        # and Pygments with it (a few tenths of a second).
        if MARKDOWN_MODULE not in sys.modules:
            await asyncio.to_thread(importlib.import_module, MARKDOWN_MODULE)
        from textual.widgets import Markdown

        self.app.workers.cancel_group(self, "render")
        self.remove_class("pending")
        await self.remove_children()
        self.rendered.clear()
        if outcome.reply is not None:
            self.set_class(False, "failed")
            text = outcome.reply.text
            head = rendered_head(text)
            streamed = len(head) > RENDER_PIECE
            body = Markdown("" if streamed else head, open_links=False, classes="reply-body")
            await self.mount(Static(reply_heading(outcome), classes="reply-heading"), body)
            if len(head) < len(text):
                await self.mount(self._truncation_row(len(head), len(text)))
            self.outcome = outcome
            if streamed:
                self.run_worker(
                    self._render_pieces(body, head),
                    group="render",
                    exit_on_error=False,
                    description="render a long reply",
                )
            else:
                self.rendered.set()
            return
        self.set_class(True, "failed")
        error = Content.assemble(
            Content.styled(outcome.error_code or "ERROR", f"bold {CRIT_STYLE}"),
            "  ",
            outcome.error_message or "",
        )
        await self.mount(
            Horizontal(
                Static(error, classes="error-text"),
                Button("retry", id=None, classes="retry", compact=True),
                classes="error-row",
            )
        )
        self.outcome = outcome
        self.rendered.set()

    async def _render_pieces(self, body: Markdown, text: str) -> None:
        # Each append parses from the last block onwards and mounts what is new; awaiting it lets
        # keys and refreshes in between. (MarkdownStream would join queued pieces into one.)
        for piece in pieces(text):
            await body.append(piece)
            await asyncio.sleep(0)
        self.rendered.set()

    @staticmethod
    def _truncation_row(shown: int, total: int) -> Horizontal:
        note = Content.styled(
            f"showing the first {size_text(shown)} of {size_text(total)}", DIM_STYLE
        )
        return Horizontal(
            Static(note, classes="truncation-text"),
            Button("show all", classes="show-all", compact=True),
            classes="truncation-row",
        )

    @on(Button.Pressed, ".show-all")
    def _show_all_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.ShowAllRequested(self))

    async def mark_retrying(self) -> None:
        """Show that the prompt is being sent again."""
        self.app.workers.cancel_group(self, "render")
        self.outcome = None
        self.rendered.clear()
        self.add_class("pending")
        self.remove_class("failed")
        await self.remove_children()
        await self.mount(self._waiting())

    @on(Button.Pressed, ".retry")
    def _retry_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.RetryRequested(self))


class CompareEntry(Horizontal):
    """Two answers to the same prompt side by side (/compare V1 V2)."""

    def __init__(self, prompt_id: int, prompt: str, models: Sequence[ChatModel]) -> None:
        super().__init__(classes="compare")
        self.prompt_id = prompt_id
        self.sides = [ReplyEntry(prompt_id, prompt, model) for model in models]

    def compose(self) -> ComposeResult:
        yield from self.sides


class ChatLog(VerticalScroll):
    """The scrolling transcript; stays at the bottom only while the reader is there."""

    def on_mount(self) -> None:
        # Anchoring keeps new messages in view until the reader scrolls up, and resumes when
        # they scroll back to the bottom.
        self.anchor()

    async def add_prompt(self, prompt: str) -> PromptEntry:
        """Append a prompt."""
        entry = PromptEntry(prompt)
        await self.mount(entry)
        return entry

    async def add_reply(self, prompt_id: int, prompt: str, model: ChatModel) -> ReplyEntry:
        """Append a pending reply for a prompt."""
        entry = ReplyEntry(prompt_id, prompt, model)
        await self.mount(entry)
        return entry

    async def add_compare(
        self, prompt_id: int, prompt: str, models: Sequence[ChatModel]
    ) -> CompareEntry:
        """Append a pending side-by-side pair."""
        entry = CompareEntry(prompt_id, prompt, models)
        await self.mount(entry)
        return entry

    async def add_note(self, text: str | Content, *, error: bool = False) -> Static:
        """Append a console note (command output, hints); plain text, never markup."""
        note = Static(text, markup=False, classes="note error" if error else "note")
        await self.mount(note)
        return note

    def pending_reply(self, prompt_id: int, spec: ModelSpec) -> ReplyEntry | None:
        """The reply entry waiting on a prompt sent to a spec."""
        for entry in self.query(ReplyEntry):
            if entry.prompt_id == prompt_id and entry.spec == spec and entry.outcome is None:
                return entry
        return None


class HistoryInput(Input):
    """The prompt line; up and down walk earlier prompts.

    Its cursor stops blinking (and stays shown) after BLINK_TIMEOUT_S without a key, paste or
    click, as GTK's gtk-cursor-blink-timeout does (10 s by default there too), and blinks again at
    the next one. Each blink redraws the prompt, 2-3 ms of the UI thread: measured, a blinking
    cursor was about a quarter of an idle console's CPU.
    """

    BLINK_TIMEOUT_S = 10.0

    BINDINGS = [  # noqa: RUF012 (Textual's own BINDINGS are plain lists)
        Binding("up", "history(-1)", "earlier prompt", show=False),
        Binding("down", "history(1)", "later prompt", show=False),
    ]

    def __init__(self, history: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = list(history)
        self._position = len(self.history)
        self._draft = ""
        self._blink_timeout: Timer | None = None
        self._woken_at = 0.0

    def on_mount(self) -> None:
        self.wake_cursor()

    def wake_cursor(self) -> None:
        """Blink (again), until BLINK_TIMEOUT_S from now."""
        self._woken_at = time.monotonic()
        self.cursor_blink = True
        if self._blink_timeout is None:  # one timer, whatever the typing speed
            self._blink_timeout = self.set_timer(self.BLINK_TIMEOUT_S, self._settle_cursor)

    def _settle_cursor(self) -> None:
        """BLINK_TIMEOUT_S without a key: a steady cursor (Input shows it while not blinking)."""
        self._blink_timeout = None
        left = self._woken_at + self.BLINK_TIMEOUT_S - time.monotonic()
        if left > 0.01:  # woken again meanwhile
            self._blink_timeout = self.set_timer(left, self._settle_cursor)
        else:
            self.cursor_blink = False

    def on_key(self) -> None:
        self.wake_cursor()

    def on_paste(self) -> None:
        self.wake_cursor()

    def on_click(self) -> None:
        self.wake_cursor()

    def on_focus(self) -> None:
        self.wake_cursor()

    def load_history(self, history: Sequence[str]) -> None:
        """Start the walk over these earlier prompts (oldest first)."""
        self.history = list(history)
        self._position = len(self.history)
        self._draft = ""

    def remember(self, text: str) -> None:
        """Add a sent prompt to the history (no immediate repeats) and reset the walk."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._position = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        """Move through the history; past the newest entry comes back to the draft."""
        if not self.history:
            return
        if self._position == len(self.history):
            self._draft = self.value
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = (
            self._draft if self._position == len(self.history) else self.history[self._position]
        )
        self.cursor_position = len(self.value)
