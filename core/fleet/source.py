"""The one interface a fleet metrics source offers, and the sample it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.fleet.replicas import Replica
from core.fleet.snapshot import ServerFigures

# TF Serving's exported names (`/` became `:`), and TF Serving's units: latencies in microseconds.
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
INPUT_BATCH_SIZE = ":tensorflow:serving:batching_session:input_batch_size"
PADDING_SIZE = ":tensorflow:serving:batching_session:padding_size"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"


@dataclass(frozen=True)
class SourceSample:
    """A source's figures for the fleet and for each replica (by address)."""

    fleet: ServerFigures
    replicas: Mapping[str, ServerFigures] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


class MetricsSource(Protocol):
    """Where server-side figures come from: each replica's endpoint, or a Prometheus server."""

    @property
    def description(self) -> str:
        """What the figures come from, for a panel's caption ('scrape', 'prometheus URL')."""
        ...

    async def sample(
        self, replicas: Sequence[Replica], model_name: str | None, window_s: float
    ) -> SourceSample:
        """Figures over the last window_s seconds; never raises for an unreachable replica."""
        ...

    async def close(self) -> None:
        """Release HTTP sessions."""
        ...
