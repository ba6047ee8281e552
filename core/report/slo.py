"""Service level objectives for load runs: `--slo "p99<100ms,errors<0.1%"` parsed and checked."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.metrics.latency import LatencyRecorder

SLO_HELP = (
    "comma-separated terms METRIC OP VALUE: latency p50|p90|p95|p99|p999|max|mean in ms, s or us "
    "(e.g. p99<100ms), errors or late as a % or a count (errors<0.1%, late<=5), success in % "
    "(success>=99.9%), rps for the achieved rate (rps>=500); OP is <, <=, > or >="
)

LATENCY_METRICS = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_TERM = re.compile(
    r"^\s*(?P<metric>[a-z0-9.]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[0-9]*\.?[0-9]+)\s*(?P<unit>ms|us|s|%)?\s*$"
)
_LATENCY_UNIT_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001, None: 1.0}


@dataclass(frozen=True)
class SloTerm:
    """One objective, e.g. p99 < 100 ms (threshold always in ms for latency, % for ratios)."""

    metric: str
    op: str
    threshold: float
    unit: str  # "ms", "%", "count" or "rps"
    text: str

    def actual(self, report: Mapping[str, Any]) -> float | None:
        """This term's measured value in a report (None when the report has none)."""
        requests = int(report.get("requests") or 0)
        errors = sum(int(count) for count in (report.get("errors") or {}).values())
        if self.metric in LATENCY_METRICS:
            value = (report.get("latency_ms") or {}).get(self.metric)
            return None if value is None else float(value)
        if self.metric == "errors":
            return _ratio_or_count(errors, requests, self.unit)
        if self.metric == "late":
            return _ratio_or_count(int(report.get("late_sends") or 0), requests, self.unit)
        if self.metric == "success":
            return None if requests == 0 else 100.0 * (requests - errors) / requests
        if self.metric == "rps":
            return float(report.get("achieved_rps") or 0.0)
        raise AssertionError(f"unchecked SLO metric {self.metric}")

    def check(self, report: Mapping[str, Any]) -> SloCheck:
        """Whether a report meets this term; a missing value fails."""
        actual = self.actual(report)
        passed = actual is not None and _OPERATORS[self.op](actual, self.threshold)
        return SloCheck(self.text, actual, self.unit, passed)


@dataclass(frozen=True)
class SloCheck:
    """The outcome of one term against one report."""

    term: str
    actual: float | None
    unit: str
    passed: bool

    def describe(self) -> str:
        """e.g. 'p99<100ms: 87.2 ms ok' or 'errors<0.1%: 2.5 % BREACHED'."""
        shown = "n/a" if self.actual is None else f"{self.actual:,.3g} {self.unit}"
        return f"{self.term}: {shown} {'ok' if self.passed else 'BREACHED'}"


def _ratio_or_count(count: int, requests: int, unit: str) -> float | None:
    if unit == "count":
        return float(count)
    return None if requests == 0 else 100.0 * count / requests


def parse_slo(text: str) -> list[SloTerm]:
    """Parse --slo's text; ValueError naming the term that is wrong and what is expected."""
    terms = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        match = _TERM.match(raw.lower())
        if match is None:
            raise ValueError(
                f"--slo {text!r}: term {raw.strip()!r} not understood; expected {SLO_HELP}"
            )
        metric, op, unit = match["metric"], match["op"], match["unit"]
        value = float(match["value"])
        metric = {"p99.9": "p999", "error": "errors", "qps": "rps", "late_sends": "late"}.get(
            metric, metric
        )
        if metric in LATENCY_METRICS and unit != "%":
            terms.append(SloTerm(metric, op, value * _LATENCY_UNIT_MS[unit], "ms", raw.strip()))
        elif metric in ("errors", "late") and unit in ("%", None):
            terms.append(SloTerm(metric, op, value, "%" if unit == "%" else "count", raw.strip()))
        elif metric == "success" and unit in ("%", None):
            terms.append(SloTerm(metric, op, value, "%", raw.strip()))
        elif metric == "rps" and unit is None:
            terms.append(SloTerm(metric, op, value, "rps", raw.strip()))
        else:
            raise ValueError(
                f"--slo {text!r}: term {raw.strip()!r} has an unknown metric or unit; "
                f"expected {SLO_HELP}"
            )
    if not terms:
        raise ValueError(f"--slo {text!r}: no terms; expected {SLO_HELP}")
    return terms


def evaluate_slo(terms: list[SloTerm], report: Mapping[str, Any]) -> list[SloCheck]:
    """Check every term against a report (a dict in the report's JSON shape)."""
    return [term.check(report) for term in terms]


# Quantile of each latency metric; max is the quantile 1.
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999, "max": 1.0}
# Without a known request total, a live verdict waits for this many answers.
LIVE_VERDICT_MIN_REQUESTS = 100


def clearly_breached(
    terms: list[SloTerm],
    *,
    finished: int,
    errors: int,
    late_sends: int,
    corrected: LatencyRecorder,
    planned_requests: int | None,
) -> SloTerm | None:
    """The first term that the run can no longer meet, or None (for --abort-on-breach).

    With the run's planned request total known, a term is lost once enough requests failed it
    that even a perfect rest of the run cannot bring it back; without one, once it fails on the
    figures so far after LIVE_VERDICT_MIN_REQUESTS answers.
    """
    if planned_requests is None and finished < LIVE_VERDICT_MIN_REQUESTS:
        return None
    total = float(planned_requests if planned_requests is not None else finished)
    for term in terms:
        if term.op not in ("<", "<="):
            if term.metric == "success" and term.op in (">", ">="):
                allowed_failures = (1 - term.threshold / 100) * total
                if errors > allowed_failures:
                    return term
            continue
        if term.metric in _QUANTILES:
            above = corrected.count_above(term.threshold / 1000)
            if above > (1 - _QUANTILES[term.metric]) * total:
                return term
        elif term.metric in ("errors", "late"):
            count = errors if term.metric == "errors" else late_sends
            limit = term.threshold if term.unit == "count" else term.threshold / 100 * total
            if count > limit or (term.op == "<" and count >= limit):
                return term
    return None
