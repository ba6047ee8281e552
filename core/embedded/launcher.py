"""Starts and stops the embedded model server (`deepchat-tfs serve`) as a child process.

The child runs on free loopback ports, writes its log (TensorFlow's included) to a file, prints
one ready line on stdout, and exits by itself if this process dies. Nothing here imports the
server or TensorFlow: the child is reached by command line only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psutil

from core.embedded.protocol import parse_ready_line
from core.identity import (
    DEMO_MODEL_NAME,
    DEMO_MODEL_REVISION,
    DEMO_MODEL_REVISION_FILE,
    demo_model_dir,
    log_dir,
)

LOG_TAIL_LINES = 30
_MAX_LOG_BYTES = 5 * 2**20
_STOP_GRACE_S = 10.0


# The files a launcher writes next to the server log while its server runs, by kind, named
# <kind>-<launcher pid>-<gRPC port>.<extension>.
_RUN_FILE_EXTENSIONS = {"batching": "txt", "models": "config"}


def _run_file(directory: Path, kind: str, grpc_port: int) -> Path:
    return directory / f"{kind}-{os.getpid()}-{grpc_port}.{_RUN_FILE_EXTENSIONS[kind]}"


def remove_orphaned_run_files(directory: Path) -> None:
    """Remove run files left by launchers that died without stopping their server (a killed
    console): those whose process id is not running. Other consoles' files stay."""
    for kind, extension in _RUN_FILE_EXTENSIONS.items():
        for path in directory.glob(f"{kind}-*-*.{extension}"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                path.unlink(missing_ok=True)


class EmbeddedServerError(RuntimeError):
    """The embedded server could not start (or export its model); carries the log's last lines."""

    def __init__(self, message: str, log_tail: str = "", log_path: Path | None = None) -> None:
        text = message
        if log_tail:
            text += f"\n--- last lines of {log_path or 'the server log'} ---\n{log_tail}"
        super().__init__(text)
        self.log_tail = log_tail
        self.log_path = log_path


def default_log_path() -> Path:
    """Where the embedded server writes its log unless told otherwise."""
    return log_dir() / "embedded-server.log"


def default_model_base_path(model_name: str = DEMO_MODEL_NAME) -> Path:
    """Where the demo model is exported on first run: the user data dir / models / NAME."""
    return demo_model_dir(model_name)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _has_versions(base_path: Path) -> bool:
    return base_path.is_dir() and any(
        entry.name.isdigit() and entry.is_dir() for entry in base_path.iterdir()
    )


def _current_demo_export(base_path: Path) -> bool:
    """Whether base_path holds the demo model as this release builds it."""
    try:
        revision = (base_path / DEMO_MODEL_REVISION_FILE).read_text().strip()
    except OSError:
        return False
    return _has_versions(base_path) and revision == str(DEMO_MODEL_REVISION)


def tail_of(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            size = log_file.tell()
            log_file.seek(max(0, size - 64 * 1024))
            text = log_file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def batching_parameters_text(parameters: Mapping[str, int]) -> str:
    """TF Serving's text format for BatchingParameters, one `NAME { value: N }` line per entry."""
    return "".join(f"{key} {{ value: {int(value)} }}\n" for key, value in parameters.items())


def monitoring_config_text(metrics_path: str) -> str:
    """TF Serving's text-format MonitoringConfig enabling Prometheus at metrics_path."""
    # JSON string escaping is valid protobuf text-format escaping for a path.
    return f"prometheus_config {{ enable: true path: {json.dumps(metrics_path)} }}\n"


class EmbeddedServer:
    """The embedded TF-Serving-compatible server as a child process (async and sync APIs)."""

    def __init__(
        self,
        model_name: str = DEMO_MODEL_NAME,
        model_base_path: Path | None = None,
        *,
        enable_batching: bool = True,
        extra_flags: Sequence[str] = (),
        log_path: Path | None = None,
        batching_parameters: Mapping[str, int] | None = None,
        all_versions: bool = False,
    ) -> None:
        self.model_name = model_name
        # Load every version (TF Serving's `model_version_policy { all {} }`) instead of the
        # latest only, so /version and /compare reach the demo model's v1 and v2.
        self.all_versions = all_versions
        self.model_base_path = Path(model_base_path) if model_base_path is not None else None
        self.enable_batching = enable_batching
        self.extra_flags = tuple(extra_flags)
        self.log_path = Path(log_path) if log_path is not None else default_log_path()
        self.batching_parameters = dict(batching_parameters or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._parameters_file: Path | None = None
        self._model_config_file: Path | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._grpc_target = ""
        self._rest_url = ""
        self._state = "starting"

    # ---- what callers read -------------------------------------------------------------------

    @property
    def grpc_target(self) -> str:
        """The gRPC address, "127.0.0.1:PORT" (set once ready)."""
        return self._grpc_target

    @property
    def rest_url(self) -> str:
        """The REST base URL, "http://127.0.0.1:PORT" ("" when the REST API is off)."""
        return self._rest_url

    @property
    def pid(self) -> int | None:
        """The child's process id, None before start."""
        return self._process.pid if self._process is not None else None

    @property
    def state(self) -> str:
        """ "starting", "ready" or "exited" (also when the child died by itself)."""
        if self._process is not None and self._process.poll() is not None:
            self._state = "exited"
        return self._state

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it has exited."""
        return self._process.poll() if self._process is not None else None

    # ---- command line ------------------------------------------------------------------------

    def _uses_config_file(self) -> bool:
        return any(flag.startswith("--model_config_file") for flag in self.extra_flags)

    def _resolved_base_path(self) -> Path:
        return self.model_base_path or default_model_base_path(self.model_name)

    def model_config_text(self) -> str:
        """A text-format ModelServerConfig that serves every version of the model."""
        base_path = str(self._resolved_base_path().resolve())
        return (
            "model_config_list {\n"
            "  config {\n"
            f"    name: {json.dumps(self.model_name, ensure_ascii=False)}\n"
            f"    base_path: {json.dumps(base_path, ensure_ascii=False)}\n"
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { all {} }\n"
            "  }\n"
            "}\n"
        )

    def command(
        self,
        grpc_port: int,
        rest_port: int,
        batching_parameters_file: Path | None = None,
        model_config_file: Path | None = None,
    ) -> list[str]:
        """The child's command line for the given ports."""
        command = [
            sys.executable,
            "-m",
            "cli",
            "serve",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--host=127.0.0.1",
            f"--parent_pid={os.getpid()}",
            f"--enable_batching={'true' if self.enable_batching else 'false'}",
        ]
        if model_config_file is not None:
            command.append(f"--model_config_file={model_config_file}")
        elif not self._uses_config_file():
            command += [
                f"--model_name={self.model_name}",
                f"--model_base_path={self._resolved_base_path()}",
            ]
        if batching_parameters_file is not None:
            command.append(f"--batching_parameters_file={batching_parameters_file}")
        return command + list(self.extra_flags)

    def _export_command(self, target: Path) -> list[str]:
        return [sys.executable, "-m", "cli", "export-demo-model", str(target)]

    # ---- synchronous API ---------------------------------------------------------------------

    def _export_demo_model_sync(self) -> None:
        base_path = self._resolved_base_path()
        if self.model_base_path is not None or self._uses_config_file():
            return
        if _current_demo_export(base_path):
            return
        staging = base_path.with_name(f".{base_path.name}.export-{os.getpid()}")
        base_path.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self._export_command(staging),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0 or not _has_versions(staging):
            output = result.stdout.decode("utf-8", "replace")
            raise EmbeddedServerError(
                f"exporting the demo model to {base_path} failed (exit {result.returncode})",
                "\n".join(output.splitlines()[-LOG_TAIL_LINES:]),
            )
        # Export to a staging directory, then rename: a half-written model is never served.
        # An export of an older revision is moved aside first, then removed.
        if base_path.exists():
            stale = base_path.with_name(f".{base_path.name}.stale-{os.getpid()}")
            with contextlib.suppress(OSError):
                os.replace(base_path, stale)
                shutil.rmtree(stale, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.replace(staging, base_path)
        if not _has_versions(base_path):
            raise EmbeddedServerError(f"could not move the exported demo model to {base_path}")

    def _spawn(self) -> tuple[int, int]:
        grpc_port = free_loopback_port()
        rest_port = free_loopback_port()
        while rest_port == grpc_port:
            rest_port = free_loopback_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_run_files(self.log_path.parent)
        if self.log_path.exists() and self.log_path.stat().st_size > _MAX_LOG_BYTES:
            self.log_path.unlink()
        if self._parameters_file is not None:
            self._parameters_file.unlink(missing_ok=True)
        parameters_file = None
        if self.enable_batching and self.batching_parameters:
            # Next to the log while the server runs (removed by stop): there to look at when tuning.
            parameters_file = _run_file(self.log_path.parent, "batching", grpc_port)
            parameters_file.write_text(batching_parameters_text(self.batching_parameters))
            self._parameters_file = parameters_file
        if self._model_config_file is not None:
            self._model_config_file.unlink(missing_ok=True)
            self._model_config_file = None
        if self.all_versions and not self._uses_config_file():
            self._model_config_file = _run_file(self.log_path.parent, "models", grpc_port)
            self._model_config_file.write_text(self.model_config_text())
        with self.log_path.open("ab") as log_file:
            log_file.write(
                f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting the server\n".encode()
            )
            log_file.flush()
            environment = dict(os.environ, PYTHONUNBUFFERED="1")
            environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
            self._process = subprocess.Popen(
                self.command(grpc_port, rest_port, parameters_file, self._model_config_file),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=environment,
                # Its own session: a Ctrl-C meant for the console does not hit the server first.
                start_new_session=True,
            )
        self._state = "starting"
        self._lines = queue.Queue()
        threading.Thread(
            target=self._read_stdout, args=(self._process, self._lines), daemon=True
        ).start()
        return grpc_port, rest_port

    @staticmethod
    def _read_stdout(process: subprocess.Popen[bytes], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        lines.put(None)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise EmbeddedServerError(
                    f"the embedded server did not get ready within {timeout_s:.0f} s",
                    tail_of(self.log_path),
                    self.log_path,
                )
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                assert self._process is not None
                code = self._process.wait()
                self._state = "exited"
                raise EmbeddedServerError(
                    f"the embedded server exited during start-up (exit code {code})",
                    tail_of(self.log_path),
                    self.log_path,
                )
            ready = parse_ready_line(line)
            if ready is not None:
                self._grpc_target = ready.grpc_target
                self._rest_url = ready.rest_url
                self._state = "ready"
                return

    def _start_attempt_failed_on_port(self, error: EmbeddedServerError) -> bool:
        return "address already in use" in str(error).lower() or "cannot listen" in str(error)

    def start_sync(self, timeout_s: float = 120) -> None:
        """Export the demo model if needed, start the child and wait for its ready line."""
        if self._process is not None and self.state != "exited":
            raise RuntimeError("the embedded server is already started")
        self._export_demo_model_sync()
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(timeout_s)
                return
            except EmbeddedServerError as error:
                # Another process may have taken a probed port before the child bound it.
                if attempt == 2 or not self._start_attempt_failed_on_port(error):
                    raise

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
        self._state = "exited"

    def stop_sync(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Ask the child to stop (SIGTERM), kill it after grace_s; safe to call twice."""
        process = self._process
        if process is None:
            self._state = "exited"
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._kill()
        if process.stdout is not None:
            process.stdout.close()
        for run_file in (self._parameters_file, self._model_config_file):
            if run_file is not None:
                run_file.unlink(missing_ok=True)
        self._parameters_file = self._model_config_file = None
        self._state = "exited"

    def __enter__(self) -> EmbeddedServer:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_sync()

    # ---- asynchronous API --------------------------------------------------------------------

    async def start(self, timeout_s: float = 120) -> None:
        """Export the demo model if needed, start the child and wait until it serves."""
        if self._process is not None and self.state != "exited":
            raise RuntimeError("the embedded server is already started")
        await asyncio.to_thread(self._export_demo_model_sync)
        for attempt in range(3):
            # Spawned from this (the event loop's) thread: Linux's parent-death signal follows
            # the thread that forked, so it must be one that lives as long as the console.
            self._spawn()
            try:
                await asyncio.to_thread(self._wait_ready, timeout_s)
                return
            except asyncio.CancelledError:
                self._kill()
                raise
            except EmbeddedServerError as error:
                if attempt == 2 or not self._start_attempt_failed_on_port(error):
                    raise

    async def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after a grace period)."""
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
