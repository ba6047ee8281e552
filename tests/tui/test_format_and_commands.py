"""Pure helpers: number formats, threshold colours, bars, sparklines, slash command parsing."""

from __future__ import annotations

import re

import pytest

from tui.format import (
    CRIT_STYLE,
    DIM_STYLE,
    OK_STYLE,
    WARN_STYLE,
    bar,
    format_bytes,
    format_ms,
    format_percent,
    format_rate,
    latency_style,
    sparkline,
    success_style,
)
from tui.screens import key_display
from tui.slash import SlashError, parse_slash, parse_version


@pytest.mark.parametrize(
    ("latency_ms", "style"),
    [(None, DIM_STYLE), (5.0, OK_STYLE), (100.0, WARN_STYLE), (499.9, WARN_STYLE),
     (500.0, f"bold {CRIT_STYLE}")],
)  # fmt: skip
def test_latency_colours_follow_the_thresholds(latency_ms: float | None, style: str) -> None:
    assert latency_style(latency_ms, warn_ms=100, crit_ms=500) == style


def test_success_colours() -> None:
    assert success_style(None) == DIM_STYLE
    assert success_style(1.0) == OK_STYLE
    assert success_style(0.995) == WARN_STYLE
    assert success_style(0.5) == f"bold {CRIT_STYLE}"


def test_number_formats() -> None:
    assert [format_ms(v) for v in (None, 0.4241, 4.12, 41.6, 4100.0)] == [
        "–", "0.42", "4.1", "42", "4,100"
    ]  # fmt: skip
    assert format_rate(3.14) == "3.1" and format_rate(1842.4) == "1,842"
    assert format_percent(None) == "–" and format_percent(0.9991) == "99.9 %"
    assert format_bytes(None) == "n/a" and format_bytes(82 * 2**20) == "82 MB"
    assert format_bytes(12 * 2**30) == "12.0 GB"


def test_bar_fills_eighths_and_clamps() -> None:
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 16, 2) == "▏ "  # one eighth of one cell of two
    assert bar(2.0, 3) == "███" and bar(-1.0, 3) == "   "
    assert bar(None, 3) == "" and bar(0.5, 0) == ""


def test_sparkline_keeps_the_newest_values_and_scales_to_the_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.0] * 5, 5) == "▁▁▁▁▁"
    squeezed = sparkline(list(range(300)), 10)  # buckets of 30, each its max
    assert len(squeezed) == 10 and squeezed[-1] == "█"
    assert sparkline([], 5) == "" and sparkline([1.0], 0) == ""


def test_key_display_reads_like_keys() -> None:
    assert key_display("f1,question_mark") == "F1  ?"
    assert key_display("ctrl+q") == "^q"


def test_parse_slash_commands() -> None:
    assert parse_slash("hello") is None
    assert parse_slash("//not a command") is None
    command = parse_slash("/version 2")
    assert command is not None and command.name == "version" and command.args == ("2",)
    compare = parse_slash("/compare 1 2 what's a label?")
    assert compare is not None and compare.args[:2] == ("1", "2")
    assert compare.rest == "1 2 what's a label?"  # apostrophes survive in free text
    model = parse_slash('/model "my model"')
    assert model is not None and model.args == ("my model",)
    assert parse_slash("/HELP") is not None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/nope", "unknown command /nope; expected one of /model, /version"),
        ("/version", "usage: /version N|latest; expected 1 argument(s), got 0"),
        ("/version 1 2", "expected 1 argument(s), got 2"),
        ("/compare 1", "usage: /compare V1 V2 [PROMPT]; expected 2 or more argument(s), got 1"),
        ("/export a b", "expected up to 1 argument(s), got 2"),
        ('/model "unclosed', "cannot split the arguments"),
    ],
)
def test_parse_slash_errors_name_the_usage(line: str, message: str) -> None:
    with pytest.raises(SlashError, match=re.escape(message)):
        parse_slash(line)


def test_parse_version() -> None:
    assert parse_version("v2", "/version N") == 2
    with pytest.raises(SlashError, match="expected a version number, got 'two'"):
        parse_version("two", "/version N")


def test_the_readme_key_table_lists_the_apps_bindings() -> None:
    from pathlib import Path

    from textual.binding import Binding

    from tui.app import DeepChatApp

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", readme, flags=re.MULTILINE)
    bindings = {
        binding.id: binding.key
        for binding in DeepChatApp.BINDINGS
        if isinstance(binding, Binding) and binding.id
    }
    assert dict(rows) == bindings
