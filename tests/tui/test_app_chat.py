"""The chat pane against a real grpc.aio server: replies, errors inline, retry, safety, history."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from textual.widgets import Markdown, Static

from core.chat.transcript import Transcript
from tests.fixtures.fault_servicer import Behaviour, FaultServer
from tests.tui.conftest import chat_behaviour, echo_predict, make_config, wait_for
from tui.app import DeepChatApp
from tui.widgets.chat import HistoryInput, PromptEntry, ReplyEntry


def answered(app: DeepChatApp) -> list[ReplyEntry]:
    """Reply entries that have their outcome."""
    return [entry for entry in app.query(ReplyEntry) if entry.outcome is not None]


def visible_text(entry: ReplyEntry) -> str:
    """The plain text an entry shows (headings, Markdown blocks, error line)."""
    parts = []
    for static in entry.query(Static):
        parts.append(str(static.render()))
    for markdown in entry.query(Markdown):
        parts.append(markdown.source)
    return "\n".join(parts)


async def send(app: DeepChatApp, pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    """Type a line into the prompt and press Enter."""
    prompt = app.query_one("#prompt", HistoryInput)
    prompt.value = text
    await pilot.press("enter")


async def test_a_prompt_gets_a_reply_with_version_and_latency(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "how does batching work?")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        entry = answered(app)[0]
        assert entry.outcome is not None and entry.outcome.served_version == 2
        assert entry.outcome.latency_ms is not None and entry.outcome.latency_ms > 0
        text = visible_text(entry)
        assert "v2 · " in text and " ms" in text and "confidence 0.500" in text
        assert "echo v2: how does batching work?" in text
        assert [p.prompt for p in app.query(PromptEntry)] == ["how does batching work?"]
        # The prompt went through the micro-batcher into one Predict for the configured model.
        predicts = chat_server.calls_to("Predict")
        assert len(predicts) == 1 and predicts[0].request.model_spec.name == "deepchat_model"
        snapshot = app.stats.snapshot()
        assert snapshot.ok_total == 1 and snapshot.batches_total == 1
        # The header names what answered last.
        assert "last reply v2" in str(app.query_one("#header").render())
        transcript_path = app.options.transcript_path
    with Transcript(transcript_path) as transcript:
        conversation = transcript.messages(transcript.conversation_id - 1)
        assert [(m.role, m.status) for m in conversation] == [
            ("user", "answered"),
            ("assistant", "ok"),
        ]
        assert conversation[1].model_version == 2


async def test_errors_show_inline_with_code_message_and_retry(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    chat_server.behaviour = chat_behaviour(
        error=(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(deepchat_model)"),
        methods=frozenset({"Predict"}),
    )
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "hello")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        entry = answered(app)[0]
        assert entry.has_class("failed")
        text = visible_text(entry)
        assert "NOT_FOUND" in text
        assert "Servable not found for request: Latest(deepchat_model)" in text
        # The server recovers; the retry button sends the same prompt again.
        chat_server.behaviour = chat_behaviour()
        await pilot.click(".retry")
        await wait_for(pilot, lambda: entry.outcome is not None and entry.outcome.ok)
        assert "echo v2: hello" in visible_text(entry)
        assert not entry.has_class("failed")
        # Ctrl-R retries the latest failure too.
        chat_server.behaviour = chat_behaviour(
            error=(grpc.StatusCode.UNAVAILABLE, "injected"), methods=frozenset({"Predict"})
        )
        await send(app, pilot, "again")
        await wait_for(pilot, lambda: len(answered(app)) == 2)
        chat_server.behaviour = chat_behaviour()
        await pilot.press("ctrl+r")
        await wait_for(
            pilot,
            lambda: all(e.outcome is not None and e.outcome.ok for e in app.query(ReplyEntry)),
        )
        assert app.chat.transcript is not None
        roles = [(m.role, m.status) for m in app.chat.transcript.messages()]
        assert roles.count(("user", "answered")) == 2
        assert ("error", "error") in roles  # the failures stay in the transcript


async def test_adapter_mismatch_names_the_signature_and_config_keys(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    chat_server.behaviour = Behaviour()  # x, y DT_FLOAT [-1, 3]: not a text model
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "hello")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        text = visible_text(answered(app)[0])
        assert "ADAPTER_MISMATCH" in text
        assert "inputs: x (DT_FLOAT [-1, 3]); outputs: y (DT_FLOAT [-1, 3])" in text
        assert "models[0].adapter.input_key" in text
        assert chat_server.calls_to("Predict") == []


async def test_untrusted_output_is_shown_literally_without_control_sequences(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    chat_server.behaviour = chat_behaviour(
        predict=echo_predict(prefix="[bold red]pwned[/] \x1b]0;title\x07\x1b[2J")
    )
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "[@click=app.quit]x[/]")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        entry = answered(app)[0]
        body = entry.query_one(Markdown)
        assert body.source == "[bold red]pwned[/]  v2: [@click=app.quit]x[/]"
        assert "\x1b" not in body.source
        shown = app.screen._compositor.render_update(full=True)
        screen_text = "\n".join("".join(s.text for s in strip) for strip in shown.strips)
        assert "[bold red]pwned[/]" in screen_text  # drawn as text, not as markup
        assert "you  [@click=app.quit]x[/]" in screen_text
        assert app.is_running


async def test_up_and_down_walk_the_prompt_history(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        for text in ("first", "second"):
            await send(app, pilot, text)
        prompt = app.query_one("#prompt", HistoryInput)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.value == "second"
        await pilot.press("up", "up")
        assert prompt.value == "first"
        await pilot.press("down")
        assert prompt.value == "second"
        await pilot.press("down")
        assert prompt.value == "draft"
        await wait_for(pilot, lambda: len(answered(app)) == 2)
    # A new console starts with the stored prompts as its history (read after the first frame).
    reopened = app_factory((chat_server.target,))
    async with reopened.run_test(size=(120, 40)) as pilot:
        prompt = reopened.query_one("#prompt", HistoryInput)
        await wait_for(pilot, lambda: reopened.chat.transcript is not None)
        await pilot.press("up")
        assert prompt.value == "second"


async def test_question_mark_types_in_the_prompt_but_f1_opens_help(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    from tui.screens import HelpScreen

    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("w", "h", "y", "question_mark")
        assert app.query_one("#prompt", HistoryInput).value == "why?"
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_chat_follows_new_messages_only_while_the_reader_is_at_the_bottom(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    app = app_factory()
    async with app.run_test(size=(100, 30)) as pilot:
        log = app.chat.chat_log
        for index in range(30):
            await log.add_note(f"note {index}")
        await pilot.pause()
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        log.scroll_to(y=0, animate=False)  # the reader scrolls up to read
        await pilot.pause()
        await log.add_note("arrives while reading")
        await pilot.pause()
        assert log.scroll_y == 0
        log.scroll_end(animate=False)  # back at the bottom: following again
        await pilot.pause()
        await log.add_note("arrives at the bottom")
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y


async def test_the_prompt_is_stored_before_the_server_answers(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    chat_server.behaviour = chat_behaviour(delay_s=0.5, methods=frozenset({"Predict"}))
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "do not lose me")
        assert app.chat.transcript is not None
        pending = app.chat.transcript.pending_prompts()
        assert [m.text for m in pending] == ["do not lose me"]  # written, not yet answered
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        assert app.chat.transcript.pending_prompts() == []


async def test_a_broken_tokenizer_file_is_reported_inline(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp], tmp_path: Path
) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    config = make_config(
        model_serving={"tensorflow_serving": {"host": "127.0.0.1"}},
        models=[
            {"name": "bert", "model_name": "deepchat_model",
             "adapter": {"kind": "tokens", "tokenizer_file": str(broken)}},
        ],
    )  # fmt: skip
    app = app_factory((chat_server.target,), config=config)
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "hello")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        text = visible_text(answered(app)[0])
        assert "ADAPTER_CONFIG" in text and "tokenizer.json: cannot load it" in text
        assert chat_server.calls_to("Predict") == []
