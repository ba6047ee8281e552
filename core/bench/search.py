"""Runs made of several load runs: the highest rate that meets an SLO, and parameter sweeps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.identity import reports_dir
from core.load.spec import LoadSpec
from core.report.model import BenchReport
from core.report.slo import SloTerm, evaluate_slo

# A probe counts as meeting the SLO only if the generator also offered (nearly) what was asked:
# a rate the generator could not send is not a rate the server was shown to sustain.
ACHIEVED_SHARE_REQUIRED = 0.95

SWEEP_PARAMETERS = ("batch-size", "concurrency", "rate", "workers", "max-inflight")


@dataclass(frozen=True)
class Probe:
    """One run of a --find-max search."""

    rate: float
    passed: bool
    report: BenchReport


@dataclass
class FindMaxResult:
    """What --find-max found: the highest passing rate (None if none passed) and every probe."""

    best_rps: float | None
    probes: list[Probe] = field(default_factory=list)

    @property
    def best_report(self) -> BenchReport | None:
        """The report of the highest passing probe."""
        passing = [probe for probe in self.probes if probe.passed]
        return max(passing, key=lambda probe: probe.rate).report if passing else None


def meets(report: BenchReport, terms: list[SloTerm]) -> bool:
    """Whether a run met every term, kept up with its offered rate and was not aborted."""
    if report.aborted or report.ok == 0:
        return False
    if report.offered_rps and report.achieved_rps < ACHIEVED_SHARE_REQUIRED * report.offered_rps:
        return False
    return all(check.passed for check in evaluate_slo(terms, report.model_dump()))


async def find_max_rate(
    probe: Callable[[float], Awaitable[BenchReport]],
    terms: list[SloTerm],
    *,
    start_rps: float = 100.0,
    precision: float = 0.05,
    max_probes: int = 12,
) -> FindMaxResult:
    """Double the rate until the SLO breaks, then bisect to within `precision` of the limit."""
    result = FindMaxResult(best_rps=None)
    passing: float | None = None
    failing: float | None = None
    while len(result.probes) < max_probes:
        if passing is not None and failing is not None and failing - passing <= precision * failing:
            break
        if failing is None:
            rate = passing * 2 if passing is not None else start_rps
        elif passing is None:
            rate = failing / 2
        else:
            rate = (passing + failing) / 2
        report = await probe(rate)
        passed = meets(report, terms)
        result.probes.append(Probe(rate, passed, report))
        if report.aborted:
            break
        if passed:
            passing = rate
        else:
            failing = rate
    result.best_rps = passing
    return result


def sweep_specs(spec: LoadSpec, sweep: str) -> tuple[str, list[tuple[str, LoadSpec]]]:
    """Parse --sweep PARAM=V1,V2,... into (param, [(label, spec), ...]); ValueError if wrong."""
    parameter, _, values_text = sweep.partition("=")
    parameter = parameter.strip().replace("_", "-")
    if parameter not in SWEEP_PARAMETERS or not values_text.strip():
        raise ValueError(
            f"--sweep {sweep!r}: expected PARAM=V1,V2,... with PARAM one of "
            + ", ".join(SWEEP_PARAMETERS)
        )
    settings = []
    for text in values_text.split(","):
        try:
            value = float(text) if parameter == "rate" else int(text)
        except ValueError:
            raise ValueError(f"--sweep {sweep!r}: {text!r} is not a number") from None
        if parameter == "batch-size":
            swept = replace(spec, batch_size=int(value) if value > 1 else None)
        elif parameter == "concurrency":
            swept = replace(spec, mode="closed", concurrency=int(value), rate=None)
        elif parameter == "rate":
            swept = replace(spec, mode="open", rate=float(value), concurrency=None)
        elif parameter == "workers":
            swept = replace(spec, workers=int(value))
        else:
            swept = replace(spec, max_inflight=int(value))
        try:
            settings.append((f"{parameter}={text.strip()}", swept.check()))
        except ValueError as error:
            raise ValueError(f"--sweep {sweep!r}: {parameter}={text.strip()}: {error}") from None
    return parameter, settings


def find_max_report(
    result: FindMaxResult, slo_text: str, terms: list[SloTerm]
) -> BenchReport | None:
    """The best probe's report with its SLO checks and the whole search under "find_max"."""
    best = result.best_report
    if best is None:
        return None
    search = {
        "slo": slo_text,
        "best_rps": result.best_rps,
        "probes": [
            {"rate": p.rate, "passed": p.passed, "achieved_rps": p.report.achieved_rps,
             "latency_ms": p.report.latency_ms.model_dump(), "errors": p.report.errors}
            for p in result.probes
        ],
    }  # fmt: skip
    best = best.with_slo(evaluate_slo(terms, best.model_dump()))
    return best.model_copy(update={"find_max": search})


def sweep_document(parameter: str, labels: list[str], reports: list[BenchReport]) -> dict[str, Any]:
    """One JSON document for a sweep: the swept parameter, its values and each run's report."""
    return {
        "sweep": {"parameter": parameter, "values": labels},
        "reports": [report.model_dump(mode="json") for report in reports],
    }


def save_sweep(document: dict[str, Any], path: Path | None = None) -> Path:
    """Write a sweep document (default: the reports dir, named by its first run's start)."""
    reports = document["reports"]
    started = (reports[0].get("started_at") if reports else None) or "run"
    stamp = started.replace(":", "").replace("-", "")[:15]
    target = path or reports_dir() / f"sweep-{stamp}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return target
