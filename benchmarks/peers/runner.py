"""Runs one peer against a target: CPU of its process tree, the target's count, an optional freeze.

CPU per request is taken over the steady part of the run, found from the echo target's count of
answered requests (from half a second after the first answer to 0.3 s before the last), so every
tool's start-up and shut-down are left out the same way; the whole run's CPU is kept too.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.peers.echo import EchoTarget
from benchmarks.peers.tools import ROOT, Figures, Load, Peer

SAMPLE_EVERY_S = 0.05
SKIP_START_S = 0.5
SKIP_END_S = 0.3
FREEZE_S = 1.0


@dataclass(frozen=True)
class Run:
    """One peer run: what it reported and what was measured around it."""

    peer: str
    load: Load
    command: str
    figures: Figures | None
    failure: str | None
    cpu_s: float  # utime + stime of the whole process tree, start to exit
    steady_cpu_us_per_request: float | None
    steady_rps: float | None  # the target's answers per second in the steady part
    froze_at_s: float | None = None  # seconds after the first answer


class _TreeSampler(threading.Thread):
    """Samples (time, tree CPU seconds, target count) every SAMPLE_EVERY_S while the tool runs."""

    def __init__(
        self, pid: int, echo: EchoTarget | None, freeze_after_s: float | None, baseline: int
    ) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.echo = echo
        self.freeze_after_s = freeze_after_s
        # (sample time, tree CPU s, answered, time of that count): all monotonic seconds.
        self.samples: list[tuple[float, float, int, float]] = []
        self.first_answer_at: float | None = None
        self.froze_at_s: float | None = None
        self.stop = threading.Event()
        self._processes: dict[int, psutil.Process] = {}
        # The target may have answered earlier runs: only answers past this count are this run's.
        self.baseline = baseline

    def _tree_cpu(self) -> float:
        try:
            root = self._processes.setdefault(self.pid, psutil.Process(self.pid))
            for child in root.children(recursive=True):
                self._processes.setdefault(child.pid, child)
        except psutil.Error:
            pass
        total = 0.0
        for process in list(self._processes.values()):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # exited: its time is in its parent's children_* once reaped
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            count, counted_at = self.echo.answered() if self.echo is not None else (0, now)
            count -= self.baseline
            if count > 0 and self.first_answer_at is None:
                self.first_answer_at = now
            self.samples.append((now, self._tree_cpu(), count, counted_at))
            if (
                self.freeze_after_s is not None
                and self.froze_at_s is None
                and self.first_answer_at is not None
                and now - self.first_answer_at >= self.freeze_after_s
                and self.echo is not None
            ):
                self.echo.freeze()
                self.froze_at_s = now - self.first_answer_at
                time.sleep(FREEZE_S)
                self.echo.thaw()
                continue
            self.stop.wait(SAMPLE_EVERY_S)

    def steady(self) -> tuple[float | None, float | None]:
        """(CPU µs per answered request, answers per second) over the steady part."""
        counted = [sample for sample in self.samples if sample[2] > 0]
        if len(counted) < 3:
            return None, None
        final = counted[-1][2]
        last_rise = next(sample[0] for sample in counted if sample[2] == final)
        begin_at, end_at = counted[0][0] + SKIP_START_S, last_rise - SKIP_END_S
        window = [sample for sample in counted if begin_at <= sample[0] <= end_at]
        if len(window) < 3:
            return None, None
        (_, cpu0, n0, t0), (_, cpu1, n1, t1) = window[0], window[-1]
        if n1 <= n0 or t1 <= t0:
            return None, None
        return (cpu1 - cpu0) / (n1 - n0) * 1e6, (n1 - n0) / (t1 - t0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_peer(
    peer: Peer,
    address: str,
    load: Load,
    *,
    echo: EchoTarget | None = None,
    freeze_after_s: float | None = None,
) -> Run:
    """Run peer once with load against address; echo (if given) counts answers and can freeze."""
    with tempfile.TemporaryDirectory(prefix="peer-") as directory:
        workdir = Path(directory)
        command = peer.command(address, load, workdir)
        env = {**os.environ, **peer.env(load), "PYTHONPATH": str(ROOT)}
        before = _children_cpu()
        baseline = echo.answered()[0] if echo is not None else 0
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        sampler = _TreeSampler(process.pid, echo, freeze_after_s, baseline)
        sampler.start()
        try:
            stdout, stderr = process.communicate(timeout=load.duration_s + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        finally:
            sampler.stop.set()
            sampler.join()
        cpu_s = _children_cpu() - before
        figures: Figures | None = None
        failure: str | None = None
        try:
            figures = peer.parse(stdout, workdir)
        except (OSError, ValueError, KeyError) as error:
            tail = (stderr or stdout).strip().splitlines()[-3:]
            failure = (
                f"exit {process.returncode}: {type(error).__name__}: {error}; {' '.join(tail)}"
            )
        cost, rps = sampler.steady()
        return Run(
            peer=peer.name,
            load=load,
            command=peer.shown(command, address),
            figures=figures,
            failure=failure,
            cpu_s=cpu_s,
            steady_cpu_us_per_request=cost,
            steady_rps=rps,
            froze_at_s=sampler.froze_at_s,
        )
