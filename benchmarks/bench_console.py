"""Console start-up against a bare Textual app, then the console at work (benchmarks.console_live).

The first frame is measured paired: the bare app (benchmarks/bare_app.py, one Static) and the
console are launched alternately in the same pty set-up, and the ratio of their medians is the
figure that holds on a shared, loaded machine.

Each run starts `python -m cli` in a fresh pseudo-terminal of 160 x 48, reads what it draws until
the Memory panel's title appears (the first screen is written at once), samples the
console's RSS a little later, checks whether the TensorFlow runtime's shared library got mapped
into the console, then quits with Ctrl-Q and times the exit. Two set-ups: a remote target
(nothing listens there: the console's own cost) and the embedded default (the server starts in a
child process while the first frame is already drawn).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.config.cache import CACHE_ENV

ROOT = Path(__file__).resolve().parent.parent
# The Memory panel's title: drawn in the same write as the rest of the first frame. (The prompt's
# placeholder is a poor mark: the blinking cursor splits it with escape codes.)
FIRST_FRAME_MARK = b" Memory "
READY_MARK = b"serving"
SIZE = (48, 160)  # rows, columns


@dataclass(frozen=True)
class StartupRun:
    """One console launch."""

    first_frame_s: float
    rss_bytes: int
    tensorflow_mapped: bool
    ready_s: float | None
    exit_s: float
    children_left: int


def _read_until(fd: int, mark: bytes, deadline: float, seen: bytearray) -> bool:
    """Read the pty into seen until mark appears or the deadline passes."""
    while mark not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
        if ready:
            try:
                seen.extend(os.read(fd, 65536))
            except OSError:
                return False
    return True


def _tensorflow_mapped(pid: int) -> bool:
    """Whether TensorFlow's runtime library is mapped into the process."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "pywrap_tensorflow" in maps or "libtensorflow_framework" in maps


def launch(
    args: list[str],
    data_dir: Path | None,
    *,
    wait_ready_s: float = 0.0,
    settle_s: float = 2.0,
    command: list[str] | None = None,
) -> StartupRun:
    """Start the console (or another command) in a pty, measure, and quit it."""
    leader_fd, follower_fd = pty.openpty()
    fcntl.ioctl(follower_fd, termios.TIOCSWINSZ, struct.pack("HHHH", *SIZE, 0, 0))
    environment = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="48")
    # As a user runs it: Python's bytecode cache on (the bare app's Textual has its .pyc files
    # from pip; without the cache, every launch would compile the console's own modules).
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.monotonic()
    if command is None:
        command = [sys.executable, "-m", "cli", *args, "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=follower_fd,
        stdout=follower_fd,
        stderr=follower_fd,
        env=environment,
        start_new_session=True,
    )
    os.close(follower_fd)
    seen = bytearray()
    try:
        if not _read_until(leader_fd, FIRST_FRAME_MARK, started + 30, seen):
            raise RuntimeError(f"no first frame within 30 s: {bytes(seen[-400:])!r}")
        first_frame_s = time.monotonic() - started
        ready_s = None
        if wait_ready_s:
            if _read_until(leader_fd, READY_MARK, started + wait_ready_s, seen):
                ready_s = time.monotonic() - started
        else:
            _read_until(leader_fd, b"\x00never", time.monotonic() + settle_s, seen)
        console = psutil.Process(process.pid)
        rss_bytes = console.memory_info().rss
        tensorflow_mapped = _tensorflow_mapped(process.pid)
        children = console.children(recursive=True)
        quit_at = time.monotonic()
        os.write(leader_fd, b"\x11")  # Ctrl-Q
        while process.poll() is None and time.monotonic() - quit_at < 30:
            _read_until(leader_fd, b"\x00never", time.monotonic() + 0.05, seen)
        exit_s = time.monotonic() - quit_at
        time.sleep(0.5)
        children_left = sum(1 for child in children if child.is_running())
        return StartupRun(
            first_frame_s, rss_bytes, tensorflow_mapped, ready_s, exit_s, children_left
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(leader_fd)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _row(name: str, results: list[StartupRun]) -> str:
    first_frames_ms = [r.first_frame_s * 1000 for r in results]
    ready = [r.ready_s for r in results if r.ready_s is not None]
    cells = [
        name,
        str(len(results)),
        f"{_median(first_frames_ms):.0f} ms "
        f"({min(first_frames_ms):.0f}-{max(first_frames_ms):.0f})",
        f"{_median([r.rss_bytes for r in results]) / 2**20:.0f} MB",
        "yes" if any(r.tensorflow_mapped for r in results) else "no",
        f"{_median(ready):.1f} s" if ready else "n/a",
        f"{_median([r.exit_s for r in results]):.2f} s",
        str(sum(r.children_left for r in results)),
    ]
    return "| " + " | ".join(cells) + " |"


BARE_APP = [sys.executable, "-m", "benchmarks.bare_app"]
REMOTE_ARGS = ["chat", "--target", "127.0.0.1:1"]


@dataclass(frozen=True)
class PairedFirstFrames:
    """First frames of the console and of the bare Textual app, launched alternately."""

    console: list[StartupRun]
    bare: list[StartupRun]

    @property
    def console_ms(self) -> float:
        """The console's median first frame."""
        return _median([r.first_frame_s * 1000 for r in self.console])

    @property
    def bare_ms(self) -> float:
        """The bare app's median first frame."""
        return _median([r.first_frame_s * 1000 for r in self.bare])

    @property
    def ratio(self) -> float:
        """Console over bare app, medians of the paired runs."""
        return self.console_ms / self.bare_ms


def paired_first_frames(
    runs: int, data_dir: Path, args: list[str] | None = None, *, settle_s: float = 2.0
) -> PairedFirstFrames:
    """Launch the bare app and the console alternately, runs times each, in the same pty set-up."""
    console_args = args if args is not None else REMOTE_ARGS
    console: list[StartupRun] = []
    bare: list[StartupRun] = []
    for _ in range(runs):
        bare.append(launch([], None, command=BARE_APP, settle_s=settle_s))
        console.append(launch(console_args, data_dir, settle_s=settle_s))
    return PairedFirstFrames(console, bare)


def run(runs: int = 5, embedded_runs: int = 3) -> str:
    """Markdown section: first frame against the bare Textual app, RSS and exit."""
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        # The consoles' validated config lives in the run's own cache, so another console on
        # this machine (the user cache keeps one entry) cannot turn these starts into uncached
        # ones; one launch of each set-up stores it, unmeasured.
        saved_cache = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = str(data_dir / "config-cache")
        try:
            launch(REMOTE_ARGS, data_dir, settle_s=0.5)
            # Nothing listens on port 1: the console draws, marks the server down, keeps trying.
            paired = paired_first_frames(runs, data_dir)
            launch([], data_dir, settle_s=0.5)
            embedded = [launch([], data_dir, wait_ready_s=180) for _ in range(embedded_runs)]
        finally:
            if saved_cache is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = saved_cache
    from benchmarks import console_live

    live = console_live.run(runs=3)
    rows = [
        _row("bare Textual app (one Static)", paired.bare),
        _row("console, remote target", paired.console),
        _row("console, embedded server", embedded),
    ]
    return (
        "## Console start-up (bench_console)\n\n"
        "`python -m cli` in a fresh 160 x 48 pty: time from launch until the first screen with "
        "the panel frames is drawn (the Memory panel's title), paired run by run with a bare "
        "Textual app (`benchmarks/bare_app.py`, one Static) launched alternately in the same "
        "set-up; the console's RSS after the first frame (2 s later for the remote target, once "
        "the server serves for the embedded one); whether TensorFlow's runtime library is mapped "
        "into the console; time until the header says `serving`; Ctrl-Q to exit; server "
        "processes left behind after exit. The consoles start from a validated config in the "
        "run's own cache (one unmeasured launch stores it), as a second start does. Medians over "
        "the runs; the machine's load average "
        f"was {os.getloadavg()[0]:.1f} at the end.\n\n"
        f"**First frame: console / bare Textual app = {paired.ratio:.2f}** "
        f"({paired.console_ms:.0f} ms / {paired.bare_ms:.0f} ms, medians of {runs} paired runs; "
        "goal at most 1.3).\n\n"
        "| set-up | runs | first frame | RSS | TF in console | serving after | exit "
        "| left behind |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + live
    )


if __name__ == "__main__":
    print(run())
