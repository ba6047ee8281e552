"""bench_peers' comparison runs: every peer against the echo targets for a moment, figures parse.

Guards only that each peer runs and its output parses, never a time or a rate. A peer that is
not installed is installed first (hey and wrk with apt-get, Locust with pip as the bench extra
pins it); where that cannot be done, the test says why it skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from benchmarks.peers.echo import EchoTarget
from benchmarks.peers.runner import Run, run_peer
from benchmarks.peers.tables import accuracy_table, cost_table, freeze_table
from benchmarks.peers.tools import ROOT, BenchPeer, Load, Peer, all_peers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def echo_targets() -> Iterator[dict[str, EchoTarget]]:
    """The bare gRPC and REST echo targets bench_peers measures the peers against."""
    with EchoTarget("grpc") as grpc_echo, EchoTarget("rest") as rest_echo:
        yield {"gRPC": grpc_echo, "REST": rest_echo}


def _short_load(peer: Peer) -> Load:
    if peer.supports_rate:
        return Load(rate=100, duration_s=2)
    return Load(concurrency=2, duration_s=2)


@pytest.mark.parametrize("peer", all_peers(), ids=lambda peer: peer.name)
def test_each_peer_runs_and_its_figures_parse(
    peer: Peer, echo_targets: dict[str, EchoTarget]
) -> None:
    reason = peer.unavailable(install=True)
    if reason is not None:
        pytest.skip(reason)
    echo = echo_targets[peer.api]
    load = _short_load(peer)

    run = run_peer(peer, echo.address, load, echo=echo)

    assert run.failure is None, run.failure
    assert run.figures is not None
    assert run.figures.requests > 0
    assert 0 <= run.figures.errors < run.figures.requests
    assert run.figures.p50_ms is not None and run.figures.p99_ms is not None
    assert run.figures.p99_ms >= run.figures.p50_ms
    assert run.cpu_s > 0
    assert "$TARGET" in run.command or "$URL" in run.command
    # The tables render from these runs.
    ladder = {peer.name: [(100, [run])]} if load.rate is not None else {}
    assert peer.name in cost_table(ladder, {peer.name: [run]}, (100,), 0.99, 1)
    assert peer.name in accuracy_table({peer.name: [run]})


def test_a_freeze_of_the_target_reaches_bench_report(echo_targets: dict[str, EchoTarget]) -> None:
    echo = echo_targets["gRPC"]
    run: Run = run_peer(
        BenchPeer(), echo.address, Load(rate=100, duration_s=2.5), echo=echo, freeze_after_s=0.5
    )

    assert run.froze_at_s is not None
    assert run.figures is not None and run.figures.max_ms is not None
    assert "deepchat-tfs bench (gRPC)" in freeze_table({run.peer: run}, 0.5)


def test_the_article_pattern_as_printed_fails_as_documented(
    echo_targets: dict[str, EchoTarget],
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers.article_client", "--as-printed",
         "--target", echo_targets["gRPC"].address, "--concurrency", "2", "--duration", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert "attached to a different loop" in result.stdout or "RuntimeError" in result.stdout
