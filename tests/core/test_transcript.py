"""The SQLite transcript: written before sending, migrations by user_version, exports."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.chat.transcript import (
    FULL_CHECK_EVERY_S,
    MIGRATIONS,
    SCHEMA_VERSION,
    Transcript,
    TranscriptError,
    migrate,
)


class FakeClock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_prompt_is_stored_pending_before_any_reply(tmp_path: Path) -> None:
    path = tmp_path / "data" / "transcript.sqlite3"
    with Transcript(path, target="127.0.0.1:8500", model_name="deepchat_model") as transcript:
        prompt_id = transcript.add_prompt("what is a version label?", model_name="deepchat_model")
    # A second process (or a console restarted after a crash) sees the unanswered prompt.
    with Transcript(path) as reopened:
        pending = reopened.pending_prompts()
        assert [message.id for message in pending] == [prompt_id]
        assert pending[0].text == "what is a version label?"
        assert pending[0].status == "pending"


def test_reply_and_error_link_to_their_prompt(tmp_path: Path) -> None:
    with Transcript(tmp_path / "t.db", clock=FakeClock()) as transcript:
        first = transcript.add_prompt("hello")
        transcript.add_reply(
            first, "hi there", model_name="m", model_version=2, signature_name="s", latency_ms=4.5
        )
        second = transcript.add_prompt("again")
        transcript.add_error(second, "UNAVAILABLE", "failed to connect to all addresses")
        messages = transcript.messages()
        assert [(m.role, m.status) for m in messages] == [
            ("user", "answered"),
            ("assistant", "ok"),
            ("user", "failed"),
            ("error", "error"),
        ]
        assert messages[1].reply_to == first and messages[1].model_version == 2
        assert messages[1].signature_name == "s" and messages[1].latency_ms == 4.5
        assert messages[3].error_code == "UNAVAILABLE"
        assert transcript.pending_prompts() == []


def test_new_conversation_separates_messages_and_history_spans_them(tmp_path: Path) -> None:
    with Transcript(tmp_path / "t.db") as transcript:
        transcript.add_prompt("one")
        transcript.add_prompt("two")
        old = transcript.conversation_id
        transcript.new_conversation("t", "m")
        transcript.add_prompt("one")
        assert [m.text for m in transcript.messages()] == ["one"]
        assert len(transcript.messages(old)) == 2
        assert transcript.prompt_history() == ["two", "one"]


def test_export_writes_markdown_and_jsonl(tmp_path: Path) -> None:
    with Transcript(tmp_path / "t.db", clock=FakeClock()) as transcript:
        prompt = transcript.add_prompt("line one\nline two")
        transcript.add_reply(prompt, "**bold** reply", model_name="m", model_version=1)
        failed = transcript.add_prompt("x")
        transcript.add_error(failed, "NOT_FOUND", "Servable not found for request: Latest(m)")
        markdown_path, jsonl_path = transcript.export(tmp_path / "exports")
    markdown = markdown_path.read_text()
    assert "> line one\n> line two" in markdown
    assert "**m v1**" in markdown and "**bold** reply" in markdown
    assert "**error NOT_FOUND**" in markdown and "Servable not found" in markdown
    rows = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [row["role"] for row in rows] == ["user", "assistant", "user", "error"]
    assert rows[1]["reply_to"] == rows[0]["id"] and rows[1]["model_version"] == 1


def test_migrations_upgrade_a_version_one_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    connection.execute(
        "INSERT INTO conversations (started_at, target, model_name) VALUES (1, 't', 'm')"
    )
    connection.execute(
        "INSERT INTO messages (conversation_id, created_at, role, text, status) "
        "VALUES (1, 1, 'user', 'kept', 'pending')"
    )
    assert migrate(connection) == 1
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert migrate(connection) == SCHEMA_VERSION  # a second run changes nothing
    connection.close()
    with Transcript(path) as transcript:
        assert [m.text for m in transcript.pending_prompts()] == ["kept"]
        assert transcript.pending_prompts()[0].signature_name is None


def test_newer_schema_and_garbage_files_are_refused_clearly(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    connection = sqlite3.connect(newer)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(TranscriptError, match="newer than this deepchat-tfs understands"):
        Transcript(newer)


def test_a_damaged_database_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with Transcript(garbage) as transcript:
        assert transcript.notice is not None and "was damaged" in transcript.notice
        transcript.add_prompt("still works")
    moved = [path for path in tmp_path.iterdir() if ".damaged-" in path.name]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert moved[0].name in (transcript.notice or "")


def test_damaged_pages_behind_a_valid_header_are_caught_at_open(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with Transcript(path) as transcript:
        for index in range(400):
            transcript.add_prompt(f"prompt {index} " + "x" * 200)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(2, len(data) // page_size):  # keep the header page, scribble on the rest
        start = page * page_size
        data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    with Transcript(path) as reopened:
        assert reopened.notice is not None
        reopened.add_prompt("a new start")
        assert [message.text for message in reopened.messages()] == ["a new start"]


def test_a_cleanly_closed_transcript_reopens_without_reading_every_page(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with Transcript(path) as transcript:
        assert transcript.checked  # never seen before: every page read
        transcript.add_prompt("kept")
    record = tmp_path / "t.db-clean"
    assert record.stat().st_mode & 0o777 == 0o600
    with Transcript(path) as reopened:
        assert not reopened.checked
        assert not record.exists()  # consumed: a crash from here on means a full check
        assert [m.text for m in reopened.pending_prompts()] == ["kept"]
    with Transcript(path) as again:
        assert not again.checked


def test_a_crash_means_a_full_check_at_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Transcript(path).close()
    crash = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from core.chat.transcript import Transcript\n"
        "Transcript(Path(sys.argv[1])).add_prompt('typed before the crash')\n"
        "os._exit(1)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(path)], check=False, timeout=60)
    with Transcript(path) as reopened:
        assert reopened.checked
        assert [m.text for m in reopened.pending_prompts()] == ["typed before the crash"]


def test_a_second_console_and_any_outside_write_mean_a_full_check(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Transcript(path).close()
    first = Transcript(path)
    with Transcript(path) as second:  # the first one took the record and holds the WAL
        assert second.checked
    first.close()  # the last one out leaves a record
    assert (tmp_path / "t.db-clean").exists()
    path.write_bytes(path.read_bytes())  # the same bytes, written by something else
    with Transcript(path) as reopened:
        assert reopened.checked


def test_a_week_after_the_last_full_check_the_next_open_checks_again(tmp_path: Path) -> None:
    path, clock = tmp_path / "t.db", FakeClock()
    Transcript(path, clock=clock).close()
    with Transcript(path, clock=clock) as soon:
        assert not soon.checked
    clock.now += FULL_CHECK_EVERY_S
    with Transcript(path, clock=clock) as later:
        assert later.checked


def test_an_unreadable_clean_record_means_a_full_check(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Transcript(path).close()
    (tmp_path / "t.db-clean").write_text("{not json")
    with Transcript(path) as reopened:
        assert reopened.checked and reopened.notice is None


def test_transcript_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "transcript.db"
    with Transcript(path) as transcript:
        transcript.add_prompt("hello")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_prompt_history_is_the_latest_distinct_prompts_oldest_first(tmp_path: Path) -> None:
    import random

    chooser = random.Random(7)
    with Transcript(tmp_path / "t.db") as transcript:
        for index in range(600):
            # Many repeats, so the newest-first scan has to skip seen prompts.
            transcript.add_prompt(f"prompt {chooser.randrange(150)}")
            if index % 50 == 0:
                transcript.new_conversation("t", "m")
        for limit in (0, 1, 10, 149, 150, 200):
            by_group = [
                str(row[0])
                for row in transcript._db.execute(
                    "SELECT text FROM messages WHERE role = 'user' GROUP BY text "
                    "ORDER BY MAX(id) DESC LIMIT ?",
                    (limit,),
                )
            ][::-1]
            assert transcript.prompt_history(limit) == by_group
