"""Watching a served model: its versions' states, signatures and labels, and process memory.

The console's Model panel renders :class:`ModelState`; a worker calls :meth:`ModelMonitor.poll`
and backs off with :class:`Backoff` while the server is unreachable.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from core.client.serving import ModelMetadata, ModelSpec, ServingClient, ServingError, VersionStatus

# Labels TF Serving's docs use; probed besides the ones the console was told about.
CONVENTIONAL_LABELS = ("stable", "canary")


@dataclass(frozen=True)
class ModelState:
    """One poll of a model: versions, the chat signature's metadata, labels, what is new."""

    model_name: str
    versions: tuple[VersionStatus, ...]
    metadata: ModelMetadata | None
    labels: dict[str, int] = field(default_factory=dict)
    newly_available: tuple[int, ...] = ()
    # When the poll ran; two polls that saw the same thing are equal whenever they ran.
    checked_at: float = field(default=0.0, compare=False)

    @property
    def available_versions(self) -> tuple[int, ...]:
        """Versions in state AVAILABLE, ascending."""
        return tuple(sorted(v.version for v in self.versions if v.state == "AVAILABLE"))

    @property
    def version_numbers(self) -> list[int]:
        """Every version the poll saw, in any state, ascending."""
        return [status.version for status in self.versions]

    @property
    def label_names(self) -> list[str]:
        """The version labels the poll resolved, sorted."""
        return sorted(self.labels)

    @property
    def signature_names(self) -> list[str]:
        """The model's signature keys, sorted; empty without metadata."""
        return sorted(self.metadata.signatures) if self.metadata is not None else []


class ModelMonitor:
    """Polls GetModelStatus, and GetModelMetadata when the set of versions changes."""

    def __init__(
        self,
        client: ServingClient,
        spec: ModelSpec,
        *,
        labels: Iterable[str] = (),
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        # Short deadlines: a poll should notice a dead server quickly, not after 30 s.
        self.timeout_s = timeout_s
        self.spec = spec
        self._labels = tuple(dict.fromkeys((*labels, *CONVENTIONAL_LABELS)))
        self._clock = clock
        self._previous: ModelState | None = None

    def watch_label(self, label: str) -> None:
        """Also resolve this version label on the next metadata refresh."""
        if label not in self._labels:
            self._labels = (*self._labels, label)
            self._previous = None  # re-read metadata and labels next time

    async def poll(self) -> ModelState:
        """The model's state now; ServingError when the server cannot answer."""
        statuses = await self.client.get_model_status(self.spec.name, timeout_s=self.timeout_s)
        previous = self._previous
        versions = tuple(sorted(statuses, key=lambda status: status.version))
        available = {v.version for v in versions if v.state == "AVAILABLE"}
        before = set(previous.available_versions) if previous is not None else None
        if previous is None or before != available or previous.metadata is None:
            metadata, labels = await self._read_metadata_and_labels()
        else:
            metadata, labels = previous.metadata, previous.labels
        state = ModelState(
            model_name=self.spec.name,
            versions=versions,
            metadata=metadata,
            labels=labels,
            # The first poll only learns what exists; later polls report what appeared.
            newly_available=tuple(sorted(available - before)) if before is not None else (),
            checked_at=self._clock(),
        )
        self._previous = state
        return state

    async def _read_metadata_and_labels(self) -> tuple[ModelMetadata | None, dict[str, int]]:
        try:
            metadata: ModelMetadata | None = await self.client.get_model_metadata(
                self.spec, timeout_s=self.timeout_s
            )
        except ServingError as error:
            if error.code == "UNAVAILABLE":
                raise
            metadata = None  # e.g. no version loaded yet: the status still shows
        labels: dict[str, int] = {}
        for label in self._labels:
            try:
                labelled = await self.client.get_model_metadata(
                    ModelSpec(self.spec.name, version_label=label), timeout_s=self.timeout_s
                )
            except ServingError as error:
                if error.code == "UNAVAILABLE":
                    raise
                continue  # the label is not assigned on this server
            if labelled.model_version is not None:
                labels[label] = labelled.model_version
        return metadata, labels


class Backoff:
    """Delays between reconnect attempts: doubling from initial_s up to max_s, with jitter."""

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 10.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt after one more failure."""
        delay = min(self.max_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        # Jitter spreads reconnects of several consoles so they do not arrive in lockstep.
        return delay * (1 + self.jitter * (2 * self._rng.random() - 1))

    def reset(self) -> None:
        """Forget failures after a success."""
        self.failures = 0


def process_rss_bytes(pid: int | None = None) -> int | None:
    """Resident set size of a process (this one by default); None if it is gone."""
    try:
        process = psutil.Process(pid) if pid is not None else psutil.Process()
        return int(process.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
