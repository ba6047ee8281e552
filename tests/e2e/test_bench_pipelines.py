"""`deepchat-tfs bench` for pipelines, against the real embedded server: warm-up, REST, merging,
time series, server-side figures, exit codes and --abort-on-breach."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from cli.bench import main
from core.embedded.launcher import EmbeddedServer
from core.metrics.latency import LatencyRecorder
from core.metrics.load import summarize_ms
from core.report.model import BenchReport, load_report
from tests.e2e.test_bench import bench
from tests.fixtures.servers import PROMETHEUS_PATH

pytestmark = pytest.mark.slow

DATA = '{"instances": [1.0, 2.0, 5.0]}'


def grpc_args(server: EmbeddedServer, out: Path, *extra: str) -> list[str]:
    return [
        "--target", server.grpc_target, "--model", "half_plus_two", "--data", DATA,
        "--out", str(out), *extra,
    ]  # fmt: skip


def rest_args(server: EmbeddedServer, out: Path, *extra: str) -> list[str]:
    return [
        "--protocol", "rest", "--target", server.rest_url, "--model", "half_plus_two",
        "--data", DATA, "--out", str(out), *extra,
    ]  # fmt: skip


async def test_warm_up_runs_before_the_window_and_is_reported_apart(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    out = tmp_path / "warm.json"
    args = grpc_args(serving_server, out, "--rate", "40", "--duration", "1", "--warmup", "0.5")
    code, stdout, stderr = await bench(*args)
    assert code == 0, stderr
    report = load_report(out)
    assert report.requests == report.ok == 40  # the measured window alone
    assert report.warmup is not None and report.warmup.duration_s == 0.5
    assert 10 <= report.warmup.requests <= 30 and report.warmup.ok == report.warmup.requests
    assert "warm-up (not in the figures above): 0.5 s" in stdout
    code, _, stderr = await bench(*grpc_args(serving_server, out, "--rate", "40",
                                             "--requests", "10", "--warmup", "0"))  # fmt: skip
    assert code == 0, stderr
    assert load_report(out).warmup is None


async def test_rest_load_and_compare_with_grpc(
    serving_server: EmbeddedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grpc_out, rest_out = tmp_path / "grpc.json", tmp_path / "rest.json"
    load = ["--rate", "40", "--requests", "40", "--warmup", "0.2"]
    code, _, stderr = await bench(*grpc_args(serving_server, grpc_out, *load))
    assert code == 0, stderr
    code, stdout, stderr = await bench(*rest_args(serving_server, rest_out, *load))
    assert code == 0, stderr
    rest = load_report(rest_out)
    assert rest.protocol == "rest" and rest.requests == rest.ok == 40
    assert rest.target == serving_server.rest_url.rstrip("/")
    assert "(REST): rest 40 rps" in stdout
    assert main(["compare", str(grpc_out), str(rest_out)]) == 0
    assert "| protocol | grpc | rest |" in capsys.readouterr().out


async def test_rest_errors_carry_tf_servings_codes(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    out = tmp_path / "bad.json"
    args = rest_args(serving_server, out, "--rate", "20", "--requests", "10", "--warmup", "0")
    args[args.index(DATA)] = '{"instances": ["text"]}'  # strings for a float input: 400
    code, _, stderr = await bench(*args)
    assert code == 3, stderr
    report = load_report(out)
    assert report.errors == {"INVALID_ARGUMENT": 10}
    assert "every request failed" in stderr


async def test_runs_started_together_merge_into_one_run_of_their_total_load(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    start_at = time.time() + 15  # spawning workers on a busy 2-core box takes seconds
    halves = [tmp_path / "host1.json", tmp_path / "host2.json"]
    load = ["--rate", "20", "--duration", "2", "--warmup", "0.5", "--start-at", f"{start_at}"]
    results = await asyncio.gather(
        *(bench(*grpc_args(serving_server, half, *load)) for half in halves)
    )
    for code, _, stderr in results:
        assert code == 0, stderr
    single_out = tmp_path / "single.json"
    code, _, stderr = await bench(
        *grpc_args(serving_server, single_out, "--rate", "40", "--duration", "2", "--warmup", "0.5")
    )
    assert code == 0, stderr
    fleet = tmp_path / "fleet.json"
    assert main(["merge", *(str(half) for half in halves), "--out", str(fleet)]) == 0
    merged, single = load_report(fleet), load_report(single_out)
    parts = [load_report(half) for half in halves]
    # Both hosts opened their measured window at start-at + warm-up.
    for part in parts:
        assert part.started_epoch is not None
        assert abs(part.started_epoch - (start_at + 0.5)) < 0.1
    assert merged.requests == single.requests == 80
    assert merged.ok == single.ok == 80
    assert merged.duration_s == pytest.approx(single.duration_s, abs=0.2)
    assert merged.achieved_rps == pytest.approx(single.achieved_rps, rel=0.15)
    assert merged.offered_rps == pytest.approx(40, rel=0.1)
    # Exact: the merged percentiles are those of every request of both runs together.
    together = LatencyRecorder()
    for part in parts:
        assert part.histograms is not None
        together.add(LatencyRecorder.decode(part.histograms.corrected))
    assert merged.latency_ms.model_dump() == summarize_ms(together)


def time_series_totals(rows: list[dict[str, object]], report: BenchReport) -> None:
    assert sum(int(str(row["achieved_rps"])) for row in rows) == report.issued
    assert sum(int(str(row["finished"])) for row in rows) == report.requests
    assert sum(int(str(row["ok"])) for row in rows) == report.ok
    assert sum(int(str(row["late_sends"])) for row in rows) == report.late_sends


async def test_time_series_add_up_to_the_report_and_hgrm_is_written(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    out, series, hgrm = tmp_path / "r.json", tmp_path / "series.jsonl", tmp_path / "r.hgrm"
    args = grpc_args(serving_server, out, "--rate", "50", "--duration", "3", "--warmup", "0.3",
                     "--timeseries", str(series), "--hgrm", str(hgrm))  # fmt: skip
    code, _, stderr = await bench(*args)
    assert code == 0, stderr
    report = load_report(out)
    rows = [json.loads(line) for line in series.read_text().splitlines()]
    assert 3 <= len(rows) <= 5
    assert [row["second"] for row in rows] == list(range(len(rows)))
    assert rows[0]["intended_rps"] == 50 and rows[1]["p99_ms"] is not None
    time_series_totals(rows, report)
    text = hgrm.read_text()
    assert text.split()[:2] == ["Value", "Percentile"] and "#[Mean" in text
    csv_path = tmp_path / "series.csv"
    csv_args = grpc_args(serving_server, out, "--rate", "30", "--duration", "2",
                         "--timeseries", str(csv_path))  # fmt: skip
    code, _, stderr = await bench(*csv_args)
    assert code == 0, stderr
    import csv

    with csv_path.open() as file:
        csv_rows: list[dict[str, object]] = list(csv.DictReader(file))
    time_series_totals(csv_rows, load_report(out))


async def test_the_report_adds_what_the_server_saw(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    out = tmp_path / "server.json"
    metrics = serving_server.rest_url.rstrip("/") + PROMETHEUS_PATH
    args = grpc_args(serving_server, out, "--rate", "50", "--duration", "2", "--metrics", metrics)
    code, stdout, stderr = await bench(*args)
    assert code == 0, stderr
    report = load_report(out)
    assert report.server is not None, report.failures
    assert abs(report.server["requests"] - report.requests) <= 0.1 * report.requests + 5
    assert report.server["request_rate"] > 20
    latency = report.server["request_latency_ms"]
    assert latency["p50"] is not None and latency["p50"] <= latency["p99"]
    assert "the server saw:" in stdout


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--data", '{"instances": '], 2, "--data"),
        (["--protocol", "soap"], 2, "--protocol soap: unknown protocol"),
        (["--target", "127.0.0.1:1"], 3, "unreachable"),
        (["--model", "no_such_model"], 3, "model not found"),
    ],
    ids=["bad-data", "unknown-protocol", "unreachable", "missing-model"],
)
async def test_failures_give_one_clear_line_and_the_documented_exit_code(
    serving_server: EmbeddedServer, tmp_path: Path, extra: list[str], code: int, message: str
) -> None:
    args = grpc_args(serving_server, tmp_path / "r.json", "--rate", "10", "--requests", "5")
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    exit_code, _, stderr = await bench(*args)
    assert exit_code == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr and not (tmp_path / "r.json").exists()


async def test_a_missing_model_over_rest_exits_3(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    args = rest_args(serving_server, tmp_path / "r.json", "--rate", "10", "--requests", "5")
    args[args.index("half_plus_two")] = "no_such_model"
    code, _, stderr = await bench(*args)
    assert code == 3 and "model not found" in stderr and len(stderr.strip().splitlines()) == 1


async def test_abort_on_breach_stops_a_lost_run_with_exit_1(
    serving_server: EmbeddedServer, tmp_path: Path
) -> None:
    out = tmp_path / "breach.json"
    # No request answers within 1 µs: after a handful the p99 is lost for the whole run.
    args = grpc_args(serving_server, out, "--rate", "50", "--duration", "30", "--warmup", "0",
                     "--slo", "p99<1us", "--abort-on-breach")  # fmt: skip
    started = time.monotonic()
    code, stdout, stderr = await bench(*args)
    assert code == 1, stderr
    assert time.monotonic() - started < 25
    report = load_report(out)
    assert report.aborted and report.requests < 1500
    assert report.abort_reason and "p99<1us" in report.abort_reason
    assert "can no longer be met" in stderr and "SLO BREACHED" in stdout
