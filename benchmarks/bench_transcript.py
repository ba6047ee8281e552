"""Opening a large chat transcript: what the console pays after its first frame.

Fills a transcript (core/chat/transcript.py's schema, through its own migrations) with SIZE
messages of chat-sized text (a prompt of ~80 characters and a reply of ~700, 25 exchanges per
conversation), then times, median of 5 each with the file in the page cache: opening it
(`Transcript(path)`, everything the constructor does) when the open reads every page (the first
open after a crash, beside a second console or after a change by anything else; before the
clean-close record, every open) and when it follows a clean close; the integrity check alone;
and the prompt history the chat pane loads right after opening.

    python -m benchmarks.bench_transcript 10000 100000 1000000
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from core.chat.transcript import Transcript

SIZES = (10_000, 100_000, 1_000_000)
RUNS = 5
EXCHANGES_PER_CONVERSATION = 25
_WORDS = (
    "batching model server latency replica canary version signature tensor request reply "
    "queue throughput deadline metrics gradient token window buffer graph session"
).split()


def _text(seed: int, length: int) -> str:
    words = [_WORDS[(seed * 7 + index * 13) % len(_WORDS)] for index in range(length // 6 + 1)]
    return f"{seed} " + " ".join(words)[:length]


def fill(path: Path, messages: int) -> None:
    """A transcript of about `messages` messages: prompts and replies, 25 exchanges a chat."""
    Transcript(path).close()  # the schema, by the module's own migrations
    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.execute("BEGIN")
    started_at = 1_700_000_000.0
    message_id = 0
    conversation = 0
    while message_id < messages:
        conversation += 1
        cursor = connection.execute(
            "INSERT INTO conversations (started_at, target, model_name) VALUES (?, ?, ?)",
            (started_at + message_id, "127.0.0.1:8500", "deepchat_model"),
        )
        conversation_id = cursor.lastrowid
        rows = []
        for _ in range(EXCHANGES_PER_CONVERSATION):
            if message_id >= messages:
                break
            message_id += 2
            prompt_id = message_id - 1
            when = started_at + message_id
            rows.append(
                (prompt_id, conversation_id, when, "user", _text(prompt_id, 80), "answered",
                 None, "deepchat_model", None, None, None, None)
            )  # fmt: skip
            rows.append(
                (message_id, conversation_id, when + 0.2, "assistant", _text(message_id, 700),
                 "ok", prompt_id, "deepchat_model", 2, "serving_default", 212.5, None)
            )  # fmt: skip
        connection.executemany(
            "INSERT INTO messages (id, conversation_id, created_at, role, text, status, reply_to,"
            " model_name, model_version, signature_name, latency_ms, error_code)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    connection.execute("COMMIT")
    connection.close()


def _median_ms(action: Callable[[], float], runs: int = RUNS) -> float:
    """The median of what action returns: the seconds it timed, in ms."""
    return statistics.median(action() * 1000 for _ in range(runs))


def _pragma(path: Path, pragma: str) -> Callable[[], float]:
    def run() -> float:
        connection = sqlite3.connect(str(path))
        try:
            started = time.perf_counter()
            connection.execute(pragma).fetchall()
            return time.perf_counter() - started
        finally:
            connection.close()

    return run


def _timed_open(path: Path, *, checked: bool) -> tuple[float, float]:
    """Seconds to open the transcript and to read its prompt history; closed (not timed) after."""
    started = time.perf_counter()
    transcript = Transcript(path)
    opened = time.perf_counter()
    transcript.prompt_history()
    read = time.perf_counter()
    transcript.close()
    assert transcript.checked == checked
    return opened - started, read - opened


def measure(messages: int) -> dict[str, float]:
    """Milliseconds (medians) to open a transcript of this many messages, and its parts."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "transcript.sqlite3"
        fill(path, messages)
        size_mb = path.stat().st_size / 2**20
        _pragma(path, "PRAGMA quick_check")()  # into the page cache

        def open_checked() -> float:
            path.with_name(path.name + "-clean").unlink(missing_ok=True)  # as after a crash
            return _timed_open(path, checked=True)[0]

        def open_after_clean_close() -> float:
            return _timed_open(path, checked=False)[0]

        def history() -> float:
            return _timed_open(path, checked=False)[1]

        checked = _median_ms(open_checked)
        clean = _median_ms(open_after_clean_close)
        return {
            "size_mb": size_mb,
            "open_checked_ms": checked,
            "open_clean_ms": clean,
            "quick_check_ms": _median_ms(_pragma(path, "PRAGMA quick_check")),
            "history_ms": _median_ms(history),
        }


def run(sizes: tuple[int, ...] = SIZES) -> str:
    """The Markdown section for docs/BENCHMARKS.md."""
    lines = [
        "## Opening the chat transcript",
        "",
        "`Transcript(path)` on a transcript of N messages (prompts ~80 characters,"
        " replies ~700, 25 exchanges per conversation), as the chat pane opens it after the first"
        " frame; the file in the page cache, median of 5. *Full check*: the open reads every page"
        " (`PRAGMA quick_check`), as after a crash, beside a second console, after a change by"
        " anything else or a week after the last full check (and, before the clean-close record,"
        " at every open). *After a clean close*: the file is as the last close left it."
        " *Prompt history*: the pane's next call.",
        "",
        "| messages | file | open, full check | open after a clean close | quick_check alone "
        "| prompt history |",
        "|---|---|---|---|---|---|",
    ]
    for messages in sizes:
        figures = measure(messages)
        lines.append(
            f"| {messages:,} | {figures['size_mb']:.0f} MB | {figures['open_checked_ms']:.1f} ms "
            f"| {figures['open_clean_ms']:.1f} ms | {figures['quick_check_ms']:.1f} ms "
            f"| {figures['history_ms']:.1f} ms |"
        )
    lines += [
        "",
        "`PRAGMA quick_check(1)` costs the same as `quick_check` on a sound file (91 vs 94 ms at"
        " 100,000): its argument caps the errors listed, not the pages read. The prompt history"
        " reads prompts newest first and stops at 200 distinct; as a `GROUP BY text` over every"
        " prompt it took 5.2 / 45 / 495 ms at these sizes.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = tuple(int(arg) for arg in sys.argv[1:]) or SIZES
    print(run(sizes))


if __name__ == "__main__":
    main()
