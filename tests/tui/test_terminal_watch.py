"""The console ends when its terminal hangs up, even when no SIGHUP reaches it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil
import pytest

from tui.terminal_watch import terminal_gone, watch_terminal


def test_the_watch_calls_back_once_the_terminal_hangs_up() -> None:
    master, slave = pty.openpty()
    gone = threading.Event()
    stop = threading.Event()
    try:
        watch_terminal(slave, stop, interval_s=0.02, on_gone=gone.set)
        assert not gone.wait(0.3)  # a working terminal is left alone
        os.close(master)  # what a closed window or a killed tmux does to the pty
        assert gone.wait(5.0)
    finally:
        stop.set()
        os.close(slave)


def test_a_pipe_is_not_a_terminal() -> None:
    read_end, write_end = os.pipe()
    try:
        assert terminal_gone(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def _drain(fd: int, seen: bytearray) -> None:
    """Read the console's screen output so it never blocks on a full pty."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        seen.extend(chunk)


@pytest.fixture
def isolated_home(tmp_path: Path) -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        environment[name] = str(tmp_path / name.lower())
    environment["TERM"] = "xterm-256color"
    return environment


@pytest.mark.slow
def test_a_console_whose_session_leader_swallows_sighup_exits_with_its_server(
    demo_model_base_path: Path, tmp_path: Path, isolated_home: dict[str, str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"embedded:\n  model_base_path: {demo_model_base_path}\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # The session leader catches SIGHUP and keeps waiting for the console, as make does under
    # `make run` started as a tmux command; the console itself gets no SIGHUP.
    console = f"{sys.executable} -m cli --config {config}"
    leader = subprocess.Popen(
        ["sh", "-c", f"trap : HUP; {console}; wait"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=own_terminal,
        env=isolated_home,
        cwd=Path(__file__).resolve().parents[2],
    )
    os.close(slave)
    screen = bytearray()
    reader = threading.Thread(target=_drain, args=(master, screen), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        server = None
        while server is None and time.monotonic() < deadline:
            for process in psutil.Process(leader.pid).children(recursive=True):
                if "serve" in process.cmdline():
                    server = process
            time.sleep(0.2)
        assert server is not None, f"no embedded server started; screen: {bytes(screen[-500:])!r}"
        (console_process,) = psutil.Process(leader.pid).children()
        while b"deepchat_model" not in screen and time.monotonic() < deadline:
            time.sleep(0.2)  # the first frame is drawn
        os.close(master)  # the terminal hangs up
        master = -1
        _, alive = psutil.wait_procs([console_process, server], timeout=20)
        assert not alive, f"still running 20 s after the hang-up: {alive}"
        assert leader.wait(timeout=10) is not None
    finally:
        if master >= 0:
            os.close(master)
        for process in psutil.Process(os.getpid()).children(recursive=True):
            process.kill()
