"""A load run across worker processes: start them, merge what they stream, stop them cleanly.

`BurstRun(spec, target).run()` is what `deepchat-tfs bench` and the console's burst screen call.
Workers are fresh Python processes (not forks: the parent may hold grpc channels and a Textual
app) that import only core, in their own session so a terminal's Ctrl-C reaches only the parent,
which stops them cleanly. `abort()` stops issuing at once; what was measured so far stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Literal

from core.load.spec import LoadSpec, Schedule
from core.load.worker import WORKER_COMMAND, BurstTarget, PipePair, WorkerPlan
from core.metrics.latency import LatencySummary
from core.metrics.load import LoadDelta, LoadTotals
from core.metrics.stats import StatsCollector
from core.metrics.timeseries import SecondRow, SecondSeries

__all__ = ["BurstError", "BurstProgress", "BurstResult", "BurstRun", "BurstTarget"]

BurstState = Literal["starting", "warmup", "running", "draining", "done", "aborted", "failed"]

# Workers start this long after the last one is ready, so all begin on the same clock tick.
START_LEAD_S = 0.05
# Spawned workers import grpc and numpy; on a loaded 2-core box that can take several seconds.
READY_TIMEOUT_S = 60.0
# How long stopped workers get to exit before they are terminated, then killed.
EXIT_GRACE_S = 3.0
POLL_INTERVAL_S = 0.02
PROGRESS_INTERVAL_S = 0.25


# gRPC core's client connections on its older iomgr path rather than the EventEngine one: about
# 12 % less CPU per request in a load worker on this machine (docs/BENCHMARKS.md, the peers
# section). A GRPC_EXPERIMENTS the user set is left as it is.
WORKER_GRPC_EXPERIMENTS = "-event_engine_client"


def worker_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The environment a load worker starts with: the parent's, plus WORKER_GRPC_EXPERIMENTS."""
    environment = dict(parent)
    environment.setdefault("GRPC_EXPERIMENTS", WORKER_GRPC_EXPERIMENTS)
    return environment


class BurstError(RuntimeError):
    """The run could not start or its workers failed; the message says which and why."""


@dataclass(frozen=True)
class BurstProgress:
    """Live figures of a run, for a progress bar or line."""

    state: BurstState
    elapsed_s: float
    planned_s: float | None
    issued: int
    finished: int
    ok: int
    errors: dict[str, int]
    late_sends: int
    in_flight: int
    offered_rps: float | None
    achieved_rps: float
    window_qps: float
    window_latency: LatencySummary
    planned_requests: int | None = None

    @property
    def fraction(self) -> float | None:
        """How far the load phase is, 0..1; None when unknown."""
        if self.planned_requests:
            by_count = self.issued / self.planned_requests
            if self.planned_s:
                return min(max(by_count, self.elapsed_s / self.planned_s), 1.0)
            return min(by_count, 1.0)
        if self.planned_s:
            return min(self.elapsed_s / self.planned_s, 1.0)
        return None

    def line(self) -> str:
        """A one-line summary, e.g. for a terminal's progress line."""
        percent = f"{self.fraction * 100:3.0f}%" if self.fraction is not None else "   "
        offered = f"/{self.offered_rps:,.0f}" if self.offered_rps is not None else ""
        errors = sum(self.errors.values())
        latency = self.window_latency
        return (
            f"{self.state:<8} {percent} {self.elapsed_s:6.1f}s"
            f"  {self.achieved_rps:,.0f}{offered} req/s"
            f"  sent {self.issued:,}  ok {self.ok:,}  err {errors:,}  late {self.late_sends:,}"
            f"  in flight {self.in_flight}  p50 {latency.p50_ms:.1f} p99 {latency.p99_ms:.1f} ms"
        )


@dataclass
class BurstResult:
    """Everything a finished (or aborted) run measured, ready for core.report.model."""

    spec: LoadSpec
    target: BurstTarget
    totals: LoadTotals
    started_at: dt.datetime
    load_phase_s: float
    offered_rps: float | None
    aborted: bool = False
    failures: list[str] = field(default_factory=list)
    workers: int = 1
    # The warm-up before the measured window (None without one) and its length.
    warmup_totals: LoadTotals | None = None
    warmup_s: float = 0.0
    # The measured window's start, in seconds since the epoch.
    started_epoch: float | None = None
    # One row per second of the measured window.
    seconds: list[SecondRow] = field(default_factory=list)
    abort_reason: str | None = None


class BurstRun:
    """One load run across worker processes; `await run()` returns its BurstResult."""

    def __init__(
        self,
        spec: LoadSpec,
        target: BurstTarget,
        *,
        stats: StatsCollector | None = None,
        on_progress: Callable[[BurstProgress], None] | None = None,
        seed: int = 0,
        start_at_epoch: float | None = None,
    ) -> None:
        self.spec = spec.check()
        self._schedule: Schedule | None = spec.open_schedule() if spec.mode == "open" else None
        self.target = target
        # Burst traffic only, kept apart from chat traffic; the console's panels may show it.
        self.stats = stats if stats is not None else StatsCollector(window_s=2.0, history_s=600.0)
        self._on_progress = on_progress
        self._seed = seed
        self._start_at_epoch = start_at_epoch
        self._totals = LoadTotals()
        self._warmup_totals = LoadTotals() if spec.warmup_s > 0 else None
        self._series = SecondSeries()
        self._started_epoch: float | None = None
        self.abort_reason: str | None = None
        self._state: BurstState = "starting"
        self._abort_requested = False
        self._start_at: float | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._conns: list[PipePair] = []
        self._stderr_files: list[IO[bytes]] = []
        self._done: set[int] = set()
        self._load_phase_ends: list[float] = []
        self._failures: list[str] = []
        self._aborted_at: float | None = None

    @property
    def worker_count(self) -> int:
        """Workers actually used: never more than there are requesters or requests."""
        limits = [self.spec.workers]
        if self.spec.mode == "closed" and self.spec.concurrency:
            limits.append(self.spec.concurrency)
        if self.spec.requests is not None:
            limits.append(self.spec.requests)
        return max(min(limits), 1)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers started so far."""
        return [process.pid for process in self._processes]

    @property
    def measure_at(self) -> float | None:
        """When the measured window starts (monotonic seconds); None before the run starts."""
        return self._start_at

    @property
    def planned_requests(self) -> int | None:
        """How many requests the whole run is due to send; None when only a time bounds it."""
        if self.spec.requests is not None:
            return self.spec.requests
        if self._schedule is not None and not self._schedule.open_ended:
            return round(sum(segment.arrivals for segment in self._schedule.segments))
        return None

    @property
    def totals(self) -> LoadTotals:
        """The measured window's totals so far."""
        return self._totals

    def abort(self, reason: str | None = None) -> None:
        """Stop issuing now; in-flight requests get a short grace; the result keeps what ran."""
        if reason is not None and self.abort_reason is None:
            self.abort_reason = reason
        if not self._abort_requested:
            self._abort_requested = True
            self._aborted_at = time.monotonic()

    async def run(self) -> BurstResult:
        """Run the load to its end (or abort) and return what was measured."""
        started_wall = dt.datetime.now(dt.timezone.utc)
        try:
            self._spawn()
            await self._wait_ready()
            if not self._abort_requested:
                load_at = self._load_start()
                self._start_at = load_at + self.spec.warmup_s
                self._started_epoch = time.time() + (self._start_at - time.monotonic())
                self._send_all(("start", load_at))
                self._state = "warmup" if self.spec.warmup_s > 0 else "running"
                await self._follow()
        finally:
            await asyncio.shield(asyncio.ensure_future(self._stop_workers()))
        self._state = "aborted" if self._abort_requested else "done"
        if self._failures and self._totals.issued == 0:
            self._state = "failed"
            raise BurstError("; ".join(self._failures))
        self._emit_progress()
        if self._started_epoch is not None:
            started_wall = dt.datetime.fromtimestamp(self._started_epoch, dt.timezone.utc)
        return BurstResult(
            spec=self.spec,
            target=self.target,
            totals=self._totals,
            started_at=started_wall,
            load_phase_s=self._load_phase_s(),
            offered_rps=self._offered_rps(),
            aborted=self._abort_requested,
            failures=list(self._failures),
            workers=self.worker_count,
            warmup_totals=self._warmup_totals,
            warmup_s=self.spec.warmup_s,
            started_epoch=self._started_epoch,
            seconds=self._intended(self._series.finish()),
            abort_reason=self.abort_reason,
        )

    def _intended(self, rows: list[SecondRow]) -> list[SecondRow]:
        """Rows with the schedule's intended sends per second (open loop only)."""
        planned = self._planned_s()
        if self._schedule is None or planned is None:
            return rows
        for row in rows:
            overlap = max(min(row.second + 1.0, planned) - row.second, 0.0)
            row.intended_rps = round(self._schedule.rate_at(row.second + 0.5) * overlap, 3)
        return rows

    def _load_start(self) -> float:
        """When load begins (monotonic): now, or at --start-at's moment on the wall clock."""
        soonest = time.monotonic() + START_LEAD_S
        if self._start_at_epoch is None:
            return soonest
        wait_s = self._start_at_epoch - time.time()
        if wait_s < START_LEAD_S:
            raise BurstError(
                f"start-at {self._start_at_epoch:.3f}: that moment passed "
                f"{-wait_s:.1f} s ago while the workers were starting; expected a future time"
            )
        return time.monotonic() + wait_s

    def _spawn(self) -> None:
        workers = self.worker_count
        for index in range(workers):
            to_child_read, to_child_write = os.pipe()
            to_parent_read, to_parent_write = os.pipe()
            # Worker stderr goes to a file, never to a terminal the console draws on.
            stderr_file = tempfile.TemporaryFile(prefix="deepchat-tfs-burst-")
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER_COMMAND, str(to_child_read), str(to_parent_write)],
                env=worker_environment(os.environ),
                pass_fds=(to_child_read, to_parent_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                start_new_session=True,
            )
            os.close(to_child_read)
            os.close(to_parent_write)
            conn = PipePair(
                Connection(to_parent_read, writable=False),
                Connection(to_child_write, readable=False),
            )
            self._processes.append(process)
            self._conns.append(conn)
            self._stderr_files.append(stderr_file)
            plan = WorkerPlan(index, workers, self.spec, self.target, os.getpid(), self._seed)
            conn.send(plan)

    async def _wait_ready(self) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) < len(self._processes) and not self._abort_requested:
            ready |= self._pump()
            if self._failures:
                raise BurstError("; ".join(self._failures))
            if time.monotonic() > deadline:
                raise BurstError(
                    f"load workers not ready after {READY_TIMEOUT_S:.0f} s "
                    f"({len(ready)} of {len(self._processes)} ready)"
                )
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _follow(self) -> None:
        next_progress = time.monotonic()
        stop_sent = False
        while len(self._done) < len(self._processes):
            if self._abort_requested and not stop_sent:
                self._send_all(("stop",))
                stop_sent = True
            self._pump()
            if self._state == "warmup" and self._start_at is not None:
                if time.monotonic() >= self._start_at:
                    self._state = "running"
            if self._start_at is not None and self._load_phase_ends == [] and self._past_plan():
                self._state = "draining"
            if time.monotonic() >= next_progress:
                self._emit_progress()
                next_progress += PROGRESS_INTERVAL_S
            await asyncio.sleep(POLL_INTERVAL_S)

    def _pump(self) -> set[int]:
        """Handle every pending message; returns the workers that said they are ready.

        A worker whose pipe closed before its last delta is marked done, with a failure.
        """
        ready: set[int] = set()
        for index, conn in enumerate(self._conns):
            try:
                while conn.poll():
                    kind, *payload = conn.recv()
                    if kind == "ready":
                        ready.add(index)
                    elif kind == "delta":
                        self._handle_delta(payload[0])
            except (EOFError, OSError):
                if index not in self._done:
                    self._done.add(index)
                    self._failures.append(self._death_notice(index))
        return ready

    def _death_notice(self, index: int) -> str:
        """Why a worker went away: its exit code and the last line it wrote to stderr."""
        process = self._processes[index]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
        stderr_file = self._stderr_files[index]
        stderr_file.seek(0)
        lines = stderr_file.read().decode(errors="replace").strip().splitlines()
        last_line = f": {lines[-1]}" if lines else ""
        return (
            f"load worker {index} exited unexpectedly (exit code {process.returncode}){last_line}"
        )

    def _handle_delta(self, delta: LoadDelta) -> None:
        if delta.warmup:
            if self._warmup_totals is not None:
                self._warmup_totals.add(delta)
            return
        self._totals.add(delta)
        if self._start_at is not None:
            self._series.add(delta, time.monotonic() - self._start_at, self._totals.in_flight)
        if delta.corrected:  # a failure notice carries no measurements
            self.stats.merge_delta(delta, self.spec.batch_size)
        if delta.failure:
            self._failures.append(delta.failure)
        if delta.done:
            self._done.add(delta.worker)
            if delta.load_phase_end is not None:
                self._load_phase_ends.append(delta.load_phase_end)

    def _send_all(self, message: tuple[object, ...]) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(message)

    async def _stop_workers(self) -> None:
        """Tell every worker to stop, give them EXIT_GRACE_S, then terminate and kill."""
        self._send_all(("stop",))
        deadline = time.monotonic() + EXIT_GRACE_S
        while any(process.poll() is None for process in self._processes):
            # Keep reading: a worker blocked writing to a full pipe could not exit.
            self._pump()
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=1.0)
        for conn in self._conns:
            conn.close()
        for stderr_file in self._stderr_files:
            stderr_file.close()

    def _planned_s(self) -> float | None:
        spec = self.spec
        if self._schedule is not None:
            return self._schedule.end_of(spec.requests, spec.duration_s)
        return spec.duration_s

    def _past_plan(self) -> bool:
        planned = self._planned_s()
        return (
            planned is not None
            and self._start_at is not None
            and time.monotonic() - self._start_at >= planned
        )

    def _offered_rps(self) -> float | None:
        return self._schedule.mean_rps if self._schedule is not None else None

    def _load_phase_s(self) -> float:
        """Seconds from the first intended send until issuing ended (at least the plan)."""
        if self._start_at is None:
            return 0.0
        ends = self._load_phase_ends or [self._aborted_at or time.monotonic()]
        actual = max(max(ends) - self._start_at, 0.0)
        planned = self._planned_s()
        if self._abort_requested or planned is None:
            return actual
        return max(actual, planned)

    def progress(self) -> BurstProgress:
        """The run's live figures as of now."""
        now = time.monotonic()
        elapsed = 0.0 if self._start_at is None else max(now - self._start_at, 0.0)
        offered = self._schedule.rate_at(elapsed) if self._schedule is not None else None
        snapshot = self.stats.snapshot()
        totals = self._totals
        return BurstProgress(
            state=self._state,
            elapsed_s=elapsed,
            planned_s=self._planned_s(),
            issued=totals.issued,
            finished=totals.finished,
            ok=totals.ok,
            errors=dict(totals.errors),
            late_sends=totals.late_sends,
            in_flight=totals.in_flight,
            offered_rps=offered,
            achieved_rps=totals.issued / elapsed if elapsed > 0 else 0.0,
            window_qps=snapshot.qps,
            window_latency=snapshot.latency,
            planned_requests=self.spec.requests,
        )

    def _emit_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress())
