"""Building a FleetSampler from the console's configuration (the CLI and the console share it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.client.channel import ClientSettings
from core.config.schema import Config
from core.fleet.direct import ScrapeSource
from core.fleet.prometheus import PrometheusSource
from core.fleet.replicas import FleetTargets
from core.fleet.sampler import FleetSampler
from core.fleet.source import MetricsSource


def fleet_sampler(
    config: Config,
    *,
    targets: Sequence[str] = (),
    metrics_urls: Sequence[str] = (),
    max_batch_sizes: Sequence[int] = (),
    prometheus_url: str | None = None,
    model_name: str | None = None,
    window_s: float = 5.0,
    env: Mapping[str, str] | None = None,
) -> FleetSampler:
    """A FleetSampler for the config; given targets (and their metrics URLs and max batch sizes,
    in their order) replace the configured ones, as `--target` does. With no target at all and a
    Prometheus URL, the replicas are the instances Prometheus scrapes TF Serving metrics from.

    The embedded server's caller passes `targets=(server.grpc_target,)` and
    `metrics_urls=(server.rest_url + metrics_path,)`. TLS and the bearer token come from the
    config. Raises ValueError naming the problem when there is nothing to sample.
    """
    tfs = config.model_serving.tensorflow_serving
    if not targets:
        targets = config.resolved_targets()
        metrics_urls = metrics_urls or tfs.metrics_urls
        max_batch_sizes = max_batch_sizes or tfs.max_batch_sizes
    chosen_prometheus = prometheus_url or tfs.prometheus_url
    if not targets and not chosen_prometheus:
        raise ValueError(
            "nothing to sample: the config uses the embedded server and no target was given; "
            "expected targets (HOST:PORT, repeated for replicas), "
            "model_serving.tensorflow_serving.targets, or a Prometheus URL to find them"
        )
    fleet_targets = FleetTargets(
        targets=tuple(targets),
        metrics_urls=tuple(metrics_urls),
        max_batch_sizes=tuple(max_batch_sizes),
        rest_port=tfs.rest_port,
        metrics_path=tfs.metrics_path,
    )
    tls, bearer_token = None, None
    if targets:  # gRPC to each replica: TLS and the token as the console's own channel has them
        settings = ClientSettings.from_config(config, targets=(targets[0],), env=env)
        tls, bearer_token = settings.tls, settings.bearer_token
    source: MetricsSource = (
        PrometheusSource(chosen_prometheus) if chosen_prometheus else ScrapeSource()
    )
    return FleetSampler(
        fleet_targets,
        source,
        model_name=model_name,
        window_s=window_s,
        tls=tls,
        bearer_token=bearer_token,
    )
