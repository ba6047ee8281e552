"""Bench for pipelines, the parts that need no server: merging, time series, server-side deltas,
the SLO watch, REST status codes, connection settings and the warm-up's load."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import pytest

from core.bench.session import connection_settings, parse_headers
from core.config.trust import approve
from core.load.rest import error_code_for_status, predict_body
from core.load.spec import LoadSpec
from core.metrics.latency import LatencyRecorder
from core.metrics.load import LoadDelta, LoadRecorder, summarize_ms
from core.metrics.timeseries import SecondSeries
from core.report.export import hgrm_text, timeseries_text
from core.report.merge import merge_reports, union_length
from core.report.model import build_report
from core.report.server_side import parse_scrape, server_side
from core.report.slo import clearly_breached, parse_slo
from tests.core.test_report import make_result


def report_of(
    latencies_ms: list[float], started_epoch: float, errors: dict[str, int] | None = None
):
    result = make_result(latencies_ms, errors)
    result.started_epoch = started_epoch
    result.started_at = dt.datetime.fromtimestamp(started_epoch, dt.timezone.utc)
    return build_report(result, label=f"at {started_epoch}")


def test_merge_adds_counts_and_histograms_exactly() -> None:
    first = report_of([1.0] * 90 + [50.0] * 10, 1000.0, {"UNAVAILABLE": 2})
    second = report_of([2.0] * 50 + [200.0] * 50, 1000.5)
    merged = merge_reports([first, second], ["a.json", "b.json"])
    assert merged.requests == first.requests + second.requests == 202
    assert merged.ok == 200 and merged.errors == {"UNAVAILABLE": 2}
    everything = LatencyRecorder()
    for report in (first, second):
        assert report.histograms is not None
        everything.add(LatencyRecorder.decode(report.histograms.corrected))
    assert merged.latency_ms.model_dump() == summarize_ms(everything)
    # Windows [1000, 1001] and [1000.5, 1001.5]: their union lasts 1.5 s.
    assert merged.duration_s == 1.5
    assert merged.achieved_rps == pytest.approx(202 / 1.5, rel=1e-3)
    assert merged.merged_from is not None and [m["source"] for m in merged.merged_from] == [
        "a.json",
        "b.json",
    ]


def test_merge_adds_error_origins_and_keeps_older_reports_errors_by_code() -> None:
    from tests.core.test_report import make_result

    def with_origins(errors: dict[str, int], origins: dict[str, str], epoch: float):
        result = make_result([1.0] * 10, errors, origins=origins)
        result.started_epoch = epoch
        return build_report(result)

    first = with_origins({"UNAVAILABLE": 3}, {"UNAVAILABLE": "server"}, 1000.0)
    second = with_origins(
        {"UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1},
        {"UNAVAILABLE": "transport", "DEADLINE_EXCEEDED": "client"},
        1000.0,
    )
    merged = merge_reports([first, second])
    assert merged.errors == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 5}
    assert merged.error_origins == {
        "DEADLINE_EXCEEDED": {"client": 1},
        "UNAVAILABLE": {"server": 3, "transport": 2},
    }
    older = first.model_copy(update={"error_origins": None})
    assert merge_reports([older, older]).error_origins is None
    mixed = merge_reports([older, second])
    assert mixed.errors == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 5}
    assert mixed.errors_by_origin == {"transport": 2, "client": 1, "unrecorded": 3}


def test_merge_refuses_a_report_without_histograms() -> None:
    old = report_of([1.0], 1.0).model_copy(update={"histograms": None})
    with pytest.raises(ValueError, match=r"old\.json: has no histograms"):
        merge_reports([old, report_of([1.0], 2.0)], ["old.json", "new.json"])


def test_union_length_counts_overlaps_once() -> None:
    assert union_length([(0, 2), (1, 3), (5, 6)]) == 4
    assert union_length([(0, 1)]) == 1


def delta(
    issued: int, ok: int, latency_ms: float, errors: dict[str, int] | None = None
) -> LoadDelta:
    recorder = LoadRecorder()
    for _ in range(issued):
        recorder.sent(0.0, 0.0)
    for _ in range(ok):
        recorder.finished(0.0, 0.0, latency_ms / 1000)
    for code, count in (errors or {}).items():
        for _ in range(count):
            recorder.finished(0.0, 0.0, 0.001, code)
    return recorder.take_delta()


def test_time_series_rows_add_up_and_fill_quiet_seconds() -> None:
    series = SecondSeries()
    series.add(delta(10, 10, 5.0), 0.2, in_flight=0)
    series.add(delta(10, 8, 7.0, {"UNAVAILABLE": 2}), 0.9, in_flight=1)
    series.add(delta(5, 5, 9.0), 2.1, in_flight=0)
    rows = series.finish()
    assert [row.second for row in rows] == [0, 1, 2]
    assert sum(row.issued for row in rows) == 25
    assert sum(row.ok for row in rows) == 23
    assert rows[0].errors == {"UNAVAILABLE": 2} and rows[1].issued == 0
    assert rows[0].p50_ms is not None and 4.9 < rows[0].p50_ms < 7.1
    csv_text = timeseries_text(rows, ".csv")
    assert csv_text.splitlines()[0] == (
        "second,intended_rps,achieved_rps,finished,ok,errors,errors_UNAVAILABLE,p50_ms,p90_ms,"
        "p99_ms,in_flight,late_sends"
    )
    assert timeseries_text(rows, ".jsonl").count("\n") == 3


def test_a_deltas_histograms_are_decoded_once_for_every_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.metrics.load import LoadTotals
    from core.metrics.stats import StatsCollector

    shipped = pickle.loads(pickle.dumps(delta(10, 10, 5.0)))
    unpack = LatencyRecorder.unpack
    calls: list[int] = []

    def counting(packed: bytes) -> LatencyRecorder:
        calls.append(len(packed))
        return unpack(packed)

    monkeypatch.setattr(LatencyRecorder, "unpack", counting)
    totals, series, stats = LoadTotals(), SecondSeries(), StatsCollector()
    totals.add(shipped)
    series.add(shipped, 0.2, in_flight=0)
    stats.merge_delta(shipped)
    assert len(calls) == 3  # corrected, uncorrected, schedule lag: once each
    assert totals.corrected.count == stats.snapshot().requests_total == 10
    assert series.finish()[0].p50_ms is not None
    # The decoded recorders stay behind when the delta is pickled again.
    assert "latency" not in pickle.loads(pickle.dumps(shipped)).__dict__


def test_hgrm_is_hdrhistograms_percentile_format() -> None:
    text = hgrm_text(report_of([1.0, 2.0, 3.0], 0.0))
    assert text.split()[:4] == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert "#[Mean" in text and "#[Max" in text


LATENCY = ":tensorflow:serving:request_latency"
GRPC_PREDICT = 'model_name="m",API="predict",entrypoint="GRPC"'


def latency_lines(under_1ms: int, under_2ms: int, total_us: int) -> str:
    """A request_latency histogram of model m with buckets at 1 ms, 2 ms and +Inf."""
    return (
        f"# TYPE {LATENCY} histogram\n"
        f'{LATENCY}_bucket{{{GRPC_PREDICT},le="1000"}} {under_1ms}\n'
        f'{LATENCY}_bucket{{{GRPC_PREDICT},le="2000"}} {under_2ms}\n'
        f'{LATENCY}_bucket{{{GRPC_PREDICT},le="+Inf"}} {under_2ms}\n'
        f"{LATENCY}_sum{{{GRPC_PREDICT}}} {total_us}\n"
        f"{LATENCY}_count{{{GRPC_PREDICT}}} {under_2ms}\n"
    )


METRICS_BEFORE = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 10
:tensorflow:serving:request_count{model_name="other",status="OK"} 99
""" + latency_lines(10, 10, 5000)
METRICS_AFTER = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 110
:tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 4
# TYPE :tensorflow:serving:batching_session:processed_batch_size histogram
:tensorflow:serving:batching_session:processed_batch_size_bucket{le="4"} 5
:tensorflow:serving:batching_session:processed_batch_size_bucket{le="+Inf"} 5
:tensorflow:serving:batching_session:processed_batch_size_sum 15
:tensorflow:serving:batching_session:processed_batch_size_count 5
""" + latency_lines(60, 110, 130000)


def test_server_side_figures_are_the_difference_between_two_scrapes() -> None:
    before, after = parse_scrape(METRICS_BEFORE, "m"), parse_scrape(METRICS_AFTER, "m")
    figures = server_side(before, after, window_s=2.0)
    assert figures["requests"] == 104 and figures["request_rate"] == 52.0
    assert figures["requests_by_status"] == {"INVALID_ARGUMENT": 4, "OK": 100}
    # 50 of the 100 new observations up to 1 ms, 50 more up to 2 ms: p50 = 1 ms, p99 ~ 2 ms.
    assert figures["request_latency_ms"]["p50"] == pytest.approx(1.0)
    assert figures["request_latency_ms"]["p99"] == pytest.approx(1.98)
    assert figures["request_latency_ms"]["mean"] == pytest.approx(1.25)
    assert figures["batch_size_mean"] == 3.0


def test_abort_on_breach_waits_until_the_slo_is_lost_for_sure() -> None:
    slow = LatencyRecorder()
    slow.record(0.5, 5)  # five requests took 500 ms
    terms = parse_slo("p99<100ms")
    common = {"finished": 100, "errors": 0, "late_sends": 0, "corrected": slow}
    # 5 slow of 1,000 planned: p99 can still be met; of 200 planned it cannot.
    assert clearly_breached(terms, planned_requests=1000, **common) is None  # type: ignore[arg-type]
    lost = clearly_breached(terms, planned_requests=200, **common)  # type: ignore[arg-type]
    assert lost is not None and lost.text == "p99<100ms"
    errors = parse_slo("errors<1%")
    assert clearly_breached(errors, finished=50, errors=3, late_sends=0, corrected=slow,
                            planned_requests=1000) is None  # fmt: skip
    assert clearly_breached(errors, finished=50, errors=10, late_sends=0, corrected=slow,
                            planned_requests=1000) is not None  # fmt: skip


def test_http_statuses_map_to_tf_servings_error_codes() -> None:
    assert [error_code_for_status(s) for s in (400, 404, 429, 503, 504, 418)] == [
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "UNKNOWN",
    ]


def test_rest_bodies_keep_the_users_json_and_name_a_signature() -> None:
    import numpy as np

    raw = '{"instances": [1.0, 2.0]}'
    assert predict_body({}, "serving_default", raw) == b'{"instances":[1.0,2.0]}'
    assert predict_body({}, "sig", raw) == b'{"instances":[1.0,2.0],"signature_name":"sig"}'
    prompt = predict_body({"text": np.array([b"hello"], dtype=object)}, "serving_default")
    assert prompt == b'{"instances":["hello"]}'


def test_connection_settings_take_the_config_then_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_serving:\n  tensorflow_serving:\n    host: tfs.internal\n    grpc_port: 8500\n"
        "    bearer_token_env: BENCH_TOKEN\n    tls:\n      server_name_override: from-file\n"
    )
    approve(config)  # a file outside the user's config dir names a token variable
    settings = connection_settings(
        targets=(),
        config_path=config,
        env={"BENCH_TOKEN": "s3cret-token"},
        server_name="from-flag",
        headers=parse_headers(["x-team=search"]),
    )
    assert settings.targets == ("tfs.internal:8500",)
    assert settings.bearer_token == "s3cret-token"
    assert settings.tls is not None and settings.tls.server_name_override == "from-flag"
    assert settings.headers == (("x-team", "search"),)
    assert "s3cret-token" not in repr(settings)
    with pytest.raises(ValueError, match="--header 'nonsense'"):
        parse_headers(["nonsense"])
    with pytest.raises(ValueError, match="--cert and --key go together"):
        connection_settings(targets=("h:1",), cert_file="c.pem")


def test_the_warm_up_runs_at_the_runs_opening_rate() -> None:
    assert LoadSpec(rate=50, duration_s=10).warmup_spec() is None
    warm = LoadSpec(rate=50, duration_s=10, requests=400, warmup_s=2).warmup_spec()
    assert warm is not None and (warm.rate, warm.duration_s, warm.requests) == (50, 2, None)
    ramp = LoadSpec(rate=None, schedule="ramp:20-200", duration_s=10, warmup_s=1).warmup_spec()
    assert ramp is not None and (ramp.rate, ramp.schedule) == (20, "const")
    closed = LoadSpec(mode="closed", rate=None, concurrency=4, duration_s=5, warmup_s=1)
    warm_closed = closed.warmup_spec()
    assert warm_closed is not None and warm_closed.concurrency == 4
    assert warm_closed.duration_s == 1
    with pytest.raises(ValueError, match="warmup"):
        LoadSpec(warmup_s=-1).check()
