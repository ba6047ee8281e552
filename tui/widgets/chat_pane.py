"""The chat pane: the log, the prompt line and the transcript; prompts go out in workers.

Workers only post messages (ChatAnswered, CompareAnswered); this pane's handlers show the answers
and store them. Slash commands are posted as CommandEntered for the app to run; the pane never
reaches for the app. The app watches ``model`` and ``last_served`` to redraw what depends on them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.widgets import Input

from tui.format import DIM_STYLE
from tui.messages import ChatAnswered, CompareAnswered, while_mounted
from tui.options import ChatModel
from tui.slash import SlashCommand, SlashError, parse_slash, prompt_text
from tui.widgets.chat import ChatLog, HistoryInput, ReplyEntry

if TYPE_CHECKING:
    from pathlib import Path

    from core.chat.session import ChatOutcome, ChatSession
    from core.chat.transcript import Transcript

# Outcomes that are the config's fault, not the server's: also shown as a notification.
ADAPTER_PROBLEMS = ("ADAPTER_MISMATCH", "ADAPTER_CONFIG")


class ChatPane(Vertical):
    """Chat with the current model; every failure ends up inline in the chat, never raised."""

    # A placeholder default: __init__ sets the model the pane starts with.
    model: var[ChatModel] = var(ChatModel.text_chat("", ""), always_update=True)
    """The model the chat talks to (the slash runner switches it)."""
    last_served: var[int | None] = var(None, always_update=True)
    """The version that served the last reply."""

    class CommandEntered(Message):
        """A slash command was typed; the app runs it."""

        def __init__(self, pane: ChatPane, command: SlashCommand) -> None:
            super().__init__()
            self.pane = pane
            self.command = command

        @property
        def control(self) -> ChatPane:
            """The pane it was typed in."""
            return self.pane

    def __init__(
        self,
        model: ChatModel,
        session: Callable[[], ChatSession],
        *,
        transcript_path: Path,
        exports_dir: Path,
        target_label: str,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.set_reactive(ChatPane.model, model)
        self._session = session
        self._transcript_path = transcript_path
        self._exports_dir = exports_dir
        self._target_label = target_label
        self._fallback_ids = itertools.count(-1, -1)
        self.transcript: Transcript | None = None
        self._transcript_tried = False
        self.last_prompt: str | None = None
        self.border_title = self._title(model)

    def compose(self) -> ComposeResult:
        yield ChatLog(id="chat-log")
        yield HistoryInput(placeholder="type a message · / for commands", id="prompt")

    def on_mount(self) -> None:
        # The SQLite transcript opens after the first frame: it is not needed to draw it.
        self.call_after_refresh(self._open_transcript)

    async def _open_transcript(self) -> None:
        problem = self._ensure_transcript()
        if problem is not None:
            await self.chat_log.add_note(f"transcript disabled: {problem}", error=True)
        elif self.transcript is not None and self.transcript.notice:
            # A damaged file was moved aside and a new one started: say so, with both names.
            await self.chat_log.add_note(self.transcript.notice, error=True)

    def _ensure_transcript(self) -> Exception | None:
        """Open the transcript once (on first use or after the first frame); the error if any."""
        if self._transcript_tried:
            return None
        self._transcript_tried = True
        import sqlite3

        from core.chat.transcript import Transcript, TranscriptError

        try:
            self.transcript = Transcript(
                self._transcript_path,
                target=self._target_label,
                model_name=self.model.spec.name,
            )
            stored = self.transcript.prompt_history()
        except (TranscriptError, OSError, sqlite3.DatabaseError) as error:
            return error
        # Prompts typed before it opened stay after the stored ones.
        typed = self.prompt_input.history
        self.prompt_input.load_history([*stored, *typed])
        return None

    @property
    def chat_log(self) -> ChatLog:
        """The scrolling chat log."""
        return self.query_one("#chat-log", ChatLog)

    @property
    def prompt_input(self) -> HistoryInput:
        """The prompt line."""
        return self.query_one("#prompt", HistoryInput)

    @staticmethod
    def _title(model: ChatModel) -> str:
        return f"Chat · {model.spec.describe()} ({model.spec.pin_text()})"

    def watch_model(self, model: ChatModel) -> None:
        self.border_title = self._title(model)

    # ---- input -----------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    async def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        self.prompt_input.value = ""
        if not text.strip():
            return
        self.prompt_input.remember(text)
        try:
            command = parse_slash(text)
        except SlashError as error:
            await self.add_note(str(error), error=True)
            return
        if command is None:
            await self.send_prompt(prompt_text(text))
        else:
            self.post_message(self.CommandEntered(self, command))

    def prefill(self, text: str) -> None:
        """Put text in the prompt line for the reader to complete."""
        self.prompt_input.value = text
        self.prompt_input.cursor_position = len(text)
        self.prompt_input.focus()

    def focus_prompt(self) -> None:
        """Move focus to the prompt line."""
        self.prompt_input.focus()

    async def add_note(self, text: str | Content, *, error: bool = False) -> None:
        """A console note in the chat (command output, problems)."""
        await self.chat_log.add_note(text, error=error)

    # ---- what the chat talks to ------------------------------------------------------------

    async def switch(self, model: ChatModel, note: str) -> None:
        """Chat with another model (or the same one pinned differently) from now on."""
        self.model = model
        await self.add_note(Content.styled(note, DIM_STYLE))

    async def clear(self) -> None:
        """Empty the pane and start a new conversation in the transcript."""
        await self.chat_log.remove_children()
        if self.transcript is not None:
            self.transcript.new_conversation(self._target_label, self.model.spec.name)
        await self.add_note(Content.styled("new conversation", DIM_STYLE))

    def close_transcript(self) -> None:
        """Close the transcript (the console is quitting)."""
        if self.transcript is not None:
            self.transcript.close()
            self.transcript = None

    # ---- sending ---------------------------------------------------------------------------

    def store_prompt(self, prompt: str) -> int:
        """Write the prompt to the transcript before sending; returns its id."""
        self._ensure_transcript()
        if self.transcript is not None:
            try:
                return self.transcript.add_prompt(prompt, model_name=self.model.spec.name)
            except Exception as error:  # a full disk must not stop the chat
                self.notify(f"transcript write failed: {error}", severity="error")
        return next(self._fallback_ids)

    async def send_prompt(self, prompt: str) -> None:
        """Show and send a chat prompt to the current model."""
        prompt_id = self.store_prompt(prompt)
        self.last_prompt = prompt
        await self.chat_log.add_prompt(prompt)
        await self.chat_log.add_reply(prompt_id, prompt, self.model)
        self.ask(prompt_id, prompt, self.model)

    async def compare(self, prompt: str, models: tuple[ChatModel, ChatModel]) -> None:
        """Show and send one prompt to two models, answers side by side."""
        prompt_id = self.store_prompt(prompt)
        self.last_prompt = prompt
        await self.chat_log.add_prompt(prompt)
        await self.chat_log.add_compare(prompt_id, prompt, models)
        self.ask_both(prompt_id, prompt, models)

    @work(group="chat", exit_on_error=False, description="send a prompt")
    async def ask(self, prompt_id: int, prompt: str, model: ChatModel) -> None:
        """Send a prompt; the answer arrives as ChatAnswered."""
        outcome = await self._session().ask(prompt, model.spec, model.adapter)
        self.post_message(ChatAnswered(prompt_id, prompt, outcome))

    @work(group="chat", exit_on_error=False, description="send a prompt to two versions")
    async def ask_both(
        self, prompt_id: int, prompt: str, models: tuple[ChatModel, ChatModel]
    ) -> None:
        """Send one prompt to two models; the answers arrive as CompareAnswered."""
        outcomes = await self._session().compare(
            prompt, (models[0].spec, models[1].spec), models[0].adapter
        )
        self.post_message(CompareAnswered(prompt_id, prompt, outcomes))

    # ---- answers ---------------------------------------------------------------------------

    @on(ChatAnswered)
    @while_mounted
    async def _chat_answered(self, message: ChatAnswered) -> None:
        await self._show_outcome(message.prompt_id, message.outcome)
        if message.outcome.error_code in ADAPTER_PROBLEMS:
            self.notify(message.outcome.error_message or "", severity="error", timeout=15)

    @on(CompareAnswered)
    @while_mounted
    async def _compare_answered(self, message: CompareAnswered) -> None:
        for outcome in message.outcomes:
            await self._show_outcome(message.prompt_id, outcome)

    async def _show_outcome(self, prompt_id: int, outcome: ChatOutcome) -> None:
        entry = self.chat_log.pending_reply(prompt_id, outcome.spec)
        if entry is not None:
            await entry.show(outcome)
        if outcome.ok:
            self.last_served = outcome.served_version
        if self.transcript is None or prompt_id < 0:
            return
        try:
            if outcome.reply is not None:
                self.transcript.add_reply(
                    prompt_id,
                    outcome.reply.text,
                    model_name=outcome.spec.name,
                    model_version=outcome.served_version,
                    signature_name=outcome.spec.signature_name,
                    latency_ms=outcome.latency_ms,
                )
            else:
                self.transcript.add_error(
                    prompt_id,
                    outcome.error_code or "UNKNOWN",
                    outcome.error_message or "",
                    model_name=outcome.spec.name,
                )
        except Exception as error:  # a full disk must not stop the chat
            self.notify(f"transcript write failed: {error}", severity="error")

    # ---- long replies ----------------------------------------------------------------------

    @on(ReplyEntry.ShowAllRequested)
    def _show_all_requested(self, message: ReplyEntry.ShowAllRequested) -> None:
        self.show_all(message.entry)

    def show_all(self, entry: ReplyEntry | None = None) -> None:
        """Open the whole of a reply (by default the latest one shown in part) in a screen."""
        if entry is None:
            partial = [reply for reply in self.query(ReplyEntry) if reply.truncated]
            entry = partial[-1] if partial else None
        reply = entry.outcome.reply if entry is not None and entry.outcome is not None else None
        if entry is None or reply is None:
            self.notify("no long reply to show", timeout=2)
            return
        from tui.widgets.reply_view import FullReplyScreen

        title = f"{entry.spec.describe()} · reply to {entry.prompt[:60]!r}"
        self.app.push_screen(FullReplyScreen(reply.text, title=title, save_dir=self._exports_dir))

    # ---- retry -----------------------------------------------------------------------------

    @on(ReplyEntry.RetryRequested)
    async def _retry_requested(self, message: ReplyEntry.RetryRequested) -> None:
        await self.retry(message.entry)

    async def retry(self, entry: ReplyEntry) -> None:
        """Send a failed prompt again to the same model spec."""
        await entry.mark_retrying()
        self.focus_prompt()  # the retry button that had focus is gone
        self.ask(entry.prompt_id, entry.prompt, entry.model)

    async def retry_latest(self) -> None:
        """Retry the most recent failed prompt."""
        failed = [entry for entry in self.query(ReplyEntry) if entry.has_class("failed")]
        if not failed:
            self.notify("nothing to retry", timeout=2)
            return
        await self.retry(failed[-1])
