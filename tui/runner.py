"""What each slash command does, one handler per command of the grammar (tui.slash).

The runner works on the chat pane and reads the last model poll; what only the app can do
(screens) it asks for with messages posted through the pane. Every problem becomes a note in the
chat, never an exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tui.messages import BurstRequested, HelpRequested, ReplicasRequested
from tui.options import ConsoleOptions
from tui.slash import SLASH_COMMANDS, SlashCommand, SlashError, parse_slash, parse_version
from tui.widgets.chat_pane import ChatPane

if TYPE_CHECKING:
    from core.client.monitor import ModelState

SlashHandler = Callable[[SlashCommand], Awaitable[None]]


class SlashRunner:
    """Runs parsed slash commands against the chat pane."""

    def __init__(
        self,
        options: ConsoleOptions,
        chat: ChatPane,
        model_state: Callable[[], ModelState | None],
    ) -> None:
        self.options = options
        self.chat = chat
        self._model_state = model_state
        # One entry per command in tui.slash.SLASH_COMMANDS (a test checks both agree).
        self.handlers: Mapping[str, SlashHandler] = {
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "signature": self.signature,
            "compare": self.compare,
            "burst": self.burst,
            "full": self.full,
            "replicas": self.replicas,
            "export": self.export,
            "clear": self.clear,
            "help": self.help,
        }

    async def run(self, command: SlashCommand) -> None:
        """Run one parsed command; errors are shown as notes naming the usage."""
        try:
            await self.handlers[command.name](command)
        except SlashError as error:
            await self.chat.add_note(str(error), error=True)

    async def run_line(self, line: str) -> None:
        """Run a command line such as '/version 2' (from a key or the command palette)."""
        try:
            command = parse_slash(line)
        except SlashError as error:
            await self.chat.add_note(str(error), error=True)
            return
        if command is not None:
            await self.run(command)

    # ---- what the last poll knows ----------------------------------------------------------

    def known_versions(self) -> list[int]:
        """Versions the last poll saw, ascending."""
        state = self._model_state()
        return state.version_numbers if state is not None else []

    def known_labels(self) -> list[str]:
        """Version labels the last poll resolved."""
        state = self._model_state()
        return state.label_names if state is not None else []

    def known_signatures(self) -> list[str]:
        """Signature keys of the current model, from its metadata."""
        state = self._model_state()
        return state.signature_names if state is not None else []

    # ---- what the chat talks to ------------------------------------------------------------

    async def model(self, command: SlashCommand) -> None:
        """/model NAME: chat with another configured model (or any model by name)."""
        chosen = self.options.model_named(command.args[0])
        await self.chat.switch(chosen, f"chatting with {chosen.spec.describe()}")

    async def version(self, command: SlashCommand) -> None:
        """/version N|latest: pin the chat to a version, or follow the latest."""
        usage = SLASH_COMMANDS["version"].usage
        argument = command.args[0]
        current = self.chat.model
        if argument.lower() == "latest":
            spec = current.spec.pinned()
            note = f"following the latest version of {spec.name}"
        else:
            version = parse_version(argument, usage)
            known = self.known_versions()
            if known and version not in known:
                raise SlashError(
                    f"{current.spec.describe()} has no version {version}; "
                    f"known versions: {', '.join(map(str, known))}"
                )
            spec = current.spec.pinned(version=version)
            note = f"chat pinned to {spec.name} version {version}"
        await self.chat.switch(dataclasses.replace(current, spec=spec), note)

    async def label(self, command: SlashCommand) -> None:
        """/label L: pin the chat to a version label."""
        label = command.args[0]
        current = self.chat.model
        spec = current.spec.pinned(label=label)
        await self.chat.switch(
            dataclasses.replace(current, spec=spec), f"chat pinned to {spec.name} label {label}"
        )

    async def signature(self, command: SlashCommand) -> None:
        """/signature S: use another signature of the model."""
        signature = command.args[0]
        known = self.known_signatures()
        if known and signature not in known:
            raise SlashError(
                f"{self.chat.model.spec.name} has no signature {signature!r}; "
                f"its signatures: {', '.join(known)}"
            )
        current = self.chat.model
        spec = dataclasses.replace(current.spec, signature_name=signature)
        await self.chat.switch(
            dataclasses.replace(current, spec=spec), f"chat uses signature {signature}"
        )

    # ---- compare, burst, replicas, help ------------------------------------------------------

    async def compare(self, command: SlashCommand) -> None:
        """/compare V1 V2 [PROMPT]: one prompt to two versions, side by side."""
        usage = SLASH_COMMANDS["compare"].usage
        left, right = (parse_version(arg, usage) for arg in command.args[:2])
        # The prompt is the raw text after the two versions, so quotes in it are kept.
        prompt = command.rest.split(None, 2)[2] if len(command.args) > 2 else self.chat.last_prompt
        if not prompt:
            raise SlashError(f"usage: {usage}; no prompt given and nothing sent yet to reuse")
        current = self.chat.model
        models = (
            dataclasses.replace(current, spec=current.spec.pinned(version=left)),
            dataclasses.replace(current, spec=current.spec.pinned(version=right)),
        )
        await self.chat.compare(prompt, models)

    async def burst(self, command: SlashCommand) -> None:
        """/burst [ARGS]: the burst load screen; arguments start a run at once."""
        self.chat.post_message(BurstRequested(command.rest.strip()))

    async def replicas(self, command: SlashCommand) -> None:
        """/replicas: the replicas view."""
        self.chat.post_message(ReplicasRequested())

    async def help(self, command: SlashCommand) -> None:
        """/help: keys and commands."""
        self.chat.post_message(HelpRequested())

    async def full(self, command: SlashCommand) -> None:
        """/full: the whole of the latest reply the chat shows only in part."""
        self.chat.show_all()

    # ---- transcript ------------------------------------------------------------------------

    async def export(self, command: SlashCommand) -> None:
        """/export [DIR]: this conversation as Markdown and JSONL."""
        transcript = self.chat.transcript
        if transcript is None:
            raise SlashError("the transcript is disabled, so there is nothing to export")
        directory = Path(command.args[0]).expanduser() if command.args else self.options.exports_dir
        try:
            markdown_path, jsonl_path = transcript.export(directory)
        except OSError as error:
            raise SlashError(
                f"/export {directory}: cannot write there ({error.strerror})"
            ) from None
        await self.chat.add_note(f"exported to {markdown_path} and {jsonl_path}")

    async def clear(self, command: SlashCommand) -> None:
        """/clear: empty the chat pane and start a new conversation."""
        await self.chat.clear()
