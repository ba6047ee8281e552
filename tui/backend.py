"""The console's link to serving: embedded server, shared client, micro-batchers, chat adapters.

Plain asyncio, no widgets: the app's workers await these methods and post what they get as
messages. One ServingClient and one StatsCollector serve chat, panels and /compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from core.chat.adapters import (
    AdapterMismatch,
    AdapterSettings,
    ChatAdapter,
    ChatReply,
    make_adapter,
    sanitize_text,
)
from core.client.batcher import BatcherFull, MicroBatcher
from core.client.serving import (
    ClientSettings,
    ModelSpec,
    PredictResult,
    ServingClient,
    ServingError,
)
from core.metrics.stats import StatsCollector
from tui.options import ConsoleOptions

if TYPE_CHECKING:
    from core.embedded.launcher import EmbeddedServer


@dataclass(frozen=True)
class ChatOutcome:
    """What one prompt got from one model spec: a reply or an error (code and message)."""

    spec: ModelSpec
    reply: ChatReply | None = None
    served_version: int | None = None
    latency_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        """Whether a reply came back."""
        return self.reply is not None


def failure(spec: ModelSpec, code: str, message: str) -> ChatOutcome:
    """An outcome for a failed prompt; the message is sanitized (servers echo user input)."""
    return ChatOutcome(spec=spec, error_code=code, error_message=sanitize_text(message))


class ConsoleBackend:
    """Starts the embedded server if asked, opens the client, sends chat through batchers."""

    def __init__(self, options: ConsoleOptions, stats: StatsCollector) -> None:
        self.options = options
        self.stats = stats
        self.server: EmbeddedServer | None = None
        self.client: ServingClient | None = None
        self.targets: tuple[str, ...] = options.targets
        self.rest_url: str | None = options.rest_url
        self._batchers: dict[ModelSpec, MicroBatcher] = {}
        self._adapters: dict[tuple[ModelSpec, AdapterSettings], ChatAdapter] = {}
        self.start_error: str | None = None
        self._started = asyncio.Event()
        # Kept as a psutil.Process so a later kill cannot hit a recycled pid.
        self._server_process: psutil.Process | None = None

    @property
    def server_pid(self) -> int | None:
        """The embedded server's process id, None when none runs."""
        return self._server_process.pid if self._server_process is not None else None

    @property
    def server_log(self) -> Path | None:
        """The embedded server's log file."""
        return self.server.log_path if self.server is not None else None

    async def start(self) -> None:
        """Start the embedded server (when configured) and open the shared client."""
        try:
            await self._start()
        except BaseException as error:
            self.start_error = str(error) or type(error).__name__
            raise
        finally:
            self._started.set()

    async def _start(self) -> None:
        config = self.options.config
        if self.options.embedded:
            from core.embedded.launcher import (
                EmbeddedServer,  # the child process; never TensorFlow here
            )

            embedded = config.embedded
            self.options.data_dir.mkdir(parents=True, exist_ok=True)
            self.server = EmbeddedServer(
                model_name=embedded.model_name,
                model_base_path=embedded.model_base_path,
                enable_batching=embedded.enable_batching,
                all_versions=embedded.all_versions,
                extra_flags=(f"--monitoring_config_file={self._write_monitoring_config()}",),
                log_path=self.options.data_dir / "server.log",
                batching_parameters={
                    "max_batch_size": embedded.max_batch_size,
                    "batch_timeout_micros": embedded.batch_timeout_micros,
                    "num_batch_threads": embedded.num_batch_threads,
                },
            )
            await self.server.start()
            if self.server.pid is not None:
                self._server_process = psutil.Process(self.server.pid)
            self.targets = (self.server.grpc_target,)
            self.rest_url = self.server.rest_url
        settings = ClientSettings.from_config(config, targets=self.targets)
        # Stats go to the batcher when chat is batched (per prompt, queueing included), else to
        # the client; giving both would count every prompt twice.
        batched = config.model_serving.tensorflow_serving.batch.enabled
        self.client = ServingClient(settings, stats=None if batched else self.stats)

    def _write_monitoring_config(self) -> Path:
        """TF Serving's monitoring config enabling Prometheus at the configured metrics path."""
        path = self.options.data_dir / "monitoring.config"
        metrics_path = self.options.config.model_serving.tensorflow_serving.metrics_path
        # JSON string escaping is valid protobuf text-format escaping for a path.
        path.write_text(f"prometheus_config {{ enable: true path: {json.dumps(metrics_path)} }}\n")
        return path

    def _require_client(self) -> ServingClient:
        if self.client is None:
            detail = self.start_error or "the server is still starting"
            raise ServingError("UNAVAILABLE", f"not connected: {detail}")
        return self.client

    async def wait_started(self, timeout_s: float) -> None:
        """Wait until start() finished (either way), at most timeout_s."""
        if self.options.connect:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), timeout_s)

    async def adapter(self, spec: ModelSpec, settings: AdapterSettings) -> ChatAdapter:
        """The chat adapter for a spec, fitted to its signature (read once, then cached)."""
        key = (spec, settings)
        if key not in self._adapters:
            metadata = await self._require_client().get_model_metadata(spec)
            signature = metadata.signatures.get(spec.signature_name)
            if signature is None:
                known = ", ".join(sorted(metadata.signatures)) or "none"
                raise ServingError(
                    "FAILED_PRECONDITION",
                    f'Serving signature key "{spec.signature_name}" not found; the model has: '
                    f"{known} (set models[].signature_name or use /signature)",
                )
            self._adapters[key] = make_adapter(settings, signature)
        return self._adapters[key]

    def forget_adapters(self) -> None:
        """Re-read signatures next time (a new version may have a different one)."""
        self._adapters.clear()

    def _batcher(self, spec: ModelSpec) -> MicroBatcher:
        if spec not in self._batchers:
            batch = self.options.config.model_serving.tensorflow_serving.batch
            self._batchers[spec] = MicroBatcher(
                functools.partial(self._require_client().predict, spec),
                max_batch_size=batch.size,
                batch_timeout_s=batch.timeout_ms / 1000,
                max_queue=batch.max_queue,
                stats=self.stats,
            )
        return self._batchers[spec]

    async def ask(self, prompt: str, spec: ModelSpec, settings: AdapterSettings) -> ChatOutcome:
        """Send one prompt and decode the reply; every failure becomes an error outcome."""
        try:
            # A prompt typed while the embedded server loads waits for it instead of failing.
            await self.wait_started(self.options.config.model_serving.tensorflow_serving.timeout)
            try:
                adapter = await self.adapter(spec, settings)
            except AdapterMismatch as error:
                return failure(spec, "ADAPTER_MISMATCH", str(error))
            except ValueError as error:  # an unreadable labels or tokenizer file
                return failure(spec, "ADAPTER_CONFIG", str(error))
            inputs = adapter.encode(prompt)
            # The latency shown is the reader's wait for this prompt: batching queue included.
            started = time.perf_counter()
            result = await self._predict(spec, inputs)
            latency_s = time.perf_counter() - started
            reply = adapter.decode(result.outputs)
        except ServingError as error:
            return failure(spec, error.code, error.message)
        except BatcherFull as error:
            return failure(spec, "RESOURCE_EXHAUSTED", str(error) or "the chat queue is full")
        except ValueError as error:
            return failure(spec, "INVALID_ARGUMENT", str(error))
        except asyncio.TimeoutError:
            return failure(spec, "DEADLINE_EXCEEDED", "no answer before the deadline")
        return ChatOutcome(
            spec=spec,
            reply=reply,
            served_version=result.model_version,
            latency_ms=latency_s * 1000,
        )

    async def _predict(self, spec: ModelSpec, inputs: dict[str, Any]) -> PredictResult:
        if self.options.config.model_serving.tensorflow_serving.batch.enabled:
            return await self._batcher(spec).submit(inputs)
        return await self._require_client().predict(spec, inputs)

    async def compare(
        self, prompt: str, specs: tuple[ModelSpec, ModelSpec], settings: AdapterSettings
    ) -> tuple[ChatOutcome, ChatOutcome]:
        """The same prompt to two specs at once."""
        left, right = await asyncio.gather(
            self.ask(prompt, specs[0], settings), self.ask(prompt, specs[1], settings)
        )
        return left, right

    async def close(self) -> None:
        """Close batchers and the client, then stop the embedded server."""
        batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            await batcher.close()
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await self.server.stop()
            self.server = None
            self._server_process = None

    def kill_server_now(self) -> None:
        """Stop the embedded server without the event loop (after a crash); safe to repeat."""
        process, self._server_process = self._server_process, None
        if process is None:
            return
        try:
            process.terminate()
            process.wait(timeout=5)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.Error:
            pass  # already gone
