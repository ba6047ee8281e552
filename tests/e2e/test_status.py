"""`deepchat-tfs status` and core.fleet against three real embedded servers under real load.

A separate `deepchat-tfs bench` process offers 60 req/s open loop, round robin over the three
replicas; the figures must be the servers' own (server-side QPS within 10% of the offered rate,
split per replica), a killed replica must show down within 3 s, a new version on one replica must
show as version skew, and a real Prometheus must agree with the direct scrape within 10%.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.embedded.launcher import EmbeddedServer
from core.fleet.direct import ScrapeSource
from core.fleet.prometheus import PrometheusSource
from core.fleet.replicas import FleetTargets
from core.fleet.sampler import FleetSampler
from core.fleet.snapshot import FleetSnapshot
from tests.fixtures.models import HALF_PLUS_TWO_VERSION
from tests.fixtures.prometheus import PrometheusServer, prometheus_binary
from tests.fixtures.servers import PROMETHEUS_PATH, model_config_text, monitoring_config_text

pytestmark = pytest.mark.slow

MODEL = "half_plus_two"
OFFERED_RATE = 60.0
REPLICAS = 3


@dataclass
class Fleet:
    servers: list[EmbeddedServer]
    base_paths: list[Path]

    @property
    def targets(self) -> list[str]:
        return [server.grpc_target for server in self.servers]

    @property
    def metrics_urls(self) -> list[str]:
        return [server.rest_url.rstrip("/") + PROMETHEUS_PATH for server in self.servers]

    def status_args(self) -> list[str]:
        args = ["--model", MODEL]
        for target, url in zip(self.targets, self.metrics_urls, strict=True):
            args += ["--target", target, "--metrics", url]
        return args

    def fleet_targets(self) -> FleetTargets:
        return FleetTargets(tuple(self.targets), metrics_urls=tuple(self.metrics_urls))


@pytest.fixture(scope="module")
def fleet(saved_models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three embedded servers, each with its own copy of half_plus_two and Prometheus on."""
    servers: list[EmbeddedServer] = []
    base_paths: list[Path] = []
    for index in range(REPLICAS):
        directory = tmp_path_factory.mktemp(f"replica{index}")
        base_path = directory / MODEL
        shutil.copytree(saved_models_root / MODEL, base_path)
        (directory / "models.config").write_text(
            model_config_text([{"name": MODEL, "base_path": base_path}])
        )
        (directory / "monitoring.config").write_text(monitoring_config_text())
        servers.append(
            EmbeddedServer(
                MODEL,
                enable_batching=False,
                extra_flags=[
                    f"--model_config_file={directory / 'models.config'}",
                    f"--monitoring_config_file={directory / 'monitoring.config'}",
                    "--file_system_poll_wait_seconds=1",
                ],
                log_path=directory / "server.log",
            )
        )
        base_paths.append(base_path)

    # Spawned from this thread (the loop runs here): the parent-death signal follows the thread.
    async def start_all() -> None:
        await asyncio.gather(*(server.start(timeout_s=180) for server in servers))

    asyncio.run(start_all())
    yield Fleet(servers, base_paths)
    for server in servers:
        server.stop_sync()


@pytest.fixture(scope="module")
def traffic(fleet: Fleet) -> Iterator[subprocess.Popen[bytes]]:
    """`deepchat-tfs bench` in its own process: 60 req/s open loop over the three replicas."""
    args = [sys.executable, "-m", "cli", "bench", "--model", MODEL]
    for target in fleet.targets:
        args += ["--target", target]
    args += [
        "--data",
        '{"instances": [[1.0]]}',
        "--rate",
        str(OFFERED_RATE),
        "--duration",
        "300",
        "--timeout",
        "2",
        "--out",
        str(fleet.base_paths[0].parent / "bench.json"),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)  # the bench process starts, connects and reaches its rate
    yield process
    process.terminate()
    process.wait(timeout=30)


def run_status(*args: str, timeout_s: float = 60) -> tuple[int, dict, str]:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    return result.returncode, json.loads(lines[-1]) if lines else {}, result.stderr


def test_status_json_shows_the_server_side_rate_split_per_replica(
    fleet: Fleet, traffic: subprocess.Popen[bytes]
) -> None:
    code, report, stderr = run_status(*fleet.status_args(), "--window", "5")
    assert code == 0, (stderr, report)
    fleet_qps = report["fleet"]["qps"]
    assert fleet_qps == pytest.approx(OFFERED_RATE, rel=0.10), report
    rows = report["replicas"]
    assert [row["target"] for row in rows] == fleet.targets
    for row in rows:
        assert row["up"] is True
        assert row["qps"] == pytest.approx(OFFERED_RATE / REPLICAS, rel=0.15), row
        assert row["versions"] == {str(HALF_PLUS_TWO_VERSION): "AVAILABLE"}
        assert row["latency_ms"]["p50"] is not None and row["latency_ms"]["bucketed"] is True
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        # Batching is off on these servers: its metrics are not exported, not 0.
        assert row["batch"]["size_mean"] is None
        assert ":tensorflow:serving:batching_session:processed_batch_size" in row["not_exported"]
    assert sum(row["qps"] for row in rows) == pytest.approx(fleet_qps, rel=0.01)
    assert report["fleet"]["errors"] == {}
    assert report["fleet"]["version_skew"] is False
    print(f"\nstatus --json: fleet {fleet_qps} req/s for {OFFERED_RATE} offered; per replica "
          f"{[row['qps'] for row in rows]}")  # fmt: skip


async def test_prometheus_agrees_with_the_direct_scrape(
    fleet: Fleet, traffic: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    binary, reason = prometheus_binary()
    if binary is None:
        pytest.skip(reason)
    prometheus = PrometheusServer(binary, fleet.metrics_urls, tmp_path, scrape_interval_s=1)
    try:
        prometheus.wait_ready()
        prometheus.wait_scraped(REPLICAS, window_s=10)
        direct = FleetSampler(fleet.fleet_targets(), ScrapeSource(), model_name=MODEL, window_s=10)
        promql = FleetSampler(
            fleet.fleet_targets(), PrometheusSource(prometheus.url), model_name=MODEL, window_s=10
        )
        # No targets: the replicas are the instances Prometheus scrapes.
        discovering = FleetSampler(
            FleetTargets(()), PrometheusSource(prometheus.url), model_name=MODEL, window_s=10
        )
        try:
            await direct.sample()
            await asyncio.sleep(10)  # both cover the same 10 s
            by_direct, by_prometheus, discovered = await asyncio.gather(
                direct.sample(), promql.sample(), discovering.sample()
            )
        finally:
            await direct.close()
            await promql.close()
            await discovering.close()
    finally:
        prometheus.stop()
    assert by_prometheus.problems == (), by_prometheus.problems
    assert by_direct.fleet.qps is not None and by_prometheus.fleet.qps is not None
    assert by_prometheus.fleet.qps == pytest.approx(by_direct.fleet.qps, rel=0.10)
    for direct_row, prometheus_row in zip(by_direct.replicas, by_prometheus.replicas, strict=True):
        assert prometheus_row.figures.qps == pytest.approx(direct_row.figures.qps, rel=0.10)
    instances = sorted(url.split("/")[2] for url in fleet.metrics_urls)
    assert [row.address for row in discovered.replicas] == instances
    assert all(row.up for row in discovered.replicas)
    assert discovered.fleet.qps == pytest.approx(by_prometheus.fleet.qps, rel=0.05)
    # Both interpolate the same buckets the same way; the windows differ slightly.
    assert by_prometheus.fleet.latency.p50_ms == pytest.approx(
        by_direct.fleet.latency.p50_ms, rel=0.5
    )
    print(
        f"\nfleet QPS: direct {by_direct.fleet.qps:.2f}, prometheus {by_prometheus.fleet.qps:.2f};"
        f" p50 ms: direct {by_direct.fleet.latency.p50_ms:.3f},"
        f" prometheus {by_prometheus.fleet.latency.p50_ms:.3f}"
    )


async def wait_for(
    sampler: FleetSampler, condition, timeout_s: float, interval_s: float = 0.5
) -> tuple[FleetSnapshot, float]:
    started = time.monotonic()
    while True:
        snapshot = await sampler.sample()
        if condition(snapshot):
            return snapshot, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {snapshot.to_json()}")
        await asyncio.sleep(interval_s)


async def test_a_new_version_on_one_replica_shows_as_skew(
    fleet: Fleet, traffic: subprocess.Popen[bytes]
) -> None:
    sampler = FleetSampler(fleet.fleet_targets(), ScrapeSource(), model_name=MODEL, window_s=2)
    try:
        snapshot = await sampler.sample()
        assert snapshot.version_skew is False
        new_version = HALF_PLUS_TWO_VERSION + 1
        base = fleet.base_paths[0]
        shutil.copytree(base / f"{HALF_PLUS_TWO_VERSION:08d}", base / f"{new_version:08d}")
        snapshot, _ = await wait_for(sampler, lambda s: s.version_skew, timeout_s=30)
        assert snapshot.replicas[0].available_versions == (new_version,)
        assert snapshot.replicas[1].available_versions == (HALF_PLUS_TWO_VERSION,)
        assert snapshot.to_json()["fleet"]["version_skew"] is True
    finally:
        await sampler.close()


async def test_a_hung_replica_shows_down_within_3_s_and_comes_back_by_itself(
    fleet: Fleet, traffic: subprocess.Popen[bytes]
) -> None:
    sampler = FleetSampler(fleet.fleet_targets(), ScrapeSource(), model_name=MODEL, window_s=2)
    frozen = fleet.servers[1]
    assert frozen.pid is not None
    try:
        await wait_for(sampler, lambda s: s.all_up, timeout_s=10)
        os.kill(frozen.pid, signal.SIGSTOP)  # alive, listening, answering nothing
        stopped_at = time.monotonic()
        snapshot, _ = await wait_for(
            sampler, lambda s: not s.replicas[1].up, timeout_s=10, interval_s=0.25
        )
        shown_after_s = time.monotonic() - stopped_at
        assert shown_after_s < 3.0
        assert snapshot.replicas[0].up and snapshot.replicas[2].up
        os.kill(frozen.pid, signal.SIGCONT)
        continued_at = time.monotonic()
        await wait_for(sampler, lambda s: s.all_up, timeout_s=10, interval_s=0.25)
        back_after_s = time.monotonic() - continued_at
        assert back_after_s < 3.0
        print(f"\nhung replica down after {shown_after_s:.2f} s, back {back_after_s:.2f} s after")
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        await sampler.close()


async def test_a_killed_replica_shows_down_within_3_s_while_the_others_serve(
    fleet: Fleet, traffic: subprocess.Popen[bytes]
) -> None:
    sampler = FleetSampler(fleet.fleet_targets(), ScrapeSource(), model_name=MODEL, window_s=2)
    try:
        await wait_for(sampler, lambda s: s.all_up, timeout_s=10)
        victim = fleet.servers[2]
        assert victim.pid is not None
        killed_at = time.monotonic()
        victim._kill()  # SIGKILL: no goodbye to anyone
        snapshot, _ = await wait_for(
            sampler, lambda s: not s.replicas[2].up, timeout_s=10, interval_s=0.25
        )
        shown_after_s = time.monotonic() - killed_at
        assert shown_after_s < 3.0
        assert snapshot.replicas[2].error is not None
        await asyncio.sleep(2.5)
        snapshot = await sampler.sample()
        assert [row.up for row in snapshot.replicas] == [True, True, False]
        for row in snapshot.replicas[:2]:
            assert row.figures.qps is not None and row.figures.qps > 0.3 * OFFERED_RATE / REPLICAS
        print(f"\nkilled replica shown down after {shown_after_s:.2f} s")
    finally:
        await sampler.close()
    code, report, _ = run_status(*fleet.status_args(), "--window", "1")
    assert code == 1
    assert [row["up"] for row in report["replicas"]] == [True, True, False]
