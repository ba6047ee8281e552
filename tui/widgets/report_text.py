"""Bench reports in the console: a run's summary, or a comparison, drawn as tables and notes.

core.report.text builds each report as text parts (title, tables, notes), the same parts its
Markdown is written from; ReportView draws them with Rich tables in one Static. (Textual's
Markdown widget would parse the Markdown back into the same tables, and loading it brings
markdown-it, Pygments and linkify-it with it: about 7 MB of the console's memory.)
Every cell is literal text: a label or a model name is never read as markup.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from core.report.text import ReportText, TextTable

# Wide enough for any table's natural width.
_UNBOUNDED = 10_000


def table_renderable(table: TextTable) -> Table:
    """A Rich table of the cells, header in bold, figures right-aligned."""
    drawn = Table(
        box=box.SIMPLE_HEAD,
        header_style="bold",
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for title, figure in zip(table.header, table.figures, strict=True):
        drawn.add_column(Text(title), justify="right" if figure else "left", overflow="fold")
    for row in table.rows:
        drawn.add_row(*(Text(cell) for cell in row))
    return drawn


def transposed(table: TextTable) -> Table:
    """One row per column of a one-row table: its header beside its cell."""
    drawn = Table.grid(padding=(0, 2))
    drawn.add_column(style="bold", no_wrap=True)
    drawn.add_column(overflow="fold")
    for title, cell in zip(table.header, table.rows[0], strict=True):
        drawn.add_row(Text(title), Text(cell))
    return drawn


class FittedTable:
    """A table drawn across when it fits the width; a one-row table that does not, downwards."""

    def __init__(self, table: TextTable) -> None:
        self.table = table
        self.across = table_renderable(table)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = Measurement.get(console, options.update_width(_UNBOUNDED), self.across)
        if natural.maximum <= options.max_width or len(self.table.rows) != 1:
            yield self.across
        else:
            yield transposed(self.table)


def report_renderable(report: ReportText) -> RenderableType:
    """The summary: its title, the results table, the notes as a bullet list, errors by code."""
    notes = Table.grid(padding=(0, 1))
    notes.add_column(no_wrap=True)
    notes.add_column(overflow="fold")
    for note in report.notes:
        notes.add_row(Text("•"), Text(note))
    parts: list[RenderableType] = [
        Text(report.title, style="bold"),
        Text(""),
        FittedTable(report.results),
        Text(""),
        notes,
    ]
    if report.errors is not None:
        parts += [Text(""), FittedTable(report.errors)]
    return Group(*parts)


class ReportView(Static):
    """A run's summary or a comparison; `shown` is the text parts it draws (None when empty)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.shown: ReportText | TextTable | None = None

    def show(self, shown: ReportText | TextTable) -> None:
        """Draw a run's summary (ReportText) or a table (e.g. a comparison)."""
        self.shown = shown
        self.update(
            report_renderable(shown) if isinstance(shown, ReportText) else FittedTable(shown)
        )
