"""The replicas table (k9s-like): one row per replica of a FleetSnapshot, updated by diffing.

Rows are keyed by the replica's address; a new sample only rewrites the cells whose text or
colour changed (`update_cell`), adds replicas that appeared and removes those that left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import DataTable

from tui.format import (
    CRIT_STYLE,
    DIM_STYLE,
    OK_STYLE,
    VERSION_STATE_STYLES,
    WARN_STYLE,
    format_bytes,
    format_ms,
    format_rate,
    latency_style,
)

if TYPE_CHECKING:
    from core.fleet.snapshot import FleetSnapshot, ReplicaRow

COLUMNS = (
    ("replica", "replica"),
    ("state", "state"),
    ("qps", "QPS"),
    ("p50", "p50 ms"),
    ("p99", "p99 ms"),
    ("errors", "errors"),
    ("batch", "batch fill"),
    ("versions", "versions"),
    ("gpu", "GPU"),
    ("rss", "RSS"),
)

# (text, style) per column; style is Textual's (theme variables), resolved when drawn.
Cell = tuple[str, str]


def majority_versions(snapshot: FleetSnapshot) -> tuple[int, ...] | None:
    """The AVAILABLE version set most up replicas serve (None when no replica reports one)."""
    sets = Counter(row.available_versions for row in snapshot.replicas if row.up and row.versions)
    if not sets:
        return None
    # Ties go to the newest set, which is where a rollout is heading.
    return max(sets.items(), key=lambda item: (item[1], item[0]))[0]


def replica_cells(
    row: ReplicaRow, majority: tuple[int, ...] | None, warn_ms: float, crit_ms: float
) -> dict[str, Cell]:
    """The table's cells for one replica: text and style by column key."""
    figures = row.figures
    if row.up:
        state: Cell = ("up", f"bold {OK_STYLE}")
    else:
        state = ("DOWN", f"bold {CRIT_STYLE}")
    measured = figures.window_s is not None
    qps: Cell = (format_rate(figures.qps), "bold") if figures.qps is not None else _missing(row)
    latency = figures.latency
    p50: Cell = (
        (format_ms(latency.p50_ms), latency_style(latency.p50_ms, warn_ms, crit_ms))
        if latency.p50_ms is not None
        else _missing(row, measured=measured)
    )
    p99: Cell = (
        (format_ms(latency.p99_ms), latency_style(latency.p99_ms, warn_ms, crit_ms))
        if latency.p99_ms is not None
        else _missing(row, measured=measured)
    )
    if figures.errors:
        errors: Cell = (
            " ".join(f"{code} {count:,.0f}" for code, count in sorted(figures.errors.items())),
            CRIT_STYLE,
        )
    else:
        errors = ("–", DIM_STYLE) if measured else ("", DIM_STYLE)
    batch = figures.batch
    if batch.fill is not None and batch.size_mean is not None:
        inferred = "?" if batch.max_batch_size_inferred else ""
        batch_cell: Cell = (
            f"{batch.fill * 100:.0f}% {batch.size_mean:.1f}/{batch.max_batch_size}{inferred}",
            "",
        )
    elif batch.size_mean is not None:
        batch_cell = (f"{batch.size_mean:.1f}/?", "")
    else:
        batch_cell = _missing(row, measured=measured)
    versions = _versions_cell(row, majority)
    gpu = figures.gpu
    if gpu is not None and gpu.utilization_pct is not None:
        memory = f" {gpu.memory_used_mib:,.0f} MiB" if gpu.memory_used_mib is not None else ""
        gpu_cell: Cell = (f"{gpu.utilization_pct:.0f}%{memory}", "")
    else:
        gpu_cell = ("", DIM_STYLE)
    rss: Cell = (format_bytes(row.rss_bytes), "") if row.rss_bytes is not None else ("", DIM_STYLE)
    return {
        "replica": (row.address, "bold" if row.up else CRIT_STYLE),
        "state": state,
        "qps": qps,
        "p50": p50,
        "p99": p99,
        "errors": errors if row.up or figures.errors else (_short_error(row.error), CRIT_STYLE),
        "batch": batch_cell,
        "versions": versions,
        "gpu": gpu_cell,
        "rss": rss,
    }


def _missing(row: ReplicaRow, *, measured: bool = True) -> Cell:
    figures = row.figures
    if not row.up:
        return ("–", DIM_STYLE)
    if figures.metrics_error:
        return ("no metrics", WARN_STYLE)
    if not measured:
        return ("…", DIM_STYLE)
    if figures.not_exported:
        return ("not exported", DIM_STYLE)
    return ("–", DIM_STYLE)


def _short_error(error: str | None) -> str:
    return (error or "down").split(":", 1)[0]


def _versions_cell(row: ReplicaRow, majority: tuple[int, ...] | None) -> Cell:
    if not row.versions:
        return ("", DIM_STYLE)
    text = " ".join(f"v{version} {row.versions[version]}" for version in sorted(row.versions))
    skewed = row.up and majority is not None and row.available_versions != majority
    if skewed:
        return (f"{text}  ≠ fleet", f"bold {WARN_STYLE} reverse")
    states = {row.versions[version] for version in row.versions}
    if states == {"AVAILABLE"}:
        return (text, VERSION_STATE_STYLES["AVAILABLE"])
    return (text, WARN_STYLE if states & {"LOADING", "START", "UNLOADING"} else "")


class ReplicasTable(DataTable[Text]):
    """One row per replica; `show(snapshot)` updates only what changed."""

    def __init__(self, warn_ms: float, crit_ms: float, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.warn_ms = warn_ms
        self.crit_ms = crit_ms
        self._cells: dict[str, dict[str, Cell]] = {}
        self.cell_updates = 0
        """Cells rewritten since mount (a test checks rows are diffed, not rebuilt)."""

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, snapshot: FleetSnapshot) -> None:
        """Diff the table against a new sample: update changed cells, add and remove rows."""
        majority = majority_versions(snapshot)
        seen = set()
        for row in snapshot.replicas:
            seen.add(row.address)
            cells = replica_cells(row, majority, self.warn_ms, self.crit_ms)
            before = self._cells.get(row.address)
            if before is None:
                self.add_row(*(self._text(cells[key]) for key, _ in COLUMNS), key=row.address)
            else:
                for key, _ in COLUMNS:
                    if before[key] != cells[key]:
                        self.update_cell(
                            row.address, key, self._text(cells[key]), update_width=True
                        )
                        self.cell_updates += 1
            self._cells[row.address] = cells
        for gone in [address for address in self._cells if address not in seen]:
            self.remove_row(gone)
            del self._cells[gone]

    def cell_text(self, address: str, column: str) -> str:
        """What a cell shows (tests and the screen read it)."""
        return self._cells[address][column][0]

    @property
    def addresses(self) -> Sequence[str]:
        """The replicas shown, in table order."""
        return list(self._cells)

    def _text(self, cell: Cell) -> Text:
        text, style = cell
        return Text(text, style=self._rich_style(style))

    def _rich_style(self, style: str) -> str:
        """Textual's `$variable` colours as the theme's concrete colours, for Rich."""
        if "$" not in style:
            return style
        variables = self.app.get_css_variables()
        return " ".join(
            variables.get(word[1:], "") if word.startswith("$") else word for word in style.split()
        ).strip()
