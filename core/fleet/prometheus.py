"""The Prometheus source: PromQL over an existing Prometheus server's HTTP API (/api/v1/query).

Prometheus scrapes the replicas; the console only asks it, so a fleet of hundreds of pods is
watched with a handful of queries. A replica is matched to Prometheus' series by the `instance`
label, which is its metrics URL's HOST:PORT (Prometheus' default for a scrape target).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.fleet import source as names
from core.fleet.replicas import Replica
from core.fleet.snapshot import BatchFigures, GpuFigures, LatencyFigures, ServerFigures
from core.fleet.source import SourceSample

if TYPE_CHECKING:
    import aiohttp

# A series' labels and its value.
Series = tuple[Mapping[str, str], float]


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query."""


def instance_of(replica: Replica) -> str | None:
    """The `instance` label Prometheus gives the replica's metrics target (HOST:PORT)."""
    if replica.metrics_url is None:
        return None
    parts = urlsplit(replica.metrics_url)
    if parts.port is not None:
        return parts.netloc
    return f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"


def _selector(name: str, model_name: str | None, extra: str = "", instances: str = "") -> str:
    terms = [f'__name__="{name}"']
    if model_name is not None:
        terms.append(f'model_name="{_escape(model_name)}"')
    if instances:
        terms.append(f'instance=~"{instances}"')
    if extra:
        terms.append(extra)
    return "{" + ",".join(terms) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(model_name: str | None, window_s: float, instances: Sequence[str]) -> dict[str, str]:
    """The PromQL the source runs, by figure name (per instance, and `fleet_*` for the fleet)."""
    window = f"{max(1, round(window_s))}s"
    # Regular expressions inside PromQL strings: the regex's backslashes are escaped once more.
    only = _escape("|".join(re.escape(instance) for instance in instances))
    count = _selector(names.REQUEST_COUNT, model_name, instances=only)
    errors = _selector(names.REQUEST_COUNT, model_name, 'status!="OK"', instances=only)
    latency = _selector(names.REQUEST_LATENCY + "_bucket", model_name, instances=only)
    size_sum = _selector(names.PROCESSED_BATCH_SIZE + "_sum", None, instances=only)
    size_count = _selector(names.PROCESSED_BATCH_SIZE + "_count", None, instances=only)
    exported = (
        '{__name__=~"'
        + _escape(
            "|".join(
                re.escape(name)
                for name in (
                    names.REQUEST_COUNT,
                    names.REQUEST_LATENCY + "_count",
                    names.PROCESSED_BATCH_SIZE + "_count",
                )
            )
        )
        + '"'
        + (f',instance=~"{only}"' if only else "")
        + "}"
    )
    result = {"exported": f"group by (instance, __name__) ({exported})"}
    for scope, by in (("", "instance, "), ("fleet_", "")):
        group = f"sum by ({by.rstrip(', ')})" if by else "sum"
        result[f"{scope}qps"] = f"{group} (rate({count}[{window}]))"
        result[f"{scope}errors"] = f"sum by ({by}status) (increase({errors}[{window}]))"
        for key, quantile in (("p50", "0.5"), ("p99", "0.99")):
            result[f"{scope}{key}"] = (
                f"histogram_quantile({quantile}, sum by ({by}le) (rate({latency}[{window}])))"
            )
        result[f"{scope}batch"] = (
            f"{group} (rate({size_sum}[{window}])) / {group} (rate({size_count}[{window}]))"
        )
    result["gpu_util"] = names.DCGM_GPU_UTIL
    result["gpu_memory"] = names.DCGM_FB_USED
    return result


class PrometheusSource:
    """Reads fleet and per-replica figures from a Prometheus server's HTTP API."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Prometheus URL {url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def description(self) -> str:
        """What the figures come from."""
        return f"prometheus {self.url}"

    async def query(self, promql: str) -> list[Series]:
        """An instant query's vector result as (labels, value) pairs; PrometheusError on failure."""
        import aiohttp  # first use only

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        endpoint = f"{self.url}/api/v1/query"
        try:
            async with self._session.get(endpoint, params={"query": promql}) as response:
                body: Any = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PrometheusError(f"GET {endpoint}: {error or type(error).__name__}") from error
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", body) if isinstance(body, dict) else body
            raise PrometheusError(f"Prometheus refused {promql!r}: {detail}")
        data = body.get("data", {})
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [
            (dict(item.get("metric", {})), float(item["value"][1]))
            for item in data.get("result", [])
        ]

    async def discover(self, metrics_path: str) -> tuple[tuple[Replica, ...], dict[str, bool]]:
        """The replicas Prometheus scrapes TF Serving metrics from, and whether each is up.

        A replica is an `instance` that exported request_count within the last hour; up is
        Prometheus' own `up` for it. Its address is that instance (the metrics HOST:PORT).
        PrometheusError when Prometheus cannot answer.
        """
        seen, up = await asyncio.gather(
            self.query(
                "group by (instance) (last_over_time("
                + _selector(names.REQUEST_COUNT, None)
                + "[1h]))"
            ),
            self.query("max by (instance) (up)"),
        )
        up_by_instance = {labels.get("instance", ""): value == 1 for labels, value in up}
        instances = sorted({labels["instance"] for labels, _ in seen if labels.get("instance")})
        path = "/" + metrics_path.lstrip("/")
        replicas = tuple(
            Replica(address=instance, target="prometheus", metrics_url=f"http://{instance}{path}")
            for instance in instances
        )
        return replicas, {instance: up_by_instance.get(instance, False) for instance in instances}

    async def sample(
        self, replicas: Sequence[Replica], model_name: str | None, window_s: float
    ) -> SourceSample:
        """Every figure over the last window_s seconds, per replica and for the fleet."""
        by_instance = {
            instance: replica
            for replica in replicas
            if (instance := instance_of(replica)) is not None
        }
        wanted = queries(model_name, window_s, sorted(by_instance))
        outcomes = await asyncio.gather(
            *(self.query(promql) for promql in wanted.values()), return_exceptions=True
        )
        results: dict[str, list[Series]] = {}
        problems: list[str] = []
        for key, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, PrometheusError):
                    raise outcome
                if str(outcome) not in problems:
                    problems.append(str(outcome))
                continue
            results[key] = outcome
        if "exported" not in results:
            return SourceSample(
                fleet=ServerFigures(metrics_error="; ".join(problems)),
                replicas={
                    replica.address: ServerFigures(metrics_error="; ".join(problems))
                    for replica in replicas
                },
                problems=tuple(problems),
            )
        exported: dict[str, set[str]] = {}
        for labels, _ in results["exported"]:
            exported.setdefault(labels.get("instance", ""), set()).add(labels.get("__name__", ""))
        per_replica = {
            replica.address: self._figures(
                results, window_s, replica, instance_of(replica), exported
            )
            for replica in replicas
        }
        fleet_exported = set().union(*exported.values()) if exported else set()
        if names.REQUEST_COUNT in fleet_exported and not results.get("fleet_qps"):
            # rate() needs two samples inside the window: a window under two scrape intervals
            # gives nothing, which must not read as "no traffic".
            problems.append(
                f"Prometheus has request_count but no rate over {window_s:g} s: the window must "
                "span at least two of its scrape intervals"
            )
        return SourceSample(
            fleet=_figures_from(results, "fleet_", None, window_s, fleet_exported),
            replicas=per_replica,
            problems=tuple(problems),
        )

    def _figures(
        self,
        results: Mapping[str, list[Series]],
        window_s: float,
        replica: Replica,
        instance: str | None,
        exported: Mapping[str, set[str]],
    ) -> ServerFigures:
        if instance is None:
            return ServerFigures(metrics_error="no metrics URL, so no Prometheus instance")
        figures = _figures_from(results, "", instance, window_s, exported.get(instance, set()))
        gpu = _gpu(results, replica)
        return replace(
            figures,
            batch=replace(figures.batch, max_batch_size=replica.max_batch_size),
            gpu=gpu,
            metrics_error=None if exported.get(instance) else f"Prometheus has no {instance}",
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _pick(results: Mapping[str, list[Series]], key: str, instance: str | None) -> float | None:
    for labels, value in results.get(key, []):
        if instance is None or labels.get("instance") == instance:
            return None if math.isnan(value) else value
    return None


def _figures_from(
    results: Mapping[str, list[Series]],
    scope: str,
    instance: str | None,
    window_s: float,
    exported: set[str],
) -> ServerFigures:
    count_exported = names.REQUEST_COUNT in exported
    latency_exported = names.REQUEST_LATENCY + "_count" in exported
    batch_exported = names.PROCESSED_BATCH_SIZE + "_count" in exported

    def ms(key: str) -> float | None:
        value = _pick(results, scope + key, instance)
        return None if value is None else value / 1000  # TF Serving records microseconds

    errors: dict[str, float] = {}
    for labels, value in results.get(scope + "errors", []):
        if instance is not None and labels.get("instance") != instance:
            continue
        status = labels.get("status", "UNKNOWN")
        if value > 0 and not math.isnan(value):
            errors[status] = errors.get(status, 0.0) + value
    qps = _pick(results, scope + "qps", instance)
    return ServerFigures(
        window_s=window_s,
        qps=(qps if qps is not None else 0.0) if count_exported else None,
        latency=LatencyFigures(ms("p50"), ms("p99"), bucketed=True)
        if latency_exported
        else LatencyFigures(),
        errors=errors,
        batch=BatchFigures(size_mean=_pick(results, scope + "batch", instance))
        if batch_exported
        else BatchFigures(),
        not_exported=tuple(
            name
            for name, present in (
                (names.REQUEST_COUNT, count_exported),
                (names.REQUEST_LATENCY, latency_exported),
                (names.PROCESSED_BATCH_SIZE, batch_exported),
            )
            if not present
        ),
    )


def _gpu(results: Mapping[str, list[Series]], replica: Replica) -> GpuFigures | None:
    """DCGM exporter series of the replica's host or pod (the exporter runs beside it)."""

    def belongs(labels: Mapping[str, str]) -> bool:
        host = labels.get("instance", "").rpartition(":")[0].strip("[]")
        return replica.host in (host, labels.get("pod"), labels.get("Hostname"))

    utilization = [value for labels, value in results.get("gpu_util", []) if belongs(labels)]
    memory = [value for labels, value in results.get("gpu_memory", []) if belongs(labels)]
    if not utilization and not memory:
        return None
    return GpuFigures(
        utilization_pct=sum(utilization) / len(utilization) if utilization else None,
        memory_used_mib=sum(memory) if memory else None,
    )
