"""deepchat-tfs bench beside the tools users would pick instead, on the same targets and load.

Peers: hey and wrk (Debian), Locust (PyPI, gRPC and HTTP users), TF Serving's example client
pattern and the seed article's pattern (benchmarks/peers). Measured in one run:
- cost and ceiling: a ladder of offered rates against bare echo targets (the tool is the limit),
  CPU per request of the tool's process tree over the steady part of each run;
- accuracy: the same load against `deepchat-tfs serve` with half_plus_two;
- a 1 s freeze (SIGSTOP) of the target mid-run: which tools show it in p99;
- the seed article's headline: server batching off and on with the demo model.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.peers.echo import EchoTarget
from benchmarks.peers.runner import Run, run_peer
from benchmarks.peers.tables import (
    accuracy_table,
    command_lines,
    cost_table,
    freeze_table,
    goals,
    headline_table,
    why,
)
from benchmarks.peers.tools import (
    ROOT,
    BenchPeer,
    Load,
    Peer,
    all_peers,
)
from core.embedded.launcher import EmbeddedServer

RUNS = 2  # ladder rungs: median of this many runs
LADDER = (200, 1000, 2500, 5000)  # offered req/s, climbed until a rung is not held
LADDER_S = 3.0
HELD_SHARE = 0.99  # a rate is held when the target answered within 1 % of it
CLOSED = (16, 64)
REAL_S = 2.0
FREEZE = Load(rate=200, duration_s=7.0)
FREEZE_AFTER_S = 2.5  # after the first answer
HEADLINE_CONCURRENCY = (64, 128)
HEADLINE_S = 4.0
HEADLINE_BATCHING = {
    "max_batch_size": 32,
    "batch_timeout_micros": 2000,
    "num_batch_threads": 2,
    "max_enqueued_batches": 100,
}

Ladder = dict[str, list[tuple[int, list[Run]]]]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _available(peers: Sequence[Peer]) -> tuple[list[Peer], dict[str, str]]:
    usable, skipped = [], {}
    for peer in peers:
        reason = peer.unavailable(install=True)
        if reason is None:
            usable.append(peer)
        else:
            skipped[peer.name] = reason
            _log(f"skip {peer.name}: {reason}")
    return usable, skipped


def _echo_for(peer: Peer, grpc_echo: EchoTarget, rest_echo: EchoTarget) -> EchoTarget:
    return grpc_echo if peer.api == "gRPC" else rest_echo


def held(runs: Sequence[Run], rate: float) -> bool:
    """Whether the target answered within 1 % of rate (median over runs)."""
    shares = [(run.steady_rps or 0.0) / rate for run in runs]
    return bool(shares) and statistics.median(shares) >= HELD_SHARE


def climb(peer: Peer, echo: EchoTarget, rates: Sequence[int], runs: int, seconds: float) -> list:
    """Runs up the ladder of rates until one is not held; [(rate, runs)]."""
    rungs: list[tuple[int, list[Run]]] = []
    for rate in rates:
        load = Load(rate=rate, duration_s=seconds)
        results = [run_peer(peer, echo.address, load, echo=echo) for _ in range(runs)]
        rungs.append((rate, results))
        _log(f"{peer.name} {rate} req/s: {[r.steady_rps for r in results]}")
        if not held(results, rate):
            break
    return rungs


def _measure_echo(
    peers: Sequence[Peer], grpc_echo: EchoTarget, rest_echo: EchoTarget
) -> tuple[Ladder, dict[str, list[Run]], dict[str, Run]]:
    ladder: Ladder = {}
    closed: dict[str, list[Run]] = {}
    frozen: dict[str, Run] = {}
    for peer in peers:
        echo = _echo_for(peer, grpc_echo, rest_echo)
        if peer.supports_rate:
            ladder[peer.name] = climb(peer, echo, LADDER, RUNS, LADDER_S)
        closed[peer.name] = [
            run_peer(peer, echo.address, Load(concurrency=c, duration_s=LADDER_S), echo=echo)
            for c in CLOSED
        ]
        # wrk has no rate: it meets the freeze with as many connections as the others' workers.
        freeze_load = (
            FREEZE
            if peer.supports_rate
            else Load(concurrency=FREEZE.workers, duration_s=FREEZE.duration_s)
        )
        frozen[peer.name] = run_peer(
            peer, echo.address, freeze_load, echo=echo, freeze_after_s=FREEZE_AFTER_S
        )
        _log(f"{peer.name} freeze: {frozen[peer.name].figures}")
    return ladder, closed, frozen


def _export(code: str, directory: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", code, str(directory)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )


def _measure_real(peers: Sequence[Peer], directory: Path) -> dict[str, list[Run]]:
    """Each peer at 200 req/s and at c=16, 64 against `deepchat-tfs serve` with half_plus_two."""
    base_path = directory / "half_plus_two"
    _export(
        "import sys; from pathlib import Path; from tests.fixtures.models import "
        "export_half_plus_two; export_half_plus_two(Path(sys.argv[1]))",
        base_path,
    )
    server = EmbeddedServer(
        "half_plus_two", base_path, enable_batching=False, log_path=directory / "serve.log"
    )
    server.start_sync(timeout_s=180)
    try:
        loads = [Load(rate=200, duration_s=REAL_S)] + [
            Load(concurrency=c, duration_s=REAL_S) for c in CLOSED
        ]
        results: dict[str, list[Run]] = {}
        for peer in peers:
            address = server.grpc_target if peer.api == "gRPC" else server.rest_url
            results[peer.name] = [
                run_peer(peer, address, load)
                for load in loads
                if load.rate is None or peer.supports_rate
            ]
            _log(f"{peer.name} on half_plus_two: {[r.figures for r in results[peer.name]]}")
        return results
    finally:
        server.stop_sync()


def _measure_headline(directory: Path) -> list[tuple[str, int, Run]]:
    """bench closed loop at c=64, 128 on the demo model, server batching off then on."""
    base_path = directory / "deepchat_model"
    subprocess.run(
        [sys.executable, "-m", "cli", "export-demo-model", str(base_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    peer = BenchPeer("gRPC", model="deepchat_model")
    rows: list[tuple[str, int, Run]] = []
    for batching in (False, True):
        server = EmbeddedServer(
            "deepchat_model",
            base_path,
            enable_batching=batching,
            batching_parameters=HEADLINE_BATCHING if batching else None,
            log_path=directory / f"demo-{batching}.log",
        )
        server.start_sync(timeout_s=180)
        try:
            for concurrency in HEADLINE_CONCURRENCY:
                load = Load(concurrency=concurrency, duration_s=HEADLINE_S)
                runs = [run_peer(peer, server.grpc_target, load) for _ in range(RUNS)]
                # The better run: the machine is shared, and other work only ever slows a run.
                best = max(runs, key=lambda r: r.figures.achieved_rps if r.figures else 0.0)
                rows.append(("on" if batching else "off", concurrency, best))
        finally:
            server.stop_sync()
    return rows


def _article_as_printed(grpc_echo: EchoTarget) -> str:
    """What the article's code prints when run as written (its module-level channel)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers.article_client", "--as-printed",
         "--target", grpc_echo.address, "--concurrency", "4", "--duration", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line and line != "ok"]
    return lines[0] if lines else "every call answered"


def _timed(label: str, step: Callable[[], object]) -> object:
    started = time.monotonic()
    result = step()
    _log(f"== {label}: {time.monotonic() - started:.0f} s")
    return result


def run() -> str:
    """Measure every peer and return the Markdown section."""
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    peers, skipped = _available(all_peers())
    with EchoTarget("grpc") as grpc_echo, EchoTarget("rest") as rest_echo:
        as_printed = _article_as_printed(grpc_echo)
        ladder, closed, frozen = _measure_echo(peers, grpc_echo, rest_echo)
    with tempfile.TemporaryDirectory(prefix="bench_peers-") as directory:
        real = _measure_real(peers, Path(directory))
        headline = _measure_headline(Path(directory))
    load_after = os.getloadavg()[0]
    elapsed = time.monotonic() - started
    sections = [
        "## Beside the peers: hey, wrk, Locust, TF Serving's example client, the seed article",
        "",
        'Every peer sends half_plus_two\'s request (`x = [[1.0]]`, as `{"instances": [[1.0]]}` '
        "over REST) at the same offered load, in one run of `python -m benchmarks.run peers`. "
        "Tools without an open loop are paced the way their users pace them: closed-loop "
        "workers (10, or one per 100 req/s) each held to its share of the rate (hey's `-q`, "
        "Locust's `constant_throughput`, a sleep in the thread-pool clients). Debian's `wrk` is "
        "wrk 4.1, closed loop only: it has no rate option (that is wrk2's `-R`, which also "
        "measures from the intended send time), so it appears only in the closed-loop rows. "
        f"Load average {load_before:.1f} at the start and {load_after:.1f} at the end on "
        f"{os.cpu_count()} cores shared with other work, so rates and ceilings are noisy; CPU "
        f"per request is the steadier figure. {elapsed:.0f} s in all.",
        "",
        goals(ladder, frozen),
        why(ladder),
        cost_table(ladder, closed, LADDER, HELD_SHARE, RUNS),
        accuracy_table(real),
        freeze_table(frozen, FREEZE_AFTER_S),
        headline_table(headline, HEADLINE_BATCHING),
        command_lines(ladder, closed, real, headline, as_printed, skipped),
    ]
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    print(run())
