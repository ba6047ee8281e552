"""ui.key_bindings checked against the console's actions: unknown actions and keys bound twice
are errors with file:line (issue 15, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.schema import ConfigError, load_config
from tests.core.test_config import isolated, write  # noqa: F401

# A console's actions and default keys, as tui.keys passes them.
ACTIONS = {
    "quit": "ctrl+q",
    "help": "f1,question_mark",
    "pause_panels": "f2,ctrl+o",
    "burst": "f5",
}


def key_errors(path: Path, **kwargs: object) -> list[str]:
    """The config errors of a file loaded with ACTIONS as the known actions."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, key_actions=ACTIONS, env={}, **kwargs)  # type: ignore[arg-type]
    return list(caught.value.messages)


def test_an_unknown_action_names_the_line_the_actions_and_the_closest(
    isolated: Path,  # noqa: F811
) -> None:
    path = write(isolated, "ui:\n  refresh_hz: 4\n  key_bindings:\n    qiut: ctrl+x\n")
    assert key_errors(path) == [
        f"{path}:4: ui.key_bindings.qiut: expected one of quit, help, pause_panels, burst "
        "(did you mean 'quit'?), got 'qiut'"
    ]
    path = write(isolated, "ui:\n  key_bindings: {launch_rockets: f12}\n", name="other.yaml")
    assert key_errors(path) == [
        f"{path}:2: ui.key_bindings.launch_rockets: expected one of quit, help, pause_panels, "
        "burst, got 'launch_rockets'"
    ]


def test_a_key_bound_to_two_actions_names_both(isolated: Path) -> None:  # noqa: F811
    path = write(
        isolated,
        "ui:\n  key_bindings:\n    help: ctrl+q\n    pause_panels: f9\n    burst: f8,f9\n",
    )
    assert key_errors(path) == [
        f"{path}:3: ui.key_bindings.help: expected a key no other action uses, got 'ctrl+q', "
        "also bound to quit (its default key)",
        f"{path}:5: ui.key_bindings.burst: expected a key no other action uses, got 'f9', "
        f"also bound to pause_panels ({path}:4)",
    ]


def test_a_key_repeated_in_one_action_and_env_overrides_are_checked(
    isolated: Path,  # noqa: F811
) -> None:
    path = write(isolated, "ui:\n  key_bindings:\n    burst: f8,f8\n")
    assert key_errors(path) == [
        f"{path}:3: ui.key_bindings.burst: expected each key once, got 'f8' twice"
    ]
    path = write(isolated, "ui: {}\n", name="empty.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, key_actions=ACTIONS, env={"DEEPCHAT_TFS_UI__KEY_BINDINGS__QUTI": "f3"})
    assert caught.value.messages[0].startswith(
        "DEEPCHAT_TFS_UI__KEY_BINDINGS__QUTI: ui.key_bindings.quti: expected one of"
    )


def test_remapping_away_from_a_taken_key_and_no_actions_given_pass(
    isolated: Path,  # noqa: F811
) -> None:
    # quit moves to f1 and help moves off it: no key runs two actions.
    path = write(isolated, "ui:\n  key_bindings:\n    quit: f1\n    help: f9,question_mark\n")
    loaded = load_config(path, key_actions=ACTIONS, env={})
    assert loaded.config.ui.key_bindings == {"quit": "f1", "help": "f9,question_mark"}
    # Without the console's actions (bench, serve) the bindings are not the loader's business.
    path = write(isolated, "ui:\n  key_bindings:\n    qiut: ctrl+x\n", name="bench.yaml")
    assert load_config(path, env={}).config.ui.key_bindings == {"qiut": "ctrl+x"}
