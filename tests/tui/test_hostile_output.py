"""Hostile reply text from a real SavedModel, served by the embedded server, drawn by the console:
no escape sequence reaches the screen, bidi controls are gone, markup is shown as written
(issue 15, item 10)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Markdown

from core.embedded.launcher import EmbeddedServer
from tests.fixtures.hostile_model import (
    HOSTILE_MODEL_NAME,
    HOSTILE_REPLY,
    RICH_MARKUP,
    TEXTUAL_ACTION,
    TEXTUAL_VARIABLE,
    hostile_model_base_path,  # noqa: F401
)
from tests.fixtures.servers import start_server  # noqa: F401
from tests.tui.conftest import make_config, remote_options, wait_for
from tests.tui.test_app_chat import answered, send
from tui.app import DeepChatApp

pytestmark = pytest.mark.slow

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def terminal_controls(text: str) -> list[str]:
    """The characters in text a terminal would act on or that reorder what is shown."""
    return [
        repr(char)
        for char in text
        if (ord(char) < 0x20 and char != "\n") or 0x7F <= ord(char) <= 0x9F or char in BIDI_CONTROLS
    ]


def screen_text(app: DeepChatApp) -> str:
    """What the console draws, cell text line by line."""
    shown = app.screen._compositor.render_update(full=True)
    return "\n".join("".join(segment.text for segment in strip) for strip in shown.strips)


async def test_a_served_models_hostile_reply_is_drawn_inert(
    hostile_model_base_path: Path,  # noqa: F811
    start_server: Callable[..., EmbeddedServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start_server(model_name=HOSTILE_MODEL_NAME, base_path=hostile_model_base_path)
    config = make_config(
        model_serving={"tensorflow_serving": {"host": "127.0.0.1", "rest_port": 0}},
        models=[{"name": "hostile", "model_name": HOSTILE_MODEL_NAME}],
    )
    options = dataclasses.replace(
        remote_options(tmp_path, (server.grpc_target,), config=config),
        rest_url=server.rest_url,
    )
    app = DeepChatApp(options)
    async with app.run_test(size=(200, 48)) as pilot:
        await send(app, pilot, "hello")
        await wait_for(pilot, lambda: len(answered(app)) == 1, 60)
        entry = answered(app)[0]
        assert entry.outcome is not None and entry.outcome.ok, entry.outcome
        await wait_for(pilot, entry.rendered.is_set, 10)
        await pilot.pause()
        reply = entry.outcome.reply
        assert reply is not None
        # The text the console keeps (and stores in the transcript) is already inert.
        assert "\x1b" in HOSTILE_REPLY and terminal_controls(reply.text) == []
        assert entry.query_one(Markdown).source == reply.text
        drawn = screen_text(app)
        assert terminal_controls(drawn) == []
        # OSC 52 (clipboard) and OSC 0 (title) go whole; the 8-bit form loses its controls, so
        # what is left of it is plain text.
        assert "\x1b]52" not in drawn and "\x9d" not in drawn and "pwned title" not in drawn
        # Colour and clear-screen sequences are gone, their payload text stays readable.
        assert "RED" in drawn and "[31m" not in drawn and "[2J" not in drawn
        # Bidi controls are dropped: the file name reads in storage order, as it really is.
        assert "invoice_gnp.exe and isolated marked" in drawn
        # Rich and Textual markup are shown as written, never applied or run.
        for markup in (RICH_MARKUP, TEXTUAL_ACTION, TEXTUAL_VARIABLE):
            assert markup in drawn, markup
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\u202e" not in svg
        assert app.is_running
