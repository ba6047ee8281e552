"""Number formatting and threshold colours for the console's panels (plain functions)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content

# Colours carry state at a glance; these are Textual theme variables, so themes restyle them.
OK_STYLE = "$success"
WARN_STYLE = "$warning"
CRIT_STYLE = "$error"
DIM_STYLE = "$foreground-muted"

VERSION_STATE_STYLES = {
    "AVAILABLE": f"bold {OK_STYLE}",
    "LOADING": WARN_STYLE,
    "START": WARN_STYLE,
    "UNLOADING": WARN_STYLE,
    "END": DIM_STYLE,
}

_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"


def latency_style(latency_ms: float | None, warn_ms: float, crit_ms: float) -> str:
    """Green below warn, yellow from warn, red from crit; dim when unknown."""
    if latency_ms is None:
        return DIM_STYLE
    if latency_ms >= crit_ms:
        return f"bold {CRIT_STYLE}"
    if latency_ms >= warn_ms:
        return WARN_STYLE
    return OK_STYLE


def success_style(success_rate: float | None) -> str:
    """Green at 99.9 % and above, yellow from 99 %, red below; dim when unknown."""
    if success_rate is None:
        return DIM_STYLE
    if success_rate >= 0.999:
        return OK_STYLE
    if success_rate >= 0.99:
        return WARN_STYLE
    return f"bold {CRIT_STYLE}"


def format_ms(milliseconds: float | None) -> str:
    """A latency with precision that fits its size: 0.42, 4.1, 41, 4,100."""
    if milliseconds is None:
        return "–"
    if milliseconds < 1:
        return f"{milliseconds:.2f}"
    if milliseconds < 10:
        return f"{milliseconds:.1f}"
    return f"{milliseconds:,.0f}"


def format_rate(per_second: float) -> str:
    """A rate with a thousands separator, one decimal below 10."""
    return f"{per_second:.1f}" if per_second < 10 else f"{per_second:,.0f}"


def format_percent(ratio: float | None, digits: int = 1) -> str:
    """A ratio as a percentage, '–' when unknown."""
    return "–" if ratio is None else f"{ratio * 100:.{digits}f} %"


def format_bytes(size: int | None) -> str:
    """A memory size in MB (or GB from 10 GB), 'n/a' when unknown."""
    if size is None:
        return "n/a"
    megabytes = size / 2**20
    return f"{megabytes / 1024:.1f} GB" if megabytes >= 10 * 1024 else f"{megabytes:,.0f} MB"


def bar(ratio: float | None, width: int) -> str:
    """A horizontal bar of eighth-blocks filling ratio (clamped to 0..1) of width cells."""
    if ratio is None or width <= 0:
        return ""
    eighths = round(max(0.0, min(1.0, ratio)) * width * 8)
    full, partial = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[partial] if partial else "")).ljust(width)


def sparkline(values: Sequence[float], width: int) -> str:
    """The last values as a one-line sparkline of width cells, each cell the max of its bucket."""
    if width <= 0 or not values:
        return ""
    buckets: list[float] = []
    size = max(1, -(-len(values) // width))  # ceil: every value lands in some cell
    for start in range(0, len(values), size):
        buckets.append(max(values[start : start + size]))
    buckets = buckets[-width:]
    top = max(buckets)
    if top <= 0:
        return _SPARKS[0] * len(buckets)
    return "".join(_SPARKS[min(7, int(value / top * 7.999))] for value in buckets)


def labelled(pairs: Sequence[tuple[str, str | Content, str]]) -> Content:
    """'label value' pairs joined by two spaces; value styled (third item), label dim."""
    parts: list[Content | str] = []
    for index, (label, value, style) in enumerate(pairs):
        if index:
            parts.append("  ")
        if label:
            parts.append(Content.styled(label + " ", DIM_STYLE))
        parts.append(value if isinstance(value, Content) else Content.styled(value, style))
    return Content.assemble(*parts)


def size_text(characters: int) -> str:
    """'12 KB', '1.0 MB': the size of a text for a note."""
    if characters < 1_000_000:
        return f"{max(1, round(characters / 1000))} KB"
    return f"{characters / 1_000_000:.1f} MB"
