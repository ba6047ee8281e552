"""core.fleet without model servers: rates and percentiles between scrapes, resets, replicas,
the Prometheus source against a stand-in HTTP API, and the snapshot's JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import web

from core.client.scrape import parse_metrics
from core.fleet.direct import ScrapeSource, figures_between, inferred_max_batch_size
from core.fleet.prometheus import PrometheusSource, instance_of, queries
from core.fleet.replicas import FleetTargets, Replica, ReplicaSet, target_addresses
from core.fleet.snapshot import FleetSnapshot, ReplicaRow, ServerFigures

RECORDED = (Path(__file__).parents[1] / "fixtures" / "tfs_metrics_batching.txt").read_text()
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
BOUNDS = (1000.0, 2000.0, 4000.0, math.inf)  # microseconds


def exposition(counts: Mapping[str, float], buckets: tuple[float, ...] | None = None) -> str:
    """TF Serving's text for request_count by status and request_latency's cumulative buckets."""
    lines = [f"# TYPE {COUNT} counter"]
    lines += [f'{COUNT}{{model_name="m",status="{code}"}} {n}' for code, n in counts.items()]
    if buckets is not None:
        lines.append(f"# TYPE {LATENCY} histogram")
        labels = 'API="Predict",entrypoint="GRPC",model_name="m"'
        for bound, count in zip(BOUNDS, buckets, strict=True):
            le = "+Inf" if math.isinf(bound) else str(bound)
            lines.append(f'{LATENCY}_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"{LATENCY}_count{{{labels}}} {buckets[-1]}")
        lines.append(f"{LATENCY}_sum{{{labels}}} 0")
    return "\n".join(lines) + "\n"


def test_rates_errors_and_percentiles_between_two_scrapes() -> None:
    earlier = parse_metrics(exposition({"OK": 100, "NOT_FOUND": 1}, (10, 20, 30, 30)), 10.0)
    later = parse_metrics(exposition({"OK": 300, "NOT_FOUND": 5}, (20, 70, 110, 110)), 12.0)
    figures = figures_between(earlier, later, "m")
    assert figures.window_s == 2.0
    assert figures.qps == pytest.approx((200 + 4) / 2)
    assert figures.errors == {"NOT_FOUND": 4}
    # Bucket increases (10, 50, 80, 80): rank 40 lies 30/40 into (1000, 2000] us.
    assert figures.latency.p50_ms == pytest.approx(1.75)
    assert figures.latency.p99_ms == pytest.approx((2000 + 2000 * (79.2 - 50) / 30) / 1000)
    assert figures.latency.bucketed is True
    # Another model's requests are not this model's.
    assert figures_between(earlier, later, "other").qps == 0


def test_a_restarted_replica_never_gives_a_negative_or_huge_rate() -> None:
    before_restart = parse_metrics(exposition({"OK": 100_000}, (0, 0, 90_000, 100_000)), 10.0)
    after_restart = parse_metrics(exposition({"OK": 40}, (10, 30, 40, 40)), 12.0)
    figures = figures_between(before_restart, after_restart, "m")
    assert figures.qps == pytest.approx(20.0)
    assert figures.latency.p50_ms == pytest.approx(1.5)


def test_metrics_a_server_does_not_export_are_none_and_flagged() -> None:
    earlier = parse_metrics(exposition({"OK": 1}), 0.0)
    later = parse_metrics(exposition({"OK": 3}), 1.0)
    figures = figures_between(earlier, later, "m")
    assert figures.qps == 2.0
    assert figures.latency.p50_ms is None
    assert figures.batch.size_mean is None and figures.batch.fill is None
    assert LATENCY in figures.not_exported
    assert ":tensorflow:serving:batching_session:processed_batch_size" in figures.not_exported
    nothing = parse_metrics("", 2.0)
    assert figures_between(later, nothing, "m").qps is None
    # The first scrape has no rates yet: unknown, not zero.
    assert figures_between(None, later, "m").qps is None


def test_batch_fill_uses_the_configured_or_the_inferred_max_batch_size() -> None:
    recorded = parse_metrics(RECORDED, 5.0)
    assert inferred_max_batch_size(recorded) == 32
    empty = parse_metrics("", 0.0)
    inferred = figures_between(empty, recorded, "deepchat_model").batch
    assert inferred.max_batch_size == 32 and inferred.max_batch_size_inferred
    assert inferred.size_mean == pytest.approx(800 / 413)
    assert inferred.fill == pytest.approx(800 / 413 / 32)
    assert inferred.queuing_ms_mean is not None
    configured = figures_between(empty, recorded, "deepchat_model", max_batch_size=64).batch
    assert configured.max_batch_size == 64 and not configured.max_batch_size_inferred


def test_targets_give_replicas_and_metrics_urls() -> None:
    assert target_addresses("ipv4:10.0.0.1:8500,10.0.0.2:8500") == (
        "",
        ("10.0.0.1:8500", "10.0.0.2:8500"),
    )
    assert target_addresses("dns:///svc.ns:8500") == ("dns:///svc.ns:8500", ())
    with pytest.raises(ValueError, match="network address"):
        target_addresses("unix:/tmp/tfs.sock")
    with pytest.raises(ValueError, match="one per target"):
        FleetTargets(("a:1", "b:2"), metrics_urls=("http://a:9/m",))
    with pytest.raises(ValueError, match="expected http"):
        FleetTargets(("a:1",), metrics_urls=("a:9/m",))


async def test_dns_targets_resolve_to_every_address_with_its_own_metrics_url() -> None:
    replica_set = ReplicaSet(
        FleetTargets(("dns:///localhost:8500", "ipv4:127.0.0.2:8500", "[::1]:8600"), rest_port=8501)
    )
    replicas = await replica_set.refresh()
    addresses = [replica.address for replica in replicas]
    assert "127.0.0.1:8500" in addresses and "127.0.0.2:8500" in addresses
    by_address = {replica.address: replica for replica in replicas}
    # Not `http://dns:///localhost:8501`: each address's own host and the REST port.
    assert by_address["127.0.0.1:8500"].metrics_url == (
        "http://127.0.0.1:8501/monitoring/prometheus/metrics"
    )
    assert by_address["[::1]:8600"].metrics_url == "http://[::1]:8501/monitoring/prometheus/metrics"
    assert by_address["127.0.0.1:8500"].target == "dns:///localhost:8500"
    assert all(replica.is_local for replica in replicas)


async def test_a_name_that_stops_resolving_keeps_its_replicas_and_says_why() -> None:
    target = "dns:///no-such-host.invalid:8500"
    replica_set = ReplicaSet(FleetTargets((target,)))
    # What an earlier refresh found, before the name stopped resolving.
    replica_set.replicas = (Replica("10.0.0.7:8500", target, None),)
    again = await replica_set.refresh()
    assert [r.address for r in again] == ["10.0.0.7:8500"]
    assert "no-such-host.invalid" in replica_set.resolve_errors[target]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_scrape_source_reads_every_replica_and_reports_the_unreadable() -> None:
    texts = {"a": exposition({"OK": 10}), "b": exposition({"OK": 20})}

    async def metrics(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in texts:
            raise web.HTTPNotFound()
        return web.Response(text=texts[name])

    app = web.Application()
    app.router.add_get("/{name}", metrics)
    runner, base = await serve(app)
    clock = [0.0]
    source = ScrapeSource(clock=lambda: clock[0])
    replicas = [
        Replica("127.0.0.1:1", "a", f"{base}/a"),
        Replica("127.0.0.1:2", "b", f"{base}/b"),
        Replica("127.0.0.1:3", "c", f"{base}/missing"),
        Replica("127.0.0.1:4", "d", None),
    ]
    try:
        first = await source.sample(replicas, "m", window_s=1.0)
        assert first.replicas["127.0.0.1:1"].qps is None  # one scrape: no rate yet
        texts.update(a=exposition({"OK": 30}), b=exposition({"OK": 25}))
        clock[0] = 2.0
        second = await source.sample(replicas, "m", window_s=1.0)
    finally:
        await source.close()
        await runner.cleanup()
    assert second.replicas["127.0.0.1:1"].qps == 10.0
    assert second.replicas["127.0.0.1:2"].qps == 2.5
    assert second.fleet.qps == 12.5
    assert "404" in (second.replicas["127.0.0.1:3"].metrics_error or "")
    assert "no metrics URL" in (second.replicas["127.0.0.1:4"].metrics_error or "")


async def test_prometheus_source_maps_series_to_replicas_by_instance() -> None:
    a = Replica("10.0.0.1:8500", "a", "http://10.0.0.1:8501/monitoring/prometheus/metrics")
    b = Replica("10.0.0.2:8500", "b", "http://10.0.0.2:8501/monitoring/prometheus/metrics")
    assert instance_of(a) == "10.0.0.1:8501"
    wanted = queries("m", 5, ["10.0.0.1:8501", "10.0.0.2:8501"])
    asked: list[str] = []

    def vector(*items: tuple[dict[str, str], float]) -> dict:
        return {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": m, "value": [0, str(v)]} for m, v in items],
            },
        }

    ia, ib = {"instance": "10.0.0.1:8501"}, {"instance": "10.0.0.2:8501"}
    answers = {
        wanted["exported"]: vector(
            ({**ia, "__name__": COUNT}, 1),
            ({**ia, "__name__": LATENCY + "_count"}, 1),
            ({**ib, "__name__": COUNT}, 1),
        ),
        wanted["qps"]: vector((ia, 12.5), (ib, 7.5)),
        wanted["errors"]: vector(({**ia, "status": "NOT_FOUND"}, 3)),
        wanted["p50"]: vector((ia, 1500), (ib, float("nan"))),
        wanted["p99"]: vector((ia, 3900)),
        wanted["fleet_qps"]: vector(({}, 20.0)),
        wanted["fleet_p50"]: vector(({}, 1600)),
        "DCGM_FI_DEV_GPU_UTIL": vector(
            ({"instance": "10.0.0.1:9400", "gpu": "0"}, 40), ({"pod": "10.0.0.1", "gpu": "1"}, 60)
        ),
        "DCGM_FI_DEV_FB_USED": vector(({"instance": "10.0.0.1:9400"}, 2048)),
    }

    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        asked.append(promql)
        return web.json_response(answers.get(promql, vector()))

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner, base = await serve(app)
    source = PrometheusSource(base)
    try:
        sample = await source.sample([a, b], "m", window_s=5)
    finally:
        await source.close()
        await runner.cleanup()
    assert set(asked) == set(wanted.values())
    first, second = sample.replicas[a.address], sample.replicas[b.address]
    assert first.qps == 12.5 and first.errors == {"NOT_FOUND": 3}
    assert first.latency.p50_ms == 1.5 and first.latency.p99_ms == 3.9
    assert first.gpu is not None and first.gpu.utilization_pct == 50
    assert first.gpu.memory_used_mib == 2048
    assert second.qps == 7.5 and second.latency.p50_ms is None and second.gpu is None
    assert LATENCY in second.not_exported
    assert sample.fleet.qps == 20.0 and sample.fleet.latency.p50_ms == 1.6


async def test_an_unreachable_prometheus_is_a_problem_not_an_exception() -> None:
    source = PrometheusSource("http://127.0.0.1:1", timeout_s=1)
    replica = Replica("127.0.0.1:8500", "a", "http://127.0.0.1:8501/metrics")
    try:
        sample = await source.sample([replica], None, 5)
    finally:
        await source.close()
    assert sample.problems and "127.0.0.1:1" in sample.problems[0]
    assert sample.replicas[replica.address].qps is None
    assert sample.replicas[replica.address].metrics_error


def test_snapshot_json_and_version_skew() -> None:
    rows = (
        ReplicaRow("a:1", "a:1", True, ServerFigures(qps=1.0), versions={1: "AVAILABLE"}),
        ReplicaRow("b:1", "b:1", True, versions={1: "END", 2: "AVAILABLE"}),
        ReplicaRow("c:1", "c:1", False, error="UNAVAILABLE: refused"),
    )
    snapshot = FleetSnapshot(1.0, "scrape", "m", ServerFigures(qps=1.0), rows)
    assert snapshot.version_skew and not snapshot.all_up
    document = snapshot.to_json()
    assert set(document["fleet"]) >= {"qps", "latency_ms", "errors", "version_skew"}
    assert set(document["fleet"]["latency_ms"]) >= {"p50", "p99"}
    first = document["replicas"][0]
    assert set(first) >= {"target", "up", "qps", "latency_ms", "errors", "versions", "batch"}
    assert first["versions"] == {"1": "AVAILABLE"}
    assert set(first["batch"]) >= {"size_mean", "fill"}
    assert document["replicas"][2]["error"] == "UNAVAILABLE: refused"


async def test_one_cycle_over_50_replicas_stays_far_below_a_second() -> None:
    """benchmarks/bench_fleet.py measures it (target < 200 ms); this guards a wide margin."""
    from benchmarks.bench_fleet import StandInFleet, measure_cycles

    fleet = StandInFleet(50)
    try:
        figures = await measure_cycles(fleet, cycles=5)
    finally:
        fleet.stop()
    assert figures.replicas_up == 50
    assert figures.fleet_qps is not None and figures.fleet_qps > 0
    assert sorted(figures.cycle_ms)[2] < 1500


async def test_fleet_sampler_from_config_and_from_given_targets() -> None:
    from core.config.schema import Config
    from core.fleet.setup import fleet_sampler

    with pytest.raises(ValueError, match="embedded server"):
        fleet_sampler(Config())
    config = Config.model_validate(
        {
            "model_serving": {
                "tensorflow_serving": {
                    "host": "tfs",
                    "targets": ["10.0.0.1:8500", "10.0.0.2:8500"],
                    "metrics_urls": ["http://10.0.0.1:9/m", "http://10.0.0.2:9/m"],
                    "max_batch_sizes": [32, 64],
                    "prometheus_url": "http://prom:9090",
                }
            }
        }
    )
    sampler = fleet_sampler(config, model_name="m")
    replicas = await sampler._replica_set.refresh()
    assert [(r.address, r.metrics_url, r.max_batch_size) for r in replicas] == [
        ("10.0.0.1:8500", "http://10.0.0.1:9/m", 32),
        ("10.0.0.2:8500", "http://10.0.0.2:9/m", 64),
    ]
    assert sampler.source.description == "prometheus http://prom:9090"
    await sampler.close()
    given = fleet_sampler(config, targets=["127.0.0.1:8500"], prometheus_url=None)
    assert [r.metrics_url for r in await given._replica_set.refresh()] == [
        "http://127.0.0.1:8501/monitoring/prometheus/metrics"
    ]
    await given.close()


async def test_a_window_too_short_for_prometheus_is_said_not_shown_as_idle() -> None:
    replica = Replica("10.0.0.1:8500", "a", "http://10.0.0.1:8501/metrics")
    exported = queries(None, 1, ["10.0.0.1:8501"])["exported"]

    async def query(request: web.Request) -> web.Response:
        result = []
        if request.query["query"] == exported:
            metric = {"instance": "10.0.0.1:8501", "__name__": COUNT}
            result = [{"metric": metric, "value": [0, "1"]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner, base = await serve(app)
    source = PrometheusSource(base)
    try:
        sample = await source.sample([replica], None, window_s=1)
    finally:
        await source.close()
        await runner.cleanup()
    assert any("two of its scrape intervals" in problem for problem in sample.problems)
