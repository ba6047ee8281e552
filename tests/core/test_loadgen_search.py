"""--find-max's search and --sweep's settings (core.bench.search)."""

from __future__ import annotations

import pytest

from core.bench.search import find_max_rate, sweep_specs
from core.load.spec import LoadSpec
from core.report.model import BenchReport, build_report
from core.report.slo import parse_slo
from tests.core.test_report import make_result


def report_at(rate: float, p99_ms: float, achieved_share: float = 1.0) -> BenchReport:
    """A report whose latencies are p99_ms for 2 % of requests, at `rate` offered."""
    report = build_report(make_result([1.0] * 98 + [p99_ms] * 2))
    return report.model_copy(update={"offered_rps": rate, "achieved_rps": rate * achieved_share})


async def test_find_max_doubles_then_bisects_to_the_limit() -> None:
    probed: list[float] = []

    async def probe(rate: float) -> BenchReport:
        probed.append(rate)
        return report_at(rate, p99_ms=rate / 10)  # p99 < 100 ms holds below 1,000 req/s

    result = await find_max_rate(probe, parse_slo("p99<100ms"), start_rps=100)
    assert probed[:5] == [100, 200, 400, 800, 1600]
    assert result.best_rps is not None and 950 <= result.best_rps < 1000
    assert result.best_report is not None
    assert all(probe.passed == (probe.rate < 1000) for probe in result.probes)


async def test_find_max_goes_down_when_the_first_rate_fails() -> None:
    async def probe(rate: float) -> BenchReport:
        return report_at(rate, p99_ms=rate)  # p99 < 100 ms only below 100 req/s

    result = await find_max_rate(probe, parse_slo("p99<100ms"), start_rps=400)
    assert [probe.rate for probe in result.probes][:3] == [400, 200, 100]
    assert result.best_rps is not None and 95 <= result.best_rps < 100


async def test_a_rate_the_generator_could_not_offer_does_not_count_as_met() -> None:
    async def probe(rate: float) -> BenchReport:
        return report_at(rate, p99_ms=1.0, achieved_share=0.5 if rate > 300 else 1.0)

    result = await find_max_rate(probe, parse_slo("p99<100ms"), start_rps=100)
    assert result.best_rps is not None and 285 <= result.best_rps <= 300


async def test_find_max_with_no_passing_rate_reports_none() -> None:
    async def probe(rate: float) -> BenchReport:
        return report_at(rate, p99_ms=500.0)

    result = await find_max_rate(probe, parse_slo("p99<100ms"), max_probes=4)
    assert result.best_rps is None and result.best_report is None
    assert len(result.probes) == 4


def test_sweep_settings_change_one_parameter() -> None:
    spec = LoadSpec(rate=100, duration_s=1.0)
    parameter, settings = sweep_specs(spec, "batch-size=1,8,32")
    assert parameter == "batch-size"
    assert [(label, swept.batch_size) for label, swept in settings] == [
        ("batch-size=1", None),
        ("batch-size=8", 8),
        ("batch-size=32", 32),
    ]
    _, closed = sweep_specs(spec, "concurrency=2,4")
    assert [(swept.mode, swept.concurrency) for _, swept in closed] == [
        ("closed", 2),
        ("closed", 4),
    ]
    with pytest.raises(ValueError, match="PARAM one of"):
        sweep_specs(spec, "colour=red")
    with pytest.raises(ValueError, match="'x' is not a number"):
        sweep_specs(spec, "rate=100,x")
