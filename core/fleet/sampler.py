"""FleetSampler: one sample of the fleet = replicas resolved, each replica's model status polled,
the metrics source read, all concurrently with short deadlines, into one FleetSnapshot.

A UI calls `sample()` from a worker on a timer; nothing here blocks the event loop for long (the
calls are async and each has a deadline of about a second, so a dead replica shows within ~1 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import psutil

from core.client.channel import ClientSettings, TlsSettings
from core.client.monitor import process_rss_bytes
from core.client.serving import ServingClient, ServingError
from core.fleet.prometheus import PrometheusError, PrometheusSource
from core.fleet.replicas import FleetTargets, Replica, ReplicaSet
from core.fleet.snapshot import FleetSnapshot, ReplicaRow, ServerFigures
from core.fleet.source import MetricsSource

# Codes that mean the server did not answer; any other answer (even NOT_FOUND) means it is up.
_DOWN_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}


class FleetSampler:
    """Samples a fleet of model servers into FleetSnapshots (call `sample`, then `close`)."""

    def __init__(
        self,
        targets: FleetTargets,
        source: MetricsSource,
        *,
        model_name: str | None = None,
        window_s: float = 5.0,
        status_timeout_s: float = 1.0,
        resolve_interval_s: float = 10.0,
        tls: TlsSettings | None = None,
        bearer_token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.model_name = model_name
        self.window_s = window_s
        self._replica_set = ReplicaSet(targets)
        self._status_timeout_s = status_timeout_s
        self._resolve_interval_s = resolve_interval_s
        self._tls = tls
        self._bearer_token = bearer_token
        self._clock = clock
        self._resolved_at: float | None = None
        self._clients: dict[str, ServingClient] = {}
        self._pids: dict[str, int | None] = {}
        self._pids_scanned_at: float | None = None

    @property
    def replicas(self) -> tuple[Replica, ...]:
        """The replicas as last resolved."""
        return self._replica_set.replicas

    @property
    def discovers(self) -> bool:
        """Whether replicas come from Prometheus (no targets given): nothing reaches the pods."""
        return not self._replica_set.config.targets and isinstance(self.source, PrometheusSource)

    async def sample(self) -> FleetSnapshot:
        """Poll every replica and the metrics source once; the figures cover the last window."""
        if self.discovers:
            return await self._sample_discovered()
        now = self._clock()
        if self._resolved_at is None or now - self._resolved_at >= self._resolve_interval_s:
            await self._replica_set.refresh()
            self._resolved_at = now
            await self._drop_clients_of_gone_replicas()
        replicas = self._replica_set.replicas
        await self._find_local_processes(replicas, now)
        statuses, metrics = await asyncio.gather(
            asyncio.gather(*(self._poll_status(replica) for replica in replicas)),
            self.source.sample(replicas, self.model_name, self.window_s),
        )
        rows = []
        for replica, (up, versions, error) in zip(replicas, statuses, strict=True):
            figures = metrics.replicas.get(replica.address, ServerFigures())
            rows.append(
                ReplicaRow(
                    address=replica.address,
                    target=replica.target,
                    up=up,
                    figures=figures,
                    versions=versions,
                    error=error,
                    rss_bytes=self._rss(replica) if up and replica.is_local else None,
                )
            )
        problems = [
            *(f"{target}: {reason}" for target, reason in self._replica_set.resolve_errors.items()),
            *metrics.problems,
        ]
        return FleetSnapshot(
            taken_at=time.time(),
            source=self.source.description,
            model_name=self.model_name,
            fleet=_with_fleet_max(metrics.fleet, rows),
            replicas=tuple(rows),
            problems=tuple(problems),
        )

    async def _sample_discovered(self) -> FleetSnapshot:
        """Replicas, up/down and figures all from Prometheus; versions are unknown this way."""
        assert isinstance(self.source, PrometheusSource)
        problems: list[str] = []
        try:
            replicas, up = await self.source.discover(self._replica_set.config.metrics_path)
        except PrometheusError as error:
            replicas, up = (), {}
            problems.append(str(error))
        self._replica_set.replicas = replicas
        metrics = await self.source.sample(replicas, self.model_name, self.window_s)
        await self._find_local_processes(replicas, self._clock())
        rows = tuple(
            ReplicaRow(
                address=replica.address,
                target=replica.target,
                up=up[replica.address],
                figures=metrics.replicas.get(replica.address, ServerFigures()),
                error=None if up[replica.address] else "Prometheus: up == 0",
                rss_bytes=self._rss(replica) if up[replica.address] and replica.is_local else None,
            )
            for replica in replicas
        )
        return FleetSnapshot(
            taken_at=time.time(),
            source=self.source.description,
            model_name=self.model_name,
            fleet=_with_fleet_max(metrics.fleet, rows),
            replicas=rows,
            problems=(*problems, *metrics.problems),
        )

    async def _poll_status(self, replica: Replica) -> tuple[bool, dict[int, str], str | None]:
        """(up, {version: state}, error) from this replica's own GetModelStatus (or health)."""
        client = self._clients.get(replica.address)
        if client is None:
            settings = ClientSettings(
                targets=(replica.address,),
                timeout_s=self._status_timeout_s,
                max_retries=0,
                tls=self._tls,
                bearer_token=self._bearer_token,
            )
            client = self._clients[replica.address] = ServingClient(settings)
        try:
            if self.model_name is None:
                await client.health(timeout_s=self._status_timeout_s)
                return True, {}, None
            statuses = await client.get_model_status(
                self.model_name, timeout_s=self._status_timeout_s
            )
        except ServingError as error:
            if error.code in _DOWN_CODES:
                return False, {}, f"{error.code}: {error.message}"
            return True, {}, f"{error.code}: {error.message}"
        return True, {status.version: status.state for status in statuses}, None

    async def _find_local_processes(self, replicas: Sequence[Replica], now: float) -> None:
        """Find the processes of local replicas not known yet (one scan, in a thread, rarely)."""
        unknown = [r for r in replicas if r.is_local and self._pids.get(r.address) is None]
        if not unknown or (
            self._pids_scanned_at is not None
            and now - self._pids_scanned_at < self._resolve_interval_s
        ):
            return
        self._pids_scanned_at = now
        ports = {int(replica.address.rpartition(":")[2]) for replica in unknown}
        found = await asyncio.to_thread(_listening_pids, ports)
        for replica in unknown:
            self._pids[replica.address] = found.get(int(replica.address.rpartition(":")[2]))

    def _rss(self, replica: Replica) -> int | None:
        """Resident memory of the local process listening on the replica's port."""
        pid = self._pids.get(replica.address)
        rss = process_rss_bytes(pid) if pid is not None else None
        if rss is None and pid is not None:
            self._pids[replica.address] = None  # restarted: look the process up again
            self._pids_scanned_at = None
        return rss

    async def _drop_clients_of_gone_replicas(self) -> None:
        live = {replica.address for replica in self._replica_set.replicas}
        for address in [a for a in self._clients if a not in live]:
            await self._clients.pop(address).close()

    async def close(self) -> None:
        """Close every replica's channel and the source's HTTP session."""
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.close() for client in clients))
        await self.source.close()


def _listening_pids(ports: set[int]) -> dict[int, int]:
    """The pids of the local processes listening on these TCP ports (those that can be seen)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return {}
    return {
        connection.laddr.port: connection.pid
        for connection in connections
        if connection.status == psutil.CONN_LISTEN
        and connection.laddr
        and connection.laddr.port in ports
        and connection.pid is not None
    }


def _with_fleet_max(fleet: ServerFigures, rows: Sequence[ReplicaRow]) -> ServerFigures:
    """The fleet's batch fill against the replicas' common max batch size, when they share one."""
    maxima = {
        (row.figures.batch.max_batch_size, row.figures.batch.max_batch_size_inferred)
        for row in rows
        if row.figures.batch.max_batch_size is not None
    }
    if len(maxima) != 1 or fleet.batch.max_batch_size is not None:
        return fleet
    max_batch_size, inferred = maxima.pop()
    batch = replace(fleet.batch, max_batch_size=max_batch_size, max_batch_size_inferred=inferred)
    return replace(fleet, batch=batch)
