"""End the console when its terminal is gone, as the SIGHUP it may never receive would.

When a terminal hangs up (its window closed, tmux killed, ssh dropped), the kernel sends SIGHUP
to the terminal's session leader, and a shell passes it on to its jobs. A leader that neither
dies nor passes it on leaves the console running without a terminal: `make run` started as a
tmux command is one (make waits for its child). Textual does not notice either: its input thread
spins on end-of-file and its output thread dies on EIO, after which the app blocks on a full
output queue. Seen here: a console orphaned that way still ran 40 minutes later, using CPU, with
its 650 MB embedded server.

A thread checks the terminal once a second; once it is gone, the process sends itself SIGHUP.
Its default action ends the console, and the embedded server, which asks Linux for SIGTERM when
its parent dies, stops with it.
"""

from __future__ import annotations

import os
import signal
import termios
import threading
import time
from collections.abc import Callable

CHECK_INTERVAL_S = 1.0


def terminal_gone(fd: int) -> bool:
    """Whether fd no longer refers to a working terminal (hung up, closed, not a tty)."""
    try:
        termios.tcgetattr(fd)
    except (termios.error, OSError):
        return True
    return False


def hang_up() -> None:
    """End this process as a hangup would; exit anyway if SIGHUP is ignored (nohup)."""
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(1.0)
    os._exit(128 + signal.SIGHUP)


def watch_terminal(
    fd: int,
    stop: threading.Event,
    *,
    interval_s: float = CHECK_INTERVAL_S,
    on_gone: Callable[[], None] = hang_up,
) -> threading.Thread:
    """Check fd every interval_s until stop is set; call on_gone once the terminal is gone."""

    def run() -> None:
        while not stop.wait(interval_s):
            if terminal_gone(fd):
                on_gone()
                return

    thread = threading.Thread(target=run, name="terminal-watch", daemon=True)
    thread.start()
    return thread
