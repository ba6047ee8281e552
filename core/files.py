"""Files that hold the user's data: private (0600 in 0700 directories), written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create the directory (and its parents) readable by the user alone; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    with contextlib.suppress(OSError):  # not ours to change (e.g. a shared mount): leave it
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_DIR_MODE)
    return path


def make_private(path: Path) -> None:
    """Make an existing file readable and writable by the user alone."""
    with contextlib.suppress(FileNotFoundError):
        path.chmod(PRIVATE_FILE_MODE)


def write_private(path: Path, text: str) -> Path:
    """Write text to path atomically (a reader sees the old or the new file whole), mode 0600."""
    private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, PRIVATE_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
