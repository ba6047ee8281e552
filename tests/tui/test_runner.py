"""The slash runner: one handler per command of the grammar, no more."""

from __future__ import annotations

from pathlib import Path

from tests.tui.conftest import offline_options
from tui.runner import SlashRunner
from tui.slash import SLASH_COMMANDS
from tui.widgets.chat_pane import ChatPane


def test_every_command_of_the_grammar_has_a_handler_and_no_handler_is_extra(
    tmp_path: Path,
) -> None:
    options = offline_options(tmp_path)

    def no_session() -> object:
        raise AssertionError("the runner's table needs no session")

    chat = ChatPane(
        options.models[0],
        no_session,  # type: ignore[arg-type]
        transcript_path=options.transcript_path,
        exports_dir=options.exports_dir,
        target_label=options.target_label,
    )
    runner = SlashRunner(options, chat, lambda: None)
    assert set(runner.handlers) == set(SLASH_COMMANDS)
    assert all(callable(handler) for handler in runner.handlers.values())
