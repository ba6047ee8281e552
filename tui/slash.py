"""What each slash command does: /model, /version, /label, /signature, /compare, /burst, ...

A mixin of DeepChatApp, kept apart so the app module stays about layout, workers and messages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.content import Content

from tui.commands import SLASH_COMMANDS, SlashCommand, SlashError, parse_version
from tui.format import DIM_STYLE
from tui.options import ChatModel, pinned
from tui.widgets.chat import spec_label

if TYPE_CHECKING:
    from core.chat.transcript import Transcript
    from core.client.monitor import ModelMonitor, ModelState
    from tui.backend import ConsoleBackend
    from tui.options import ConsoleOptions
    from tui.widgets.chat import ChatLog


class SlashCommands:
    """Slash command handlers; every problem becomes a note in the chat, never an exception."""

    if TYPE_CHECKING:
        options: ConsoleOptions
        backend: ConsoleBackend | None
        current: ChatModel
        monitor: ModelMonitor | None
        model_state: ModelState | None
        transcript: Transcript | None
        last_prompt: str | None

        @property
        def chat_log(self) -> ChatLog: ...
        def store_prompt(self, prompt: str) -> int: ...
        def ask_both(
            self, prompt_id: int, prompt: str, models: tuple[ChatModel, ChatModel]
        ) -> None: ...
        def action_help(self) -> None: ...
        def export_dir(self, argument: str | None) -> Path: ...
        def _show_model(self, problem: str | None = None) -> None: ...
        def _new_monitor(self) -> None: ...

    async def dispatch_slash(self, command: SlashCommand) -> None:
        """Run one parsed command; errors are shown as notes naming the usage."""
        handler = getattr(self, f"_slash_{command.name}")
        try:
            await handler(command)
        except SlashError as error:
            await self.chat_log.add_note(str(error), error=True)

    # ---- what the chat talks to ------------------------------------------------------------

    def known_versions(self) -> list[int]:
        """Versions the last poll saw, ascending."""
        state = self.model_state
        return [status.version for status in state.versions] if state else []

    def known_labels(self) -> list[str]:
        """Version labels the last poll resolved."""
        return sorted(self.model_state.labels) if self.model_state else []

    def known_signatures(self) -> list[str]:
        """Signature keys of the current model, from its metadata."""
        state = self.model_state
        if state is None or state.metadata is None:
            return []
        return sorted(state.metadata.signatures)

    async def _switch(self, model: ChatModel, note: str) -> None:
        self.current = model
        self._new_monitor()
        self._show_model()
        await self.chat_log.add_note(Content.styled(note, DIM_STYLE))

    async def _slash_model(self, command: SlashCommand) -> None:
        chosen = self.options.model_named(command.args[0])
        if chosen.spec.name != self.current.spec.name:
            self.model_state = None
        await self._switch(chosen, f"chatting with {spec_label(chosen.spec)}")

    async def _slash_version(self, command: SlashCommand) -> None:
        usage = SLASH_COMMANDS["version"].usage
        argument = command.args[0]
        if argument.lower() == "latest":
            spec = pinned(self.current.spec)
            note = f"following the latest version of {spec.name}"
        else:
            version = parse_version(argument, usage)
            known = self.known_versions()
            if known and version not in known:
                raise SlashError(
                    f"{spec_label(self.current.spec)} has no version {version}; "
                    f"known versions: {', '.join(map(str, known))}"
                )
            spec = pinned(self.current.spec, version=version)
            note = f"chat pinned to {spec.name} version {version}"
        await self._switch(dataclasses.replace(self.current, spec=spec), note)

    async def _slash_label(self, command: SlashCommand) -> None:
        label = command.args[0]
        spec = pinned(self.current.spec, label=label)
        await self._switch(
            dataclasses.replace(self.current, spec=spec),
            f"chat pinned to {spec.name} label {label}",
        )
        if self.monitor is not None:
            self.monitor.watch_label(label)

    async def _slash_signature(self, command: SlashCommand) -> None:
        signature = command.args[0]
        known = self.known_signatures()
        if known and signature not in known:
            raise SlashError(
                f"{self.current.spec.name} has no signature {signature!r}; "
                f"its signatures: {', '.join(known)}"
            )
        spec = dataclasses.replace(self.current.spec, signature_name=signature)
        await self._switch(
            dataclasses.replace(self.current, spec=spec), f"chat uses signature {signature}"
        )

    # ---- compare, burst --------------------------------------------------------------------

    async def _slash_compare(self, command: SlashCommand) -> None:
        usage = SLASH_COMMANDS["compare"].usage
        left, right = (parse_version(arg, usage) for arg in command.args[:2])
        # The prompt is the raw text after the two versions, so quotes in it are kept.
        prompt = command.rest.split(None, 2)[2] if len(command.args) > 2 else self.last_prompt
        if not prompt:
            raise SlashError(f"usage: {usage}; no prompt given and nothing sent yet to reuse")
        models = (
            dataclasses.replace(self.current, spec=pinned(self.current.spec, version=left)),
            dataclasses.replace(self.current, spec=pinned(self.current.spec, version=right)),
        )
        prompt_id = self.store_prompt(prompt)
        self.last_prompt = prompt
        await self.chat_log.add_prompt(prompt)
        await self.chat_log.add_compare(prompt_id, prompt, models)
        self.ask_both(prompt_id, prompt, models)

    async def _slash_burst(self, command: SlashCommand) -> None:
        from tui.burst import BurstScreen

        if self.backend is None or not self.backend.targets:
            raise SlashError("the server is not running yet; /burst can start once it serves")
        app: Any = self
        # `/burst 200rps 30s` starts at once; a bare `/burst` (or the key) opens the form.
        burst_args = command.rest.strip()
        app.push_screen(
            BurstScreen(
                list(self.backend.targets),
                self.current.spec,
                burst_args,
                autostart=bool(burst_args),
            )
        )

    # ---- transcript ------------------------------------------------------------------------

    async def _slash_export(self, command: SlashCommand) -> None:
        if self.transcript is None:
            raise SlashError("the transcript is disabled, so there is nothing to export")
        directory = self.export_dir(command.args[0] if command.args else None)
        try:
            markdown_path, jsonl_path = self.transcript.export(directory)
        except OSError as error:
            raise SlashError(
                f"/export {directory}: cannot write there ({error.strerror})"
            ) from None
        await self.chat_log.add_note(f"exported to {markdown_path} and {jsonl_path}")

    async def _slash_clear(self, command: SlashCommand) -> None:
        await self.chat_log.remove_children()
        if self.transcript is not None:
            self.transcript.new_conversation(self.options.target_label, self.current.spec.name)
        await self.chat_log.add_note(Content.styled("new conversation", DIM_STYLE))

    async def _slash_help(self, command: SlashCommand) -> None:
        self.action_help()
