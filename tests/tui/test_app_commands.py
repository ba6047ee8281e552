"""Slash commands, the command palette and key bindings, against a real grpc.aio server."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from textual.widgets import Static

from tests.fixtures.fault_servicer import FaultServer
from tests.tui.conftest import make_config, wait_for
from tests.tui.test_app_chat import answered, send, visible_text
from tui.app import DeepChatApp
from tui.screens import HelpScreen
from tui.widgets.chat import ChatLog, CompareEntry, PromptEntry


def notes(app: DeepChatApp) -> list[str]:
    """Text of the console's notes in the chat pane."""
    return [str(note.render()) for note in app.query_one(ChatLog).query(".note").results(Static)]


async def connected(app: DeepChatApp, pilot) -> None:  # type: ignore[no-untyped-def]
    """Wait until the first model poll arrived."""
    await wait_for(pilot, lambda: app.model_state is not None)


async def test_version_label_and_latest_pin_the_model_spec(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        await send(app, pilot, "/version 1")
        assert app.chat.model.spec.version == 1
        await send(app, pilot, "pinned")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        assert "echo v1: pinned" in visible_text(answered(app)[0])
        assert chat_server.calls_to("Predict")[-1].request.model_spec.version.value == 1
        await send(app, pilot, "/version 7")
        assert "has no version 7; known versions: 1, 2" in notes(app)[-1]
        await send(app, pilot, "/label stable")
        assert app.chat.model.spec.version_label == "stable" and app.chat.model.spec.version is None
        await send(app, pilot, "labelled")
        await wait_for(pilot, lambda: len(answered(app)) == 2)
        assert chat_server.calls_to("Predict")[-1].request.model_spec.version_label == "stable"
        await send(app, pilot, "/version latest")
        assert app.chat.model.spec.version is None and app.chat.model.spec.version_label is None
        assert "following the latest version" in notes(app)[-1]
        assert "(latest)" in str(app.query_one("#chat-pane").border_title)


async def test_signature_and_model_switches(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        await send(app, pilot, "/signature nope")
        assert "has no signature 'nope'; its signatures: serving_default" in notes(app)[-1]
        assert app.chat.model.spec.signature_name == "serving_default"
        await send(app, pilot, "/model other_model")
        assert app.chat.model.spec.name == "other_model"
        assert "other_model" in str(app.query_one("#header").render())
        await wait_for(
            pilot, lambda: app.monitor is not None and app.monitor.spec.name == "other_model"
        )
        await send(app, pilot, "/model chat")  # back by its config name
        assert app.chat.model.spec.name == "deepchat_model"


async def test_compare_sends_one_prompt_to_two_versions_side_by_side(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(140, 40)) as pilot:
        await send(app, pilot, "/compare 1 2")
        assert "nothing sent yet to reuse" in notes(app)[-1]
        await send(app, pilot, '/compare 1 v2 what is a "label"?')
        await wait_for(pilot, lambda: len(answered(app)) == 2)
        compare = app.query_one(CompareEntry)
        left, right = compare.sides
        assert 'echo v1: what is a "label"?' in visible_text(left)
        assert 'echo v2: what is a "label"?' in visible_text(right)
        assert left.region.y == right.region.y and left.region.x < right.region.x
        versions = sorted(
            call.request.model_spec.version.value for call in chat_server.calls_to("Predict")
        )
        assert versions == [1, 2]
        assert app.chat.transcript is not None
        stored = [(m.role, m.model_version) for m in app.chat.transcript.messages()]
        assert stored.count(("assistant", 1)) == 1 and stored.count(("assistant", 2)) == 1
        # Without a prompt, /compare reuses the last one.
        await send(app, pilot, "/compare 2 1")
        await wait_for(pilot, lambda: len(answered(app)) == 4)
        assert [p.prompt for p in app.query(PromptEntry)][-1] == 'what is a "label"?'


async def test_export_clear_and_unknown_commands(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp], tmp_path: Path
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await send(app, pilot, "hello")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        await send(app, pilot, f"/export {tmp_path / 'out'}")
        exported = sorted((tmp_path / "out").iterdir())
        assert [path.suffix for path in exported] == [".jsonl", ".md"]
        assert "echo v2: hello" in exported[1].read_text()
        assert f"exported to {exported[1]}" in notes(app)[-1]
        await pilot.press("ctrl+e")  # the key exports into the data dir
        assert len(list((app.options.data_dir / "exports").iterdir())) == 2
        await send(app, pilot, "/clear")
        assert list(app.query(PromptEntry)) == [] and notes(app) == ["new conversation"]
        assert app.chat.transcript is not None and app.chat.transcript.messages() == []
        await send(app, pilot, "/frobnicate")
        assert "unknown command /frobnicate; expected one of /model" in notes(app)[-1]
        await send(app, pilot, "/version")
        assert notes(app)[-1].startswith("usage: /version N|latest")
        await send(app, pilot, "//etc/hosts is a path")
        await wait_for(pilot, lambda: len(answered(app)) == 1)
        assert "echo v2: /etc/hosts is a path" in visible_text(answered(app)[0])


async def test_burst_command_opens_the_burst_screen_or_says_why_not(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        await send(app, pilot, "/burst 50rps 1s")
        await pilot.pause()
        if importlib.util.find_spec("tui.burst") is None:
            assert "burst mode is not available yet" in notes(app)[-1]
        else:
            assert type(app.screen).__name__ == "BurstScreen"


async def test_command_palette_runs_console_commands(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"pin chat to version 1")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chat.model.spec.version == 1)
        await pilot.press("ctrl+p")
        await pilot.press(*"pause live")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.paused)


async def test_key_bindings_are_remapped_from_the_config(
    app_factory: Callable[..., DeepChatApp],
) -> None:
    config = make_config(
        model_serving={"tensorflow_serving": {"host": "127.0.0.1"}},
        ui={"key_bindings": {"help": "f9", "pause_panels": "f8"}},
    )
    app = app_factory(("127.0.0.1:1",), config=config, connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f9")
        assert isinstance(app.screen, HelpScreen)
        help_text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "F9" in help_text and "F8" in help_text and "/compare V1 V2 [PROMPT]" in help_text
        await pilot.press("escape")
        await pilot.press("f8")
        assert app.paused
        assert all(panel.border_subtitle == "paused" for panel in app.panels())


async def test_ctrl_q_closes_the_client_and_exits(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        client = app.session.client
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert client is not None and client._closed
    assert app.chat.transcript is None  # closed


async def test_a_burst_keeps_running_behind_the_console_and_f5_shows_it_again(
    chat_server: FaultServer, app_factory: Callable[..., DeepChatApp]
) -> None:
    from tui.burst import BurstScreen
    from tui.widgets.panels import BurstPanel

    app = app_factory((chat_server.target,))
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(app, pilot)
        await send(app, pilot, "/burst 20rps 30s")
        await wait_for(pilot, lambda: isinstance(app.screen, BurstScreen) and app.screen.running)
        burst_screen = app.screen
        await pilot.press("f4")
        assert app.screen is app.screen_stack[0]
        # The run goes on; its live figures reach the console's Burst panel.
        panel = app.query_one(BurstPanel)
        await wait_for(pilot, lambda: any("rps" in line for line in panel.summary))
        assert isinstance(burst_screen, BurstScreen) and burst_screen.running
        await send(app, pilot, "/burst 50rps 1s")  # not a second run
        assert "already running" in notes(app)[-1]
        await pilot.press("f5")
        await pilot.pause()
        assert app.screen is burst_screen
        await pilot.press("escape")  # abort
        await wait_for(pilot, lambda: not burst_screen.running)
