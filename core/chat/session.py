"""A chat session with served models: the embedded server if configured, one shared client,
micro-batchers per model spec, and chat adapters fitted to each signature.

Plain asyncio, no UI: a console's workers await these methods and show what they return. One
ServingClient and one StatsCollector serve chat, live panels and /compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from core.chat.adapters import (
    AdapterMismatch,
    AdapterSettings,
    ChatAdapter,
    ChatReply,
    make_adapter,
    sanitize_text,
)
from core.client.batcher import MicroBatcher
from core.client.errors import call_status
from core.client.scrape import metrics_url
from core.client.serving import (
    ClientSettings,
    ModelSpec,
    PredictResult,
    ServingClient,
    ServingError,
)
from core.config.schema import Config, TensorflowServingConfig
from core.embedded.launcher import EmbeddedServer, monitoring_config_text
from core.metrics.stats import StatsCollector


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


def build_embedded_server(config: Config, data_dir: Path) -> EmbeddedServer:
    """The embedded server as the config describes it, logging and configured under data_dir."""
    embedded = config.embedded
    data_dir.mkdir(parents=True, exist_ok=True)
    monitoring_path = data_dir / "monitoring.config"
    monitoring_path.write_text(
        monitoring_config_text(config.model_serving.tensorflow_serving.metrics_path)
    )
    return EmbeddedServer(
        model_name=embedded.model_name,
        model_base_path=embedded.model_base_path,
        enable_batching=embedded.enable_batching,
        all_versions=embedded.all_versions,
        extra_flags=(f"--monitoring_config_file={monitoring_path}",),
        log_path=data_dir / "server.log",
        batching_parameters={
            "max_batch_size": embedded.max_batch_size,
            "batch_timeout_micros": embedded.batch_timeout_micros,
            "num_batch_threads": embedded.num_batch_threads,
        },
    )


class ChatSession:
    """Starts the embedded server if asked, opens the client, sends chat through batchers."""

    def __init__(
        self,
        config: Config,
        stats: StatsCollector,
        *,
        targets: Sequence[str] = (),
        rest_url: str | None = None,
        embedded: bool = False,
        data_dir: Path | None = None,
        connect: bool = True,
    ) -> None:
        if embedded and data_dir is None:
            raise ValueError("ChatSession: an embedded server needs a data_dir, got None")
        self.config = config
        self.stats = stats
        self.targets: tuple[str, ...] = tuple(targets)
        self.rest_url = rest_url
        self.embedded = embedded
        self.data_dir = data_dir
        # Whether start() will be called: prompts sent before it finishes wait for it.
        self.connect = connect
        self.server: EmbeddedServer | None = None
        self.client: ServingClient | None = None
        self.start_error: str | None = None
        self._batchers: dict[ModelSpec, MicroBatcher] = {}
        self._adapters: dict[tuple[ModelSpec, AdapterSettings], ChatAdapter] = {}
        self._started = asyncio.Event()
        # Kept as a psutil.Process so a later kill cannot hit a recycled pid.
        self._server_process: psutil.Process | None = None

    @property
    def server_pid(self) -> int | None:
        """The embedded server's process id, None when none runs."""
        return self._server_process.pid if self._server_process is not None else None

    @property
    def metrics_url(self) -> str | None:
        """Where the server's Prometheus metrics are, None without a REST URL."""
        if not self.rest_url:
            return None
        return metrics_url(self.rest_url, self.config.model_serving.tensorflow_serving.metrics_path)

    @property
    def _serving(self) -> TensorflowServingConfig:
        return self.config.model_serving.tensorflow_serving

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
        if self.embedded:
            assert self.data_dir is not None  # checked in __init__
            self.server = build_embedded_server(self.config, self.data_dir)
            await self.server.start()
            if self.server.pid is not None:
                self._server_process = psutil.Process(self.server.pid)
            self.targets = (self.server.grpc_target,)
            self.rest_url = self.server.rest_url
        settings = ClientSettings.from_config(self.config, targets=self.targets)
        # Stats go to the batcher when chat is batched (per prompt, queueing included), else to
        # the client; giving both would count every prompt twice.
        self.client = ServingClient(
            settings, stats=None if self._serving.batch.enabled else self.stats
        )

    def _require_client(self) -> ServingClient:
        if self.client is None:
            detail = self.start_error or "the server is still starting"
            raise ServingError("UNAVAILABLE", f"not connected: {detail}")
        return self.client

    async def wait_started(self, timeout_s: float) -> None:
        """Wait until start() finished (either way), at most timeout_s."""
        if self.connect:
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
            batch = self._serving.batch
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
            await self.wait_started(self._serving.timeout)
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
        except Exception as error:
            status = call_status(error)
            if status is None:
                raise
            return failure(spec, *status)
        return ChatOutcome(
            spec=spec,
            reply=reply,
            served_version=result.model_version,
            latency_ms=latency_s * 1000,
        )

    async def _predict(self, spec: ModelSpec, inputs: dict[str, Any]) -> PredictResult:
        if self._serving.batch.enabled:
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
