"""The conversation: storing prompts, sending them in workers, showing answers, retrying.

A mixin of DeepChatApp. Handlers use Textual's naming convention (on_chat_answered, ...):
@on-decorated methods of a plain mixin class are not collected by Textual.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from tui.messages import ChatAnswered, CompareAnswered, while_mounted
from tui.widgets.chat import ReplyEntry
from tui.widgets.header import StatusHeader

if TYPE_CHECKING:
    from textual.app import App

    from core.chat.transcript import Transcript
    from tui.backend import ChatOutcome, ConsoleBackend
    from tui.options import ChatModel
    from tui.widgets.chat import ChatLog

    # Type-checked as the App it is mixed into; a plain class at run time.
    _AppBase = App[int]
else:
    _AppBase = object


class Conversation(_AppBase):
    """Chat flow of the console; every failure ends up inline in the chat, never raised."""

    _fallback_ids = itertools.count(-1, -1)

    if TYPE_CHECKING:
        backend: ConsoleBackend | None
        current: ChatModel
        transcript: Transcript | None
        last_prompt: str | None
        last_served: int | None

        @property
        def chat_log(self) -> ChatLog: ...
        def ensure_backend(self) -> ConsoleBackend: ...
        def action_focus_prompt(self) -> None: ...

    def store_prompt(self, prompt: str) -> int:
        """Write the prompt to the transcript before sending; returns its id."""
        if self.transcript is not None:
            try:
                return self.transcript.add_prompt(prompt, model_name=self.current.spec.name)
            except Exception as error:  # a full disk must not stop the chat
                self.notify(f"transcript write failed: {error}", severity="error")
        return next(self._fallback_ids)

    async def send_prompt(self, prompt: str) -> None:
        """Show and send a chat prompt to the current model."""
        prompt_id = self.store_prompt(prompt)
        self.last_prompt = prompt
        await self.chat_log.add_prompt(prompt)
        await self.chat_log.add_reply(prompt_id, prompt, self.current)
        self.ask(prompt_id, prompt, self.current)

    def ask(self, prompt_id: int, prompt: str, model: ChatModel) -> None:
        """Send a prompt in a worker; the answer arrives as ChatAnswered."""

        async def ask_worker() -> None:
            outcome = await self.ensure_backend().ask(prompt, model.spec, model.adapter)
            self.post_message(ChatAnswered(prompt_id, prompt, outcome))

        self.run_worker(ask_worker(), group="chat", exit_on_error=False)

    def ask_both(self, prompt_id: int, prompt: str, models: tuple[ChatModel, ChatModel]) -> None:
        """Send one prompt to two models in a worker; answers arrive as CompareAnswered."""

        async def compare_worker() -> None:
            outcomes = await self.ensure_backend().compare(
                prompt, (models[0].spec, models[1].spec), self.current.adapter
            )
            self.post_message(CompareAnswered(prompt_id, prompt, outcomes))

        self.run_worker(compare_worker(), group="chat", exit_on_error=False)

    async def _show_outcome(self, prompt_id: int, outcome: ChatOutcome) -> None:
        entry = self.chat_log.pending_reply(prompt_id, outcome.spec)
        if entry is not None:
            await entry.show(outcome)
        if outcome.ok:
            self.last_served = outcome.served_version
            served = f"v{outcome.served_version}" if outcome.served_version is not None else "v?"
            self.query_one(StatusHeader).served_text = f"last reply {served}"
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

    @while_mounted
    async def on_chat_answered(self, message: ChatAnswered) -> None:
        """Show a reply or error where its prompt waits, and store it."""
        await self._show_outcome(message.prompt_id, message.outcome)
        if message.outcome.error_code in ("ADAPTER_MISMATCH", "ADAPTER_CONFIG"):
            self.notify(message.outcome.error_message or "", severity="error", timeout=15)

    @while_mounted
    async def on_compare_answered(self, message: CompareAnswered) -> None:
        """Show both answers of a /compare."""
        for outcome in message.outcomes:
            await self._show_outcome(message.prompt_id, outcome)

    async def on_reply_entry_retry_requested(self, message: ReplyEntry.RetryRequested) -> None:
        """A retry button was pressed."""
        await self.retry(message.entry)

    async def retry(self, entry: ReplyEntry) -> None:
        """Send a failed prompt again to the same model spec."""
        await entry.mark_retrying()
        self.action_focus_prompt()  # the retry button that had focus is gone
        self.ask(entry.prompt_id, entry.prompt, entry.model)

    async def action_retry(self) -> None:
        """Retry the most recent failed prompt."""
        failed = [entry for entry in self.query(ReplyEntry) if entry.has_class("failed")]
        if not failed:
            self.notify("nothing to retry", timeout=2)
            return
        await self.retry(failed[-1])
