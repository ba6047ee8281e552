"""The replicas screen: a summary line over the replicas table, fed every fleet sample.

Imported when first opened (F3 or /replicas), so the console's first frame never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.format import CRIT_STYLE, DIM_STYLE, OK_STYLE, WARN_STYLE, format_ms, format_rate
from tui.widgets.replicas import ReplicasTable

if TYPE_CHECKING:
    from core.fleet.snapshot import FleetSnapshot


class ReplicasScreen(Screen[None]):
    """Every replica's figures in one table (k9s-like); Escape, q or F3 goes back."""

    # Read when the screen first opens, not before the console's first frame.
    CSS_PATH = "screens.tcss"

    BINDINGS = [  # noqa: RUF012 (Textual's own BINDINGS are plain lists)
        Binding("escape,q,f3", "dismiss", "back", show=True),
    ]

    def __init__(self, warn_ms: float, crit_ms: float, snapshot: FleetSnapshot | None) -> None:
        super().__init__()
        self.table = ReplicasTable(warn_ms, crit_ms, id="replicas-table")
        self.summary = Static(id="replicas-summary")
        self.first_snapshot = snapshot

    def compose(self) -> ComposeResult:
        with Vertical(id="replicas-body") as body:
            body.border_title = "Replicas"
            body.border_subtitle = "esc to go back"
            yield self.summary
            yield self.table
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        if self.first_snapshot is not None:
            self.show(self.first_snapshot)
        else:
            self.summary.update(Content.styled("waiting for the first sample…", DIM_STYLE))

    def show(self, snapshot: FleetSnapshot | None, detail: str = "") -> None:
        """Take a new fleet sample (None with a detail when sampling failed)."""
        if snapshot is None:
            self.summary.update(Content.styled(detail or "no sample", DIM_STYLE))
            return
        self.table.show(snapshot)
        self.summary.update(fleet_summary(snapshot))

    async def action_dismiss(self, result: None = None) -> None:
        """Back to the console."""
        self.dismiss(result)


def fleet_summary(snapshot: FleetSnapshot) -> Content:
    """One line over the table: model, source, replicas up, fleet QPS, skew, problems."""
    rows = snapshot.replicas
    up = sum(row.up for row in rows)
    fleet = snapshot.fleet
    parts: list[Content | str] = [
        Content.styled(snapshot.model_name or "any model", "bold"),
        Content.styled(f"  {snapshot.source}  ", DIM_STYLE),
        Content.styled(
            f"{up}/{len(rows)} up", OK_STYLE if up == len(rows) and rows else f"bold {CRIT_STYLE}"
        ),
    ]
    if fleet.qps is not None:
        parts.append(f"  fleet {format_rate(fleet.qps)} QPS")
    if fleet.latency.p99_ms is not None:
        parts.append(
            Content.assemble(
                f"  p99 {format_ms(fleet.latency.p99_ms)} ms",
                Content.styled(" bucketed" if fleet.latency.bucketed else "", DIM_STYLE),
            )
        )
    if snapshot.version_skew:
        parts.append(Content.styled("  version skew", f"bold {WARN_STYLE}"))
    for problem in snapshot.problems[:2]:
        parts.append(Content.styled(f"  {problem}", CRIT_STYLE))
    return Content.assemble(*parts)
