"""Long replies: rendered in pieces up to a cap, the prompt line live meanwhile, the rest shown
in full by "show all" or /full (issue 15, item 9)."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Callable

from textual import events
from textual.widgets import Button, Markdown, TextArea

from core.chat.adapters import ChatReply
from core.chat.session import ChatOutcome
from tests.tui.conftest import wait_for
from tests.tui.test_app_chat import send
from tui.app import DeepChatApp
from tui.messages import ChatAnswered
from tui.widgets.chat import RENDER_LIMIT, RENDER_PIECE, ReplyEntry, pieces, rendered_head
from tui.widgets.reply_view import FullReplyScreen

# The issue measured 4.2 s of frozen console for 1 MB (16.7 s on the loaded test box); a key now
# waits a few tenths of a second at most. The bound leaves room for a slow, busy machine.
MAX_KEY_LATENCY_S = 2.0


def long_reply(size: int) -> str:
    """Markdown paragraphs of exactly size characters."""
    paragraph = "Batching groups **requests** so the `model` runs once per batch. " * 6
    count = size // len(paragraph) + 1
    return "\n\n".join(f"Paragraph {index}: {paragraph}" for index in range(count))[:size]


def test_pieces_cover_the_text_and_cut_at_line_breaks() -> None:
    text = long_reply(50_000)
    parts = list(pieces(text))
    assert "".join(parts) == text
    assert all(len(part) <= RENDER_PIECE for part in parts)
    assert all(part.endswith("\n") for part in parts[:-1])
    assert list(pieces("x" * 2500, 1000)) == ["x" * 1000, "x" * 1000, "x" * 500]
    head = rendered_head(text)
    assert text.startswith(head) and RENDER_LIMIT // 2 < len(head) <= RENDER_LIMIT
    assert rendered_head("short") == "short"


async def answer(app: DeepChatApp, text: str) -> ReplyEntry:
    """Show a pending prompt and post its answer as the chat worker would."""
    pane = app.chat
    await pane.chat_log.add_prompt("tell me everything")
    entry = await pane.chat_log.add_reply(1, "tell me everything", pane.model)
    outcome = ChatOutcome(pane.model.spec, ChatReply(text), served_version=2, latency_ms=3.0)
    pane.post_message(ChatAnswered(1, "tell me everything", outcome))
    return entry


async def test_a_one_megabyte_reply_keeps_the_prompt_live(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    text = long_reply(1_000_000)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        prompt = app.chat.prompt_input
        entry = await answer(app, text)
        latencies = []
        # Keys typed one by one while the reply renders: each reaches the prompt line quickly.
        while not entry.rendered.is_set():
            typed = len(prompt.value)
            pressed = time.perf_counter()
            app.post_message(events.Key("x", "x"))
            await wait_for(pilot, lambda typed=typed: len(prompt.value) > typed, 30)
            latencies.append(time.perf_counter() - pressed)
            await asyncio.sleep(0.02)
        assert latencies and max(latencies) < MAX_KEY_LATENCY_S, latencies
        markdown = entry.query_one(Markdown)
        assert markdown.source == rendered_head(text)
        assert entry.truncated
        row = str(entry.query_one(".truncation-text").render())
        assert "showing the first 16 KB of 1.0 MB" in row
        assert entry.query_one(Button).label.plain == "show all"


async def test_show_all_opens_the_whole_reply_and_saves_it_privately(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    text = long_reply(300_000)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        entry = await answer(app, text)
        await wait_for(pilot, entry.rendered.is_set, 60)
        entry.query_one(Button).press()
        await wait_for(pilot, lambda: isinstance(app.screen, FullReplyScreen), 10)
        screen = app.screen
        assert isinstance(screen, FullReplyScreen)
        assert screen.query_one(TextArea).text == text
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.saved_path is not None, 10)
        saved = screen.saved_path
        assert saved is not None and saved.read_text() == text
        assert saved.parent == app.options.exports_dir
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FullReplyScreen), 10)
        # /full opens the latest long reply too.
        await send(app, pilot, "/full")
        await wait_for(pilot, lambda: isinstance(app.screen, FullReplyScreen), 10)
        assert app.screen.query_one(TextArea).text == text
        await pilot.press("q")
        await wait_for(pilot, lambda: not isinstance(app.screen, FullReplyScreen), 10)
        # And so does the command palette.
        await pilot.press("ctrl+p")
        await pilot.press(*"show the whole")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FullReplyScreen), 10)


async def test_full_without_a_long_reply_says_so(app_factory: Callable[..., DeepChatApp]) -> None:
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        entry = await answer(app, "a short reply")
        await wait_for(pilot, entry.rendered.is_set, 10)
        assert not entry.truncated and not entry.query(".truncation-row")
        await send(app, pilot, "/full")
        await pilot.pause()
        assert not isinstance(app.screen, FullReplyScreen)
        assert any("no long reply" in str(n.message) for n in app._notifications)
