"""`deepchat-tfs bench` as a user runs it: exit codes, reports, Ctrl-C, compare, embedded server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from cli.bench import main
from core.report.model import REPORT_FIELDS, load_report
from tests.fixtures.fault_servicer import Behaviour, FaultServer, fault_server_fixture  # noqa: F401

DATA = '{"instances": [[1.0, 2.0, 3.0]]}'


async def bench(
    *args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run `python -m cli bench ARGS` while this test's event loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "bench", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def load_args(server: FaultServer, out: Path, *extra: str) -> list[str]:
    return ["--target", server.target, "--model", "m", "--data", DATA, "--out", str(out), *extra]


async def test_a_met_slo_exits_0_and_writes_a_valid_report(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.behaviour = Behaviour(served_version=4)
    out = tmp_path / "report.json"
    args = load_args(fault_server, out, "--rate", "100", "--duration", "0.5", "--slo", "p99<30s")
    code, stdout, stderr = await bench(*args)
    assert code == 0, stderr
    assert "| stage | QPS | average latency | p95 | success rate |" in stdout
    assert "SLO met" in stdout
    document = json.loads(out.read_text())
    assert set(REPORT_FIELDS) <= set(document)
    assert document["requests"] == document["ok"] == 50
    assert document["versions"] == {"4": 50}
    assert load_report(out).slo_passed is True
    # Not a terminal: plain lines, no carriage returns or escape sequences.
    assert "\r" not in stderr and "\x1b" not in stderr


async def test_a_breached_slo_exits_1(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.behaviour = Behaviour(delay_s=0.01)
    out = tmp_path / "report.json"
    args = load_args(fault_server, out, "--concurrency", "2", "--requests", "20")
    code, stdout, _ = await bench(*args, "--slo", "p99<1ms,errors<0.1%")
    assert code == 1
    assert "SLO BREACHED" in stdout and "p99<1ms" in stdout
    assert load_report(out).slo_passed is False


async def test_every_request_failing_exits_3(fault_server: FaultServer, tmp_path: Path) -> None:
    import grpc

    fault_server.behaviour = Behaviour(
        error=(grpc.StatusCode.UNAVAILABLE, "down"), methods=frozenset({"Predict"})
    )
    code, stdout, stderr = await bench(
        *load_args(fault_server, tmp_path / "r.json", "--rate", "50", "--requests", "10")
    )
    assert code == 3
    assert "UNAVAILABLE 10" in stdout and "every request failed" in stderr


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--slo" in capsys.readouterr().out


REMOTE = ["--target", "h:1", "--model", "m"]
RATE = [*REMOTE, "--rate", "5", "--duration", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*REMOTE, "--duration", "1"], "give --rate"),
        ([*REMOTE, "--rate", "5"], "needs a bound"),
        ([*RATE, "--slo", "p99"], "--slo"),
        ([*RATE, "--schedule", "zig"], "unknown schedule"),
        ([*RATE, "--concurrency", "2"], "not allowed"),
        (["--model", "other", "--rate", "5", "--duration", "1"], "needs --target"),
        ([*REMOTE, "--find-max", "--duration", "1"], "--find-max needs --slo"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


async def test_ctrl_c_stops_cleanly_keeps_the_partial_report_and_leaves_no_workers(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "partial.json"
    args = load_args(
        fault_server, out, "--rate", "100", "--duration", "60", "--workers", "2", "--warmup", "0"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "bench", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(3000):
        if len(fault_server.calls_to("Predict")) >= 50:
            break
        await asyncio.sleep(0.01)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, stderr.decode()
    assert "aborting" in stderr.decode()
    report = load_report(out)
    assert report.aborted and report.requests >= 50 and report.requests == report.ok
    assert "aborted: partial results" in stdout.decode()
    assert not [worker for worker in workers if worker.is_running() and worker.status() != "zombie"]


async def test_sweep_prints_one_table_across_the_settings(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "sweep.json"
    args = load_args(fault_server, out, "--rate", "200", "--requests", "40")
    code, stdout, stderr = await bench(*args, "--sweep", "batch-size=1,8")
    assert code == 0, stderr
    assert "| batch-size=1 |" in stdout and "| batch-size=8 |" in stdout
    document = json.loads(out.read_text())
    assert document["sweep"]["parameter"] == "batch-size"
    assert [report["batch"]["max_size"] for report in document["reports"]] == [None, 8]


async def test_find_max_reports_the_highest_rate_meeting_the_slo(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "max.json"
    # The achieved rate never exceeds the offered one, so "rps<=30" holds up to 30 req/s.
    args = load_args(fault_server, out, "--rate", "20", "--requests", "5", "--find-max")
    code, stdout, stderr = await bench(*args, "--slo", "rps<=30", timeout_s=120)
    assert code == 0, stderr
    assert "highest rate meeting rps<=30" in stdout
    document = json.loads(out.read_text())
    rates = [probe["rate"] for probe in document["find_max"]["probes"]]
    assert rates[:3] == [20, 40, 30]
    assert 28.5 <= document["find_max"]["best_rps"] <= 30
    assert document["slo"][0]["passed"] is True


def test_compare_prints_reports_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.report.model import build_report, save_report
    from tests.core.test_report import make_result

    first = save_report(build_report(make_result([20.0] * 45), label="seed"), tmp_path / "a.json")
    second = save_report(build_report(make_result([5.0] * 185), label="ours"), tmp_path / "b.json")
    assert main(["compare", str(first), str(second)]) == 0
    output = capsys.readouterr().out
    assert "| metric | seed | ours |" in output
    assert "45 -> 185 (+311 %)" in output
    assert main(["compare", str(first), str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
async def test_without_a_target_bench_starts_the_embedded_server(tmp_path: Path) -> None:
    out = tmp_path / "embedded.json"
    # A fresh data dir: the demo model is exported there, as on a user's first run.
    code, _, stderr = await bench(
        "--rate", "20", "--duration", "1", "--out", str(out),
        timeout_s=240, env={"XDG_DATA_HOME": str(tmp_path / "data")},
    )  # fmt: skip
    assert code == 0, stderr
    report = load_report(out)
    assert report.model == "deepchat_model" and report.ok == report.requests == 20
    assert report.versions  # the demo model says which version answered
    assert "starting the embedded server" in stderr
    # The default warm-up ran first, and the embedded server's own metrics are in the report.
    assert report.warmup is not None and report.warmup.requests > 0
    assert report.server is not None and report.server["requests"] > 0
    # It is the console's embedded server: config.yaml's batching parameters, whose 2 ms
    # batch_timeout_micros a lone request waits out (TF Serving's default would be 0).
    assert report.server["queuing_latency_ms"]["mean"] >= 1.5
