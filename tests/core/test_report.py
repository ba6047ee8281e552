"""Report JSON, Markdown and comparison (core.report.model) and SLO terms (core.report.slo)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from core.client.serving import ClientSettings, ModelSpec
from core.load.burst import BurstResult, BurstTarget
from core.load.spec import LoadSpec
from core.metrics.load import LoadRecorder, LoadTotals
from core.report.model import (
    REPORT_FIELDS,
    BenchReport,
    build_report,
    list_reports,
    load_report,
    save_report,
    validate_report,
)
from core.report.slo import evaluate_slo, parse_slo
from core.report.text import (
    compare_reports,
    latency_chart_lines,
    render_markdown,
    render_table,
)


def make_result(
    latencies_ms: list[float],
    errors: dict[str, int] | None = None,
    spec: LoadSpec | None = None,
    origins: dict[str, str] | None = None,
) -> BurstResult:
    """A BurstResult whose sends were on time and took the given latencies; errors by code,
    each recorded with origins[code] when given (else with no origin)."""
    recorder = LoadRecorder()
    for latency_ms in latencies_ms:
        recorder.sent(0.0, 0.0)
        recorder.finished(0.0, 0.0, latency_ms / 1000, "OK", 2)
    for code, count in (errors or {}).items():
        for _ in range(count):
            recorder.sent(0.0, 0.0)
            recorder.finished(0.0, 0.0, 0.001, code, origin=(origins or {}).get(code))
    totals = LoadTotals()
    totals.add(recorder.take_delta(done=True))
    target = BurstTarget(
        ClientSettings(targets=("tfs:8500",)),
        ModelSpec("deepchat_model"),
        ({"text": np.array([b"hi"])},),
    )
    run_spec = spec or LoadSpec(rate=100, duration_s=1.0)
    return BurstResult(
        spec=run_spec,
        target=target,
        totals=totals,
        started_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        load_phase_s=1.0,
        offered_rps=100.0,
    )


def test_report_carries_the_issue_field_list_with_latencies_in_ms() -> None:
    report = build_report(make_result([1.0] * 98 + [50.0, 100.0], {"UNAVAILABLE": 2}))
    document = json.loads(report.to_json())
    assert set(REPORT_FIELDS) <= set(document)
    assert document["requests"] == 102 and document["ok"] == 100
    assert document["errors"] == {"UNAVAILABLE": 2}
    assert document["latency_ms"]["p50"] == pytest.approx(1.0, rel=0.01)
    assert document["latency_ms"]["max"] == pytest.approx(100.0, rel=0.01)
    assert document["versions"] == {"2": 100}
    assert document["achieved_rps"] == 102.0
    assert document["batch"]["size_mean"] is None
    assert document["target"] == "tfs:8500" and document["model"] == "deepchat_model"


def test_validate_report_names_missing_fields_and_bad_values() -> None:
    document = build_report(make_result([1.0])).model_dump(mode="json")
    del document["late_sends"], document["versions"]
    with pytest.raises(ValueError, match="missing fields: late_sends, versions"):
        validate_report(document, source="a.json")
    document = build_report(make_result([1.0])).model_dump(mode="json")
    document["mode"] = "sideways"
    with pytest.raises(ValueError, match=r"a\.json: mode"):
        validate_report(document, source="a.json")
    with pytest.raises(ValueError, match="not JSON"):
        validate_report("{oops", source="a.json")


def test_reports_are_saved_listed_and_loaded(tmp_path: Path) -> None:
    first = save_report(build_report(make_result([1.0])), directory=tmp_path)
    second = save_report(build_report(make_result([2.0])), directory=tmp_path)
    (tmp_path / "notes.json").write_text("{}")
    assert first != second
    listed = list_reports(tmp_path)
    assert {path for path, _ in listed} == {first, second}
    assert load_report(second).latency_ms.p50 == pytest.approx(2.0, rel=0.01)


def test_markdown_mirrors_the_results_table_and_adds_the_rest() -> None:
    report = build_report(make_result([2.0] * 99 + [40.0], {"DEADLINE_EXCEEDED": 1}))
    markdown = render_markdown(report)
    header = markdown.splitlines()[2]
    for column in ("stage", "QPS", "average latency", "p95", "success rate", "p50", "p99"):
        assert column in header
    assert "p99.9" in header and "max" in header
    assert "| 100 rps const 1s | 101.0 |" in markdown
    assert "99.01 %" in markdown
    assert "DEADLINE_EXCEEDED 1" in markdown
    assert "late sends" in markdown and "served by: v2 100" in markdown


def test_compare_shows_each_change_from_the_first_report() -> None:
    before = build_report(make_result([20.0] * 45), label="baseline")
    after_result = make_result([5.0] * 185)
    after = build_report(after_result, label="batched")
    table = compare_reports([before, after])
    assert "| metric | baseline | batched |" in table
    assert "| QPS | 45 | 45 -> 185 (+311 %) |" in table
    assert "20.0 ms -> 5.0 ms (-75 %)" in table
    with pytest.raises(ValueError, match="at least 2"):
        compare_reports([before])


def test_a_table_has_one_row_per_report() -> None:
    reports = [build_report(make_result([1.0]), label=f"batch-size={size}") for size in (1, 8)]
    rows = render_table(reports).splitlines()
    assert len(rows) == 4
    assert rows[2].startswith("| batch-size=1 |") and rows[3].startswith("| batch-size=8 |")


def test_slo_terms_are_checked_against_a_report() -> None:
    report = build_report(make_result([1.0] * 980 + [200.0] * 20, {"UNAVAILABLE": 1}))
    document = report.model_dump()
    checks = evaluate_slo(parse_slo("p99<100ms, errors<0.1%, success>=99.9%, rps>=500"), document)
    outcome = {check.term: check.passed for check in checks}
    assert outcome == {
        "p99<100ms": False,  # 2 % of requests took 200 ms
        "errors<0.1%": True,  # 1 of 1001
        "success>=99.9%": True,
        "rps>=500": True,
    }
    assert parse_slo("p99<0.5s")[0].threshold == 500
    assert parse_slo("errors<=3")[0].unit == "count"
    assert not report.with_slo(checks).slo_passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99<", "not understood"),
        ("p42<10ms", "unknown metric"),
        ("rps>5ms", "unknown metric"),
        ("", "no terms"),
    ],
)
def test_bad_slo_text_says_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo(text)


def test_the_errors_line_says_the_share_that_failed_and_from_where() -> None:
    result = make_result(
        [2.0] * 16,
        {"UNAVAILABLE": 75, "DEADLINE_EXCEEDED": 6, "CANCELLED": 3},
        origins={"UNAVAILABLE": "server", "DEADLINE_EXCEEDED": "client", "CANCELLED": "transport"},
    )
    report = build_report(result)
    document = json.loads(report.to_json())
    assert document["error_origins"] == {
        "CANCELLED": {"transport": 3},
        "DEADLINE_EXCEEDED": {"client": 6},
        "UNAVAILABLE": {"server": 75},
    }
    assert report.errors_by_origin == {"server": 75, "transport": 3, "client": 6}
    assert (report.server_errors, report.transport_errors, report.client_errors) == (75, 3, 6)
    markdown = render_markdown(report)
    assert (
        "- errors: 84 of 100 requests failed (84.00 %): 75 answered by the server, "
        "3 lost in transport (no answer: connection refused, reset or closed), "
        "6 given up by the client (its deadline or a cancel)\n"
    ) in markdown
    assert (
        "| error | count | share of requests | server answered | transport | client |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        "| CANCELLED | 3 | 3.00 % | 0 | 3 | 0 |\n"
        "| DEADLINE_EXCEEDED | 6 | 6.00 % | 0 | 0 | 6 |\n"
        "| UNAVAILABLE | 75 | 75.00 % | 75 | 0 | 0 |\n"
    ) in markdown
    assert "- errors: none" in render_markdown(build_report(make_result([1.0])))


def test_a_report_written_before_origins_reads_as_before() -> None:
    document = build_report(make_result([1.0] * 8, {"UNAVAILABLE": 2})).model_dump(mode="json")
    del document["error_origins"]
    old = validate_report(document)
    assert old.error_origins is None and old.errors_by_origin is None
    assert old.server_errors is None
    markdown = render_markdown(old)
    assert "- errors: 2 of 10 requests failed (20.00 %): UNAVAILABLE 2\n" in markdown
    assert "| error | count | share of requests |\n" in markdown
    assert "server answered" not in markdown
    # Errors recorded without an origin are shown as such, not guessed.
    unrecorded = build_report(make_result([1.0] * 8, {"UNAVAILABLE": 2}))
    assert unrecorded.errors_by_origin == {"unrecorded": 2}
    assert "| UNAVAILABLE | 2 | 20.00 % | 0 | 0 | 0 | 2 |" in render_markdown(unrecorded)


def test_compare_shows_errors_by_origin() -> None:
    before = build_report(
        make_result([1.0] * 10, {"UNAVAILABLE": 10}, origins={"UNAVAILABLE": "transport"})
    )
    after = build_report(
        make_result([1.0] * 10, {"UNAVAILABLE": 5}, origins={"UNAVAILABLE": "server"})
    )
    table = compare_reports([before, after], ["a", "b"])
    assert "| server-answered errors | 0 | 0 -> 5 |" in table
    assert "| transport errors | 10 | 10 -> 0 (-100 %) |" in table


def test_old_reports_with_extra_fields_still_load() -> None:
    document = build_report(make_result([1.0])).model_dump(mode="json")
    document["from_the_future"] = {"anything": 1}
    assert isinstance(validate_report(document), BenchReport)


def test_latency_chart_draws_longer_bars_for_slower_percentiles() -> None:
    report = build_report(make_result([1.0] * 90 + [100.0] * 9 + [2000.0]))
    lines = latency_chart_lines(report, width=40)
    bars = {line.split()[0]: line[7:47].count("█") for line in lines[1:]}
    assert bars["p50"] < bars["p99"] < bars["max"] == 40
    assert "2.00 s" in lines[-1]
