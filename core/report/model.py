"""Load-run reports: the JSON document (`BenchReport`), building it from a run, saving and loading.

`BenchReport` validates a file against the documented fields (other fields may be added), so
reports written by older versions still load. Text and Markdown rendering live in core.report.text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.client.errors import CLIENT, ORIGINS, SERVER, TRANSPORT
from core.identity import reports_dir
from core.load.burst import BurstResult
from core.metrics.load import summarize_ms
from core.report.slo import SloCheck

REPORT_VERSION = 1
# The fields every report has; readers may rely on them.
REPORT_FIELDS = (
    "target",
    "model",
    "mode",
    "offered_rps",
    "achieved_rps",
    "duration_s",
    "requests",
    "ok",
    "errors",
    "latency_ms",
    "uncorrected_latency_ms",
    "late_sends",
    "batch",
    "versions",
)


# Errors of a report (or a merged part) that recorded no origin for them.
UNRECORDED_ORIGIN = "unrecorded"
# Origins in the order reports show them.
ORIGIN_ORDER: tuple[str, ...] = (*ORIGINS, UNRECORDED_ORIGIN)


def origin_totals(
    errors: Mapping[str, int], error_origins: Mapping[str, Mapping[str, int]] | None
) -> dict[str, int] | None:
    """Failed requests per origin over all codes (see BenchReport.errors_by_origin)."""
    if error_origins is None:
        return None
    totals = dict.fromkeys(ORIGIN_ORDER, 0)
    for code, count in errors.items():
        by_origin = code_origins(code, count, error_origins)
        for origin, part in by_origin.items():
            totals[origin] = totals.get(origin, 0) + part
    return {origin: count for origin, count in totals.items() if count}


def code_origins(
    code: str, count: int, error_origins: Mapping[str, Mapping[str, int]]
) -> dict[str, int]:
    """One code's count by origin; what its origins do not cover is UNRECORDED_ORIGIN."""
    by_origin = {origin: n for origin, n in error_origins.get(code, {}).items() if n}
    rest = count - sum(by_origin.values())
    if rest > 0:
        by_origin[UNRECORDED_ORIGIN] = rest
    return by_origin


class LatencyMs(BaseModel):
    """Latency percentiles, max and mean in milliseconds (null when nothing was measured)."""

    model_config = ConfigDict(extra="forbid")

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    max: float | None
    mean: float | None


class BatchFigures(BaseModel):
    """Client-side micro-batching: mean rows per RPC and mean fill of --batch-size."""

    model_config = ConfigDict(extra="allow")

    size_mean: float | None
    fill_mean: float | None
    max_size: int | None = None
    batches: int = 0


class WarmupFigures(BaseModel):
    """The warm-up before the measured window: load at the run's rate, kept out of its figures."""

    model_config = ConfigDict(extra="allow")

    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    latency_ms: LatencyMs
    error_origins: dict[str, dict[str, int]] | None = None


class Histograms(BaseModel):
    """The run's HDR histograms (µs) in HdrHistogram's compressed base64 encoding, for merging."""

    model_config = ConfigDict(extra="allow")

    corrected: str
    uncorrected: str
    schedule_lag: str | None = None


class SloOutcome(BaseModel):
    """One --slo term's result."""

    term: str
    actual: float | None
    unit: str
    passed: bool


class BenchReport(BaseModel):
    """One load run's report, as written to JSON."""

    model_config = ConfigDict(extra="allow")

    target: str
    model: str
    mode: Literal["open", "closed"]
    offered_rps: float | None
    achieved_rps: float
    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    latency_ms: LatencyMs
    uncorrected_latency_ms: LatencyMs
    late_sends: int
    batch: BatchFigures
    versions: dict[str, int]
    report_version: int = REPORT_VERSION
    label: str = ""
    signature: str = "serving_default"
    schedule: str | None = None
    concurrency: int | None = None
    workers: int = 1
    max_inflight: int | None = None
    timeout_s: float | None = None
    started_at: str | None = None
    aborted: bool = False
    failures: list[str] = Field(default_factory=list)
    schedule_lag_ms: LatencyMs | None = None
    late_threshold_ms: float | None = None
    slo: list[SloOutcome] | None = None
    protocol: Literal["grpc", "rest"] = "grpc"
    # Requests sent in the measured window (requests counts the ones that finished).
    issued: int | None = None
    # The measured window's start in seconds since the epoch (started_at is the same, ISO 8601).
    started_epoch: float | None = None
    warmup: WarmupFigures | None = None
    histograms: Histograms | None = None
    # What the server's own metrics saw during the measured window (core.report.server_side).
    server: dict[str, Any] | None = None
    abort_reason: str | None = None
    # For a merged report: the reports it was merged from (labels and targets).
    merged_from: list[dict[str, Any]] | None = None
    # Each error code's count by where its status came from, {code: {origin: count}}: "server"
    # (the server answered with it), "transport" (no answer: the connection failed or broke) or
    # "client" (this client's own deadline or cancel); see core.client.errors. None in reports
    # written before origins were recorded; a merged report counts the parts that had them.
    error_origins: dict[str, dict[str, int]] | None = None

    @property
    def error_count(self) -> int:
        """Requests that failed, over all status codes."""
        return sum(self.errors.values())

    @property
    def errors_by_origin(self) -> dict[str, int] | None:
        """Failed requests per origin over all codes, in ORIGIN_ORDER; errors the report has no
        origin for are UNRECORDED_ORIGIN. None when the report records no origins at all."""
        return origin_totals(self.errors, self.error_origins)

    @property
    def server_errors(self) -> int | None:
        """Requests the server answered with an error; None without recorded origins."""
        return self._origin_count(SERVER)

    @property
    def transport_errors(self) -> int | None:
        """Requests that got no answer (the connection failed); None without recorded origins."""
        return self._origin_count(TRANSPORT)

    @property
    def client_errors(self) -> int | None:
        """Requests this client gave up (deadline, cancel); None without recorded origins."""
        return self._origin_count(CLIENT)

    def _origin_count(self, origin: str) -> int | None:
        totals = self.errors_by_origin
        return None if totals is None else totals.get(origin, 0)

    @property
    def success_rate(self) -> float | None:
        """Share of requests that succeeded, 0..1; None without requests."""
        return self.ok / self.requests if self.requests else None

    @property
    def slo_passed(self) -> bool | None:
        """Whether every --slo term was met; None without --slo."""
        return None if self.slo is None else all(outcome.passed for outcome in self.slo)

    def with_slo(self, checks: Sequence[SloCheck]) -> BenchReport:
        """A copy carrying the outcome of the --slo terms."""
        outcomes = [
            SloOutcome(term=c.term, actual=c.actual, unit=c.unit, passed=c.passed) for c in checks
        ]
        return self.model_copy(update={"slo": outcomes})

    def to_json(self) -> str:
        """The report as indented JSON text."""
        return self.model_dump_json(indent=2) + "\n"


def build_report(result: BurstResult, label: str | None = None) -> BenchReport:
    """The report of a finished (or aborted) BurstResult."""
    from core.metrics.load import LATE_THRESHOLD_S

    spec, totals = result.spec, result.totals
    batch_size_mean = totals.batch_size_mean
    fill_mean = (
        batch_size_mean / spec.batch_size
        if batch_size_mean is not None and spec.batch_size
        else None
    )
    duration_s = result.load_phase_s
    return BenchReport(
        label=label or spec.describe(),
        target=result.target.label,
        model=result.target.model.name,
        signature=result.target.model.signature_name,
        mode=spec.mode,
        schedule=spec.schedule if spec.mode == "open" else None,
        concurrency=spec.concurrency if spec.mode == "closed" else None,
        offered_rps=_round(result.offered_rps),
        achieved_rps=round(totals.issued / duration_s, 3) if duration_s > 0 else 0.0,
        duration_s=round(duration_s, 3),
        requests=totals.finished,
        ok=totals.ok,
        errors=dict(sorted(totals.errors.items())),
        error_origins=totals.errors_by_origin(),
        latency_ms=LatencyMs(**summarize_ms(totals.corrected)),
        uncorrected_latency_ms=LatencyMs(**summarize_ms(totals.uncorrected)),
        late_sends=totals.late_sends,
        late_threshold_ms=LATE_THRESHOLD_S * 1000,
        schedule_lag_ms=LatencyMs(**summarize_ms(totals.schedule_lag)),
        batch=BatchFigures(
            size_mean=_round(batch_size_mean),
            fill_mean=_round(fill_mean),
            max_size=spec.batch_size,
            batches=totals.batches,
        ),
        versions={str(version): count for version, count in sorted(totals.versions.items())},
        workers=result.workers,
        max_inflight=spec.max_inflight,
        timeout_s=spec.timeout_s,
        started_at=result.started_at.isoformat(timespec="seconds"),
        aborted=result.aborted,
        failures=list(result.failures),
        protocol="rest" if result.target.protocol == "rest" else "grpc",
        issued=totals.issued,
        started_epoch=_round(result.started_epoch, 6),
        warmup=_warmup_figures(result),
        histograms=Histograms(
            corrected=totals.corrected.encode().decode("ascii"),
            uncorrected=totals.uncorrected.encode().decode("ascii"),
            schedule_lag=totals.schedule_lag.encode().decode("ascii"),
        ),
        abort_reason=result.abort_reason,
    )


def _warmup_figures(result: BurstResult) -> WarmupFigures | None:
    warm = result.warmup_totals
    if warm is None:
        return None
    return WarmupFigures(
        duration_s=result.warmup_s,
        requests=warm.finished,
        ok=warm.ok,
        errors=dict(sorted(warm.errors.items())),
        latency_ms=LatencyMs(**summarize_ms(warm.corrected)),
        error_origins=warm.errors_by_origin(),
    )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def validate_report(data: Mapping[str, Any] | str | bytes, source: str = "report") -> BenchReport:
    """A BenchReport from JSON data; ValueError naming the source, the field and the problem."""
    try:
        raw = json.loads(data) if isinstance(data, str | bytes) else dict(data)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{source}: expected a JSON object with the report fields, got {type(raw).__name__}"
        )
    missing = [name for name in REPORT_FIELDS if name not in raw]
    if missing:
        raise ValueError(f"{source}: not a bench report; missing fields: {', '.join(missing)}")
    try:
        return BenchReport.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ValueError(f"{source}: {problems}") from None


def load_report(path: str | Path) -> BenchReport:
    """Read and validate a report JSON file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{file}: cannot read it: {error.strerror}") from None
    return validate_report(text, source=str(file))


def default_reports_dir() -> Path:
    """Where reports are kept for the console's past-reports list (or $DEEPCHAT_TFS_REPORTS_DIR)."""
    return reports_dir()


def save_report(
    report: BenchReport, path: Path | None = None, directory: Path | None = None
) -> Path:
    """Write a report to `path`, or to a new time-stamped file in the reports directory."""
    if path is None:
        folder = directory or default_reports_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = (report.started_at or "run").replace(":", "").replace("-", "")[:15]
        path = folder / f"bench-{stamp}.json"
        suffix = 1
        while path.exists():
            suffix += 1
            path = folder / f"bench-{stamp}-{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json(), encoding="utf-8")
    return path


def list_reports(directory: Path | None = None) -> list[tuple[Path, BenchReport]]:
    """Reports in a directory, newest first; files that are not reports are skipped."""
    folder = directory or default_reports_dir()
    found = []
    for file in sorted(folder.glob("*.json"), key=lambda item: item.stat().st_mtime, reverse=True):
        try:
            found.append((file, load_report(file)))
        except ValueError:
            continue
    return found
