"""The console at work: input latency while a 1,000 req/s burst runs, and its CPU idle and busy.

The console runs in a 160 x 48 pty against benchmarks.chat_stub_server (a lean TF Serving stand-in
in its own process). Idle: the console's own CPU (utime+stime of its process, not its children)
over a quiet stretch once the header says `serving`, while the prompt's cursor blinks after a
key and once it has stopped (tui.widgets.chat.HistoryInput.BLINK_TIMEOUT_S). Busy: `/burst
1000rps ...` typed in the prompt starts the load in worker processes; F4 goes back to the console
while it runs, and 100 keys are typed into the chat prompt, each a character the screen shows
nowhere else; the latency of a key is the time from writing it to the pty until the console has
written it back. The console's CPU is sampled over the same stretch. The workers' CPU is not the
console's.
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

from core.embedded.launcher import free_loopback_port
from core.identity import DEMO_MODEL_NAME as DEMO_MODEL
from tui.widgets.chat import HistoryInput

ROOT = Path(__file__).resolve().parent.parent
SIZE = (48, 160)
# Greek small letters: drawn nowhere else on the console's screen.
KEYS = [chr(code) for code in range(0x3B1, 0x3C9 + 1) if code != 0x3C2]
# Seconds of idle measured while the prompt's cursor still blinks after a key.
BLINK_WINDOW_S = 8.0


@dataclass(frozen=True)
class LiveRun:
    """What one console run measured."""

    idle_cpu_percent: float
    blinking_cpu_percent: float
    burst_cpu_percent: float
    key_latencies_ms: list[float]
    burst_line: str
    load_average: float

    @property
    def p99_ms(self) -> float:
        """99th percentile key latency."""
        ordered = sorted(self.key_latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Terminal:
    """A pty the console draws on; reads everything it writes so it never blocks."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.fd, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *SIZE, 0, 0))
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            start_new_session=True,
        )
        os.close(follower)
        self.seen = bytearray()

    def pump(self, seconds: float) -> None:
        """Read for this long."""
        self.until(b"\x00never", seconds)

    def until(self, mark: bytes, seconds: float, start: int = 0) -> bool:
        """Read until mark appears after offset start, or seconds pass."""
        deadline = time.monotonic() + seconds
        while mark not in self.seen[start:] if start else mark not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.05))
            if ready:
                try:
                    self.seen.extend(os.read(self.fd, 65536))
                except OSError:
                    return False
        return True

    def type(self, text: str | bytes) -> None:
        """Write keys to the console."""
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def close(self) -> None:
        """Quit the console (Ctrl-Q), then make sure it is gone."""
        try:
            self.type(b"\x11")
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:
                self.pump(0.1)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            os.close(self.fd)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _cpu_percent_over(terminal: Terminal, process: psutil.Process, seconds: float) -> float:
    before, started = _cpu_seconds(process), time.monotonic()
    terminal.pump(seconds)
    return 100 * (_cpu_seconds(process) - before) / (time.monotonic() - started)


def type_keys(terminal: Terminal, keys: int) -> list[float]:
    """Type keys about 10 a second; each one's latency (ms) until the screen shows it."""
    latencies = []
    for index in range(keys):
        key = KEYS[index % len(KEYS)]
        mark = len(terminal.seen)
        sent = time.monotonic()
        terminal.type(key)
        if terminal.until(key.encode(), 5, start=mark):
            latencies.append((time.monotonic() - sent) * 1000)
        terminal.pump(0.08)  # a fast typist: about 10 keys a second
        if index % 40 == 39:
            terminal.type(b"\x15")  # Ctrl-U: empty the input line now and then
            terminal.pump(0.05)
    return latencies


def bare_floor(rate: int = 1000, burst_s: int = 30, keys: int = 100) -> list[float]:
    """Key latencies of a bare Textual app's Input while `bench` runs the same load elsewhere."""
    server, target = start_stub_server()
    with tempfile.TemporaryDirectory() as scratch:
        bench = ["bench", "--target", target, "--model", DEMO_MODEL, "--rate", str(rate)]
        report = f"{scratch}/r.json"
        load = subprocess.Popen(
            [sys.executable, "-m", "cli", *bench, "--duration", f"{burst_s}s", "--out", report],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="48")
        terminal = Terminal([sys.executable, "-m", "benchmarks.bare_app", "--input"], env)
        try:
            terminal.until(b" Memory ", 30)
            terminal.pump(8.0)  # the load workers start and reach their rate
            return type_keys(terminal, keys)
        finally:
            terminal.close()
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
            server.kill()
            server.wait()


def start_stub_server() -> tuple[subprocess.Popen[str], str]:
    """The chat stub server in its own process; (process, target)."""
    port = free_loopback_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.chat_stub_server", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the chat stub server did not start")
    return process, f"127.0.0.1:{port}"


def measure(rate: int = 1000, burst_s: int = 40, keys: int = 100, idle_s: float = 10.0) -> LiveRun:
    """One console run: idle CPU, then keys typed and CPU while a burst runs."""
    server, target = start_stub_server()
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(
            os.environ,
            TERM="xterm-256color",
            COLUMNS="160",
            LINES="48",
            DEEPCHAT_TFS_REPORTS_DIR=str(Path(scratch) / "reports"),
        )
        command = [sys.executable, "-m", "cli", "chat", "--target", target]
        terminal = Terminal([*command, "--data-dir", scratch], env)
        try:
            if not terminal.until(b"serving", 60):
                raise RuntimeError(f"console not serving: {bytes(terminal.seen[-300:])!r}")
            console = psutil.Process(terminal.process.pid)
            terminal.pump(2.0)  # let start-up work settle
            # A key (typed and erased) wakes the prompt's cursor, which blinks until
            # BLINK_TIMEOUT_S without a key: idle while it blinks, then settled idle.
            terminal.type("x\x7f")
            blinking = _cpu_percent_over(terminal, console, BLINK_WINDOW_S)
            terminal.pump(HistoryInput.BLINK_TIMEOUT_S - BLINK_WINDOW_S + 1.0)
            idle = _cpu_percent_over(terminal, console, idle_s)
            mark = len(terminal.seen)
            terminal.type(f"/burst {rate}rps {burst_s}s\r")
            if not terminal.until(b"running", 60, start=mark):
                raise RuntimeError(f"burst not running: {bytes(terminal.seen[-300:])!r}")
            terminal.type(b"\x1bOS")  # F4: back to the console, the burst keeps running
            terminal.pump(1.0)
            before, started = _cpu_seconds(console), time.monotonic()
            latencies = type_keys(terminal, keys)
            busy = 100 * (_cpu_seconds(console) - before) / (time.monotonic() - started)
            mark = len(terminal.seen)
            terminal.until(b"last:", burst_s + 30, start=mark)
            tail = bytes(terminal.seen[mark:]).decode(errors="replace")
            burst_line = _burst_summary(tail)
        finally:
            terminal.close()
            server.kill()
            server.wait()
    return LiveRun(idle, blinking, busy, latencies, burst_line, os.getloadavg()[0])


def _burst_summary(screen_bytes: str) -> str:
    """The Burst panel's achieved-rate line from what the console drew, if found."""
    for chunk in reversed(screen_bytes.split("\x1b")):
        text = chunk.split("m", 1)[-1] if chunk[:1] == "[" else chunk
        if "rps  p99" in text:
            return text.strip()
    return "n/a"


def run(runs: int = 1) -> str:
    """Markdown section: key latency p99 during a 1,000 req/s burst, console CPU idle and busy."""
    results = [measure() for _ in range(runs)]
    floor = bare_floor()
    floor_p99 = sorted(floor)[min(len(floor) - 1, int(0.99 * len(floor)))] if floor else 0.0
    latencies = [value for result in results for value in result.key_latencies_ms]
    p99s = [result.p99_ms for result in results]
    rows = [
        ("keys echoed", f"{len(latencies)} of {100 * runs}"),
        ("key latency p50", f"{statistics.median(latencies):.1f} ms"),
        (
            "key latency p99 (goal at most 50 ms): median of the runs (each run)",
            f"{statistics.median(p99s):.1f} ms ({', '.join(f'{p:.0f}' for p in p99s)})",
        ),
        ("key latency max", f"{max(latencies):.1f} ms"),
        (
            "floor: a bare Textual app's Input, same load run by `bench` beside it, p50 / p99",
            f"{statistics.median(floor):.1f} ms / {floor_p99:.1f} ms" if floor else "n/a",
        ),
        (
            "console CPU, idle (goal under 2 %): median (each run)",
            f"{statistics.median(r.idle_cpu_percent for r in results):.1f} % of a core "
            f"({', '.join(f'{r.idle_cpu_percent:.1f}' for r in results)})",
        ),
        (
            f"console CPU, idle within {HistoryInput.BLINK_TIMEOUT_S:.0f} s of a key "
            "(the prompt's cursor blinking): median (each run)",
            f"{statistics.median(r.blinking_cpu_percent for r in results):.1f} % of a core "
            f"({', '.join(f'{r.blinking_cpu_percent:.1f}' for r in results)})",
        ),
        (
            "console CPU, during the burst (goal under 15 %)",
            f"{statistics.median(r.burst_cpu_percent for r in results):.1f} % of a core",
        ),
        ("the burst as the Burst panel saw it", results[-1].burst_line.replace("|", "\\|")),
    ]
    return (
        "### The console at work\n\n"
        "`python -m cli chat --target` a lean TF Serving stand-in "
        "(`benchmarks/chat_stub_server.py`, its own process) in a 160 x 48 pty. Idle: the "
        "console's CPU (its own process, not its children) once it serves: over "
        f"{BLINK_WINDOW_S:.0f} s after a key, while the prompt's cursor blinks, then over 10 s "
        f"once it has stopped blinking ({HistoryInput.BLINK_TIMEOUT_S:.0f} s without a key). "
        "Busy: "
        "`/burst 1000rps 40s` typed in the prompt (load in worker processes), F4 back to the "
        "console, then 100 keys typed into the chat prompt about 10 a second; a key's latency "
        "is from writing it to the pty until the console has drawn it. The console's CPU is "
        f"sampled over the same stretch. {runs} run(s); load average "
        f"{results[-1].load_average:.1f} at the end, on 2 cores shared with the server, the "
        "load workers and other jobs.\n\n"
        "| figure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    )


if __name__ == "__main__":
    print(run())
