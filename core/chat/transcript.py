"""The chat transcript: an SQLite file in the user data dir, schema-versioned with user_version.

A prompt is written (status ``pending``) before it is sent, so nothing typed is lost if the
console or the server dies; the reply or error is written when it arrives. ``export`` writes a
conversation as Markdown and as JSONL.

A damaged file is moved aside and a new one started. Damaged pages behind a valid header fail
only when read, so an open reads every page (``PRAGMA quick_check``: ~0.1 s at 100,000 messages,
~0.9 s at a million; benchmarks/bench_transcript.py) unless the file is exactly as this module
left it: ``close`` records the closed file's size, inode and times in ``NAME-clean``, the next
open consumes that record and skips the check when they still match, no WAL is left over and the
last full check is less than a week old. A crash, a second console, or any write to the file by
anything else since (a copy, a restore, a scribble) means a full check.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from core.files import make_private, private_dir, write_private

# Each entry moves the schema from version i to i + 1; PRAGMA user_version records where a file is.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        target TEXT NOT NULL,
        model_name TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        created_at REAL NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'error')),
        text TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'ok',
        reply_to INTEGER REFERENCES messages(id),
        model_name TEXT,
        model_version INTEGER,
        latency_ms REAL,
        error_code TEXT
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
    # Version 2: which signature answered, for /signature switches and /compare.
    """
    ALTER TABLE messages ADD COLUMN signature_name TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# A file closed cleanly and untouched since still gets a full check this often.
FULL_CHECK_EVERY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class TranscriptMessage:
    """One stored message: a prompt, a reply or an error."""

    id: int
    conversation_id: int
    created_at: float
    role: str
    text: str
    status: str
    reply_to: int | None
    model_name: str | None
    model_version: int | None
    signature_name: str | None
    latency_ms: float | None
    error_code: str | None


class TranscriptError(Exception):
    """The transcript file cannot be used (newer schema, not a database, ...)."""


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it was at before."""
    found = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise TranscriptError(
            f"transcript schema version {found} is newer than this deepchat-tfs understands "
            f"({SCHEMA_VERSION}); upgrade deepchat-tfs or point it at another data dir"
        )
    for version in range(found, SCHEMA_VERSION):
        # executescript commits first; the version bump rides in the same script so a crash
        # between the two cannot leave a migrated schema marked with the old version.
        connection.executescript(
            f"BEGIN;\n{MIGRATIONS[version]}\nPRAGMA user_version = {version + 1};\nCOMMIT;"
        )
    return found


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    """What any write, truncation, replacement or copy of a file changes."""
    return {
        "size": stat.st_size,
        "inode": stat.st_ino,
        "device": stat.st_dev,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def _move_aside(path: Path, now: float) -> Path:
    """Rename a damaged database (and its WAL files) out of the way; returns its new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(moved.with_name(moved.name + suffix))
    return moved


class Transcript:
    """The chat transcript store; one conversation is current at a time."""

    def __init__(
        self,
        path: Path,
        *,
        target: str = "",
        model_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        # Set when a damaged file was moved aside: one line for the user, naming both files.
        self.notice: str | None = None
        # Whether this open read every page (PRAGMA quick_check), and when the last full check
        # of this file was (carried over clean closes).
        self.checked = False
        self._verified_at: float | None = None
        self._closed = False
        private_dir(path.parent)
        try:
            self._db = self._open(target, model_name)
        except sqlite3.DatabaseError as error:
            moved = _move_aside(path, self._clock())
            self.notice = (
                f"transcript {path} was damaged ({error}); moved it to {moved.name} "
                "and started a new one"
            )
            try:
                self._db = self._open(target, model_name)
            except sqlite3.DatabaseError as again:
                raise TranscriptError(
                    f"transcript {path}: cannot open it as an SQLite database ({again})"
                ) from again

    @property
    def _clean_record(self) -> Path:
        return self.path.with_name(self.path.name + "-clean")

    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _take_clean_record(self) -> float | None:
        """Consume the record of the last clean close; its last full check if the file is as
        that close left it (else None: check it now)."""
        record = self._clean_record
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
            recorded_at = record.stat().st_ctime_ns
        except (OSError, ValueError):
            return None
        finally:
            with contextlib.suppress(OSError):
                record.unlink()  # a crash from here on leaves no record: the next open checks
        try:
            current = self.path.stat()
        except OSError:
            return None
        verified_at = recorded.get("verified_at") if isinstance(recorded, dict) else None
        if (
            not isinstance(verified_at, (int, float))
            or recorded.get("file") != _fingerprint(current)
            # A write in the very tick the record was taken would not change the file's times.
            or current.st_ctime_ns >= recorded_at
            or self._wal.exists()
            or not 0 <= self._clock() - verified_at < FULL_CHECK_EVERY_S
        ):
            return None
        return float(verified_at)

    def _record_clean_close(self) -> None:
        """Record the closed file's fingerprint, unless a WAL is left (another connection)."""
        if self._verified_at is None or self._wal.exists():
            return
        with contextlib.suppress(OSError):
            for _ in range(20):
                current = self.path.stat()
                text = json.dumps({"file": _fingerprint(current), "verified_at": self._verified_at})
                write_private(self._clean_record, text)
                # Trusted only when taken strictly after the file's last change (see above).
                if self._clean_record.stat().st_ctime_ns > current.st_ctime_ns:
                    return
                time.sleep(0.002)

    def _open(self, target: str, model_name: str) -> sqlite3.Connection:
        # Before anything here touches the file (make_private changes its ctime).
        verified_at = self._take_clean_record()
        connection = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            make_private(self.path)
            connection.execute("PRAGMA journal_mode = WAL")
            self.checked = verified_at is None
            if verified_at is None:
                # Damaged pages behind a valid header only fail when read: read every page now.
                problem = connection.execute("PRAGMA quick_check").fetchone()[0]
                if problem != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {problem}")
                verified_at = self._clock()
            self._verified_at = verified_at
            migrate(connection)
            self._db = connection
            self.new_conversation(target, model_name)
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Close the database file, recording that it was closed cleanly."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        self._record_clean_close()

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def new_conversation(self, target: str, model_name: str) -> int:
        """Start a new conversation and make it current; returns its id."""
        cursor = self._db.execute(
            "INSERT INTO conversations (started_at, target, model_name) VALUES (?, ?, ?)",
            (self._clock(), target, model_name),
        )
        self.conversation_id = int(cursor.lastrowid or 0)
        return self.conversation_id

    def add_prompt(self, text: str, *, model_name: str | None = None) -> int:
        """Store a prompt as pending before it is sent; returns its message id."""
        return self._insert("user", text, status="pending", model_name=model_name)

    def add_reply(
        self,
        prompt_id: int,
        text: str,
        *,
        model_name: str | None,
        model_version: int | None,
        signature_name: str | None = None,
        latency_ms: float | None = None,
    ) -> int:
        """Store a reply to a prompt and mark the prompt answered; returns the reply's id."""
        self._set_status(prompt_id, "answered")
        return self._insert(
            "assistant",
            text,
            reply_to=prompt_id,
            model_name=model_name,
            model_version=model_version,
            signature_name=signature_name,
            latency_ms=latency_ms,
        )

    def add_error(
        self, prompt_id: int, code: str, message: str, *, model_name: str | None = None
    ) -> int:
        """Store the error a prompt got and mark the prompt failed; returns the error's id."""
        self._set_status(prompt_id, "failed")
        return self._insert(
            "error",
            message,
            status="error",
            reply_to=prompt_id,
            model_name=model_name,
            error_code=code,
        )

    def messages(self, conversation_id: int | None = None) -> list[TranscriptMessage]:
        """Messages of a conversation (the current one by default), oldest first."""
        wanted = self.conversation_id if conversation_id is None else conversation_id
        return list(self._select("WHERE conversation_id = ? ORDER BY id", (wanted,)))

    def pending_prompts(self) -> list[TranscriptMessage]:
        """Prompts of any conversation that were stored but never answered nor failed."""
        return list(self._select("WHERE role = 'user' AND status = 'pending' ORDER BY id", ()))

    def prompt_history(self, limit: int = 200) -> list[str]:
        """The most recent distinct prompts across conversations, oldest first (input history)."""
        # Newest first, a prompt's first sighting is its latest use: stop at `limit` distinct,
        # so opening reads the end of the table, not every prompt ever typed.
        recent: dict[str, None] = {}
        if limit > 0:
            rows = self._db.execute(
                "SELECT text FROM messages WHERE role = 'user' ORDER BY id DESC"
            )
            for (text,) in rows:
                recent.setdefault(str(text))
                if len(recent) >= limit:
                    break
        return list(reversed(recent))

    def export(self, directory: Path, conversation_id: int | None = None) -> tuple[Path, Path]:
        """Write a conversation as Markdown and JSONL into directory; returns both paths."""
        wanted = self.conversation_id if conversation_id is None else conversation_id
        messages = self.messages(wanted)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._clock()))
        stem = directory / f"deepchat-{stamp}-conversation-{wanted}"
        jsonl = "".join(
            json.dumps(asdict(message), ensure_ascii=False) + "\n" for message in messages
        )
        return (
            write_private(stem.with_suffix(".md"), render_markdown(messages)),
            write_private(stem.with_suffix(".jsonl"), jsonl),
        )

    def _insert(self, role: str, text: str, *, status: str = "ok", **columns: object) -> int:
        names = ["conversation_id", "created_at", "role", "text", "status", *columns]
        values = [self.conversation_id, self._clock(), role, text, status, *columns.values()]
        placeholders = ", ".join("?" for _ in names)
        cursor = self._db.execute(
            f"INSERT INTO messages ({', '.join(names)}) VALUES ({placeholders})", values
        )
        return int(cursor.lastrowid or 0)

    def _set_status(self, message_id: int, status: str) -> None:
        self._db.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    def _select(self, where: str, parameters: tuple[object, ...]) -> Iterator[TranscriptMessage]:
        rows = self._db.execute(
            "SELECT id, conversation_id, created_at, role, text, status, reply_to, model_name, "
            f"model_version, signature_name, latency_ms, error_code FROM messages {where}",
            parameters,
        )
        for row in rows:
            yield TranscriptMessage(*row)


def render_markdown(messages: list[TranscriptMessage]) -> str:
    """A conversation as Markdown: prompts as quotes, replies with version and latency."""
    lines = ["# deepchat-tfs conversation", ""]
    for message in messages:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(message.created_at))
        if message.role == "user":
            lines.append(f"**you** · {when}")
            lines.append("")
            lines.extend(f"> {line}" for line in message.text.splitlines() or [""])
        elif message.role == "assistant":
            served = f"v{message.model_version}" if message.model_version is not None else "v?"
            latency = f" · {message.latency_ms:.1f} ms" if message.latency_ms is not None else ""
            lines.append(f"**{message.model_name or 'model'} {served}**{latency} · {when}")
            lines.append("")
            lines.append(message.text)
        else:
            lines.append(f"**error {message.error_code}** · {when}")
            lines.append("")
            lines.append(message.text)
        lines.append("")
    return "\n".join(lines)
