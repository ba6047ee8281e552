"""The chat pane on its own, in a tiny host app: it needs no DeepChatApp, only a session."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from core.chat.session import ChatSession
from core.config.schema import Config
from core.metrics.stats import StatsCollector
from tests.tui.conftest import offline_options, wait_for
from tui.slash import SlashCommand
from tui.widgets.chat import HistoryInput, ReplyEntry
from tui.widgets.chat_pane import ChatPane


class PaneHost(App[None]):
    """Hosts one ChatPane on an offline session and keeps the commands it posts."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        options = offline_options(tmp_path)
        session = ChatSession(Config(), StatsCollector(), connect=False)
        self.pane = ChatPane(
            options.models[0],
            lambda: session,
            transcript_path=options.transcript_path,
            exports_dir=options.exports_dir,
            target_label=options.target_label,
        )
        self.commands: list[SlashCommand] = []

    def compose(self) -> ComposeResult:
        yield self.pane

    def on_chat_pane_command_entered(self, message: ChatPane.CommandEntered) -> None:
        self.commands.append(message.command)


async def test_commands_are_posted_and_prompts_answered_inline(tmp_path: Path) -> None:
    app = PaneHost(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        app.pane.focus_prompt()
        app.pane.prompt_input.value = "/version 2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.commands) == 1)
        assert app.commands[0].name == "version" and app.commands[0].args == ("2",)
        app.pane.prompt_input.value = "/nope"
        await pilot.press("enter")
        notes = [str(note.render()) for note in app.pane.query(".note").results(Static)]
        assert notes[-1].startswith("unknown command /nope")
        # Offline, a prompt is stored and fails inline with TF Serving's code.
        app.pane.prompt_input.value = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(e.outcome for e in app.pane.query(ReplyEntry)))
        entry = app.pane.query_one(ReplyEntry)
        assert entry.outcome is not None and entry.outcome.error_code == "UNAVAILABLE"
        assert app.pane.transcript is not None
        assert [m.role for m in app.pane.transcript.messages()] == ["user", "error"]


async def test_a_damaged_transcript_is_moved_aside_and_the_pane_says_so(tmp_path: Path) -> None:
    app = PaneHost(tmp_path)
    path = app.pane._transcript_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database at all" * 100)

    def notes() -> list[str]:
        return [str(note.render()) for note in app.pane.query(".note").results(Static)]

    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: any("was damaged" in note for note in notes()))
        moved = [p for p in path.parent.iterdir() if ".damaged-" in p.name]
        assert len(moved) == 1
        assert any(moved[0].name in note for note in notes())
        assert app.pane.transcript is not None  # a new transcript took its place


async def test_the_prompt_cursor_stops_blinking_when_idle_and_blinks_again_at_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HistoryInput, "BLINK_TIMEOUT_S", 0.3)
    app = PaneHost(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        app.pane.focus_prompt()
        prompt = app.pane.prompt_input
        assert prompt.cursor_blink
        await wait_for(pilot, lambda: not prompt.cursor_blink)
        # Settled, the cursor is drawn steadily and nothing toggles it.
        assert prompt._cursor_visible
        await pilot.press("a")
        assert prompt.cursor_blink and prompt.value == "a"
        # Keys keep it blinking: typing for longer than the timeout never settles it.
        for key in "bcdefgh":
            await pilot.pause(0.1)
            await pilot.press(key)
            assert prompt.cursor_blink
        await wait_for(pilot, lambda: not prompt.cursor_blink)
