"""Prometheus scraping: TF Serving's metric names parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from core.client.scrape import (
    PROCESSED_BATCH_SIZE,
    QUEUING_LATENCY,
    REQUEST_COUNT,
    HistogramTotals,
    MetricsScraper,
    ScrapeError,
    metrics_url,
    parse_metrics,
    server_batching,
)

# What real TF Serving writes (its exporter names counters without _total and keeps the colons).
TF_SERVING_TEXT = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="chat",status="OK"} 40
:tensorflow:serving:request_count{model_name="chat",status="NOT_FOUND"} 2
:tensorflow:serving:request_count{model_name="other",status="OK"} 7
# TYPE :tensorflow:serving:batching_session:processed_batch_size histogram
:tensorflow:serving:batching_session:processed_batch_size_bucket{model_name="chat",le="8"} 2
:tensorflow:serving:batching_session:processed_batch_size_bucket{model_name="chat",le="+Inf"} 4
:tensorflow:serving:batching_session:processed_batch_size_sum{model_name="chat"} 80
:tensorflow:serving:batching_session:processed_batch_size_count{model_name="chat"} 4
:tensorflow:serving:batching_session:processed_batch_size_bucket{model_name="other",le="+Inf"} 1
:tensorflow:serving:batching_session:processed_batch_size_sum{model_name="other"} 2
:tensorflow:serving:batching_session:processed_batch_size_count{model_name="other"} 1
# TYPE :tensorflow:serving:batching_session:queuing_latency histogram
:tensorflow:serving:batching_session:queuing_latency_bucket{model_name="chat",le="+Inf"} 4
:tensorflow:serving:batching_session:queuing_latency_sum{model_name="chat"} 2000
:tensorflow:serving:batching_session:queuing_latency_count{model_name="chat"} 4
"""


def test_parses_tf_serving_exposition() -> None:
    metrics = parse_metrics(TF_SERVING_TEXT, scraped_at=5.0)
    assert metrics.scraped_at == 5.0
    assert metrics.histogram(PROCESSED_BATCH_SIZE, "chat") == HistogramTotals(4, 80)
    assert metrics.histogram(PROCESSED_BATCH_SIZE) == HistogramTotals(5, 82)
    assert metrics.histogram(PROCESSED_BATCH_SIZE, "missing") is None
    errors = metrics.counter(REQUEST_COUNT, model_name="chat", status="NOT_FOUND")
    assert list(errors.values()) == [2.0]
    assert sum(metrics.counter(REQUEST_COUNT, status="OK").values()) == 47.0
    batching = server_batching(metrics, None, model_name="chat", max_batch_size=32)
    assert batching.batch_size_mean == 20.0
    assert batching.fill_ratio == pytest.approx(20 / 32)
    assert batching.queuing_latency_ms == pytest.approx(0.5)


def test_parses_prometheus_client_exposition_and_takes_deltas_between_scrapes() -> None:
    registry = CollectorRegistry()
    sizes = Histogram(PROCESSED_BATCH_SIZE, "batch sizes", ["model_name"], registry=registry)
    requests = Counter(REQUEST_COUNT, "requests", ["model_name", "status"], registry=registry)
    for size in (2, 4):
        sizes.labels("m").observe(size)
    requests.labels("m", "OK").inc(3)
    first = parse_metrics(generate_latest(registry).decode())
    assert first.histogram(PROCESSED_BATCH_SIZE, "m") == HistogramTotals(2, 6)
    assert list(first.counter(REQUEST_COUNT, status="OK").values()) == [3.0]
    for size in (30, 32):
        sizes.labels("m").observe(size)
    second = parse_metrics(generate_latest(registry).decode())
    recent = server_batching(second, first, model_name="m", max_batch_size=32)
    assert recent.batch_size_mean == 31.0  # only the batches since the previous scrape
    idle = server_batching(second, second, model_name="m", max_batch_size=32)
    assert idle.batch_size_mean == 17.0  # nothing new: the mean since start
    assert server_batching(second, None, model_name="m", max_batch_size=None).fill_ratio is None


def test_no_batching_metrics_means_unknown_fill() -> None:
    metrics = parse_metrics("# TYPE up gauge\nup 1\n")
    batching = server_batching(metrics, None, model_name="m", max_batch_size=32)
    assert batching.batch_size_mean is None and batching.fill_ratio is None
    assert batching.queuing_latency_ms is None


def test_a_server_restart_does_not_give_negative_deltas() -> None:
    assert HistogramTotals(2, 10).since(HistogramTotals(5, 50)) == HistogramTotals(2, 10)


def test_garbage_text_is_a_scrape_error() -> None:
    with pytest.raises(ScrapeError, match="does not parse"):
        parse_metrics("this is { not prometheus\n")


def test_metrics_url_joins_base_and_path() -> None:
    assert metrics_url("http://127.0.0.1:8501/", None) == (
        "http://127.0.0.1:8501/monitoring/prometheus/metrics"
    )
    assert metrics_url("http://h:1", "metrics") == "http://h:1/metrics"


@pytest.fixture
async def metrics_server() -> AsyncIterator[str]:
    """An aiohttp server with TF Serving's text at /metrics and nothing elsewhere."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=TF_SERVING_TEXT, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_scraper_reads_a_live_endpoint_and_reports_missing_metrics(
    metrics_server: str,
) -> None:
    scraper = MetricsScraper(metrics_url(metrics_server, "/metrics"), clock=lambda: 42.0)
    try:
        metrics = await scraper.scrape()
        assert metrics is not None and metrics.scraped_at == 42.0
        assert metrics.histogram(QUEUING_LATENCY, "chat") == HistogramTotals(4, 2000)
    finally:
        await scraper.close()
    no_metrics = MetricsScraper(metrics_url(metrics_server, "/monitoring/prometheus/metrics"))
    try:
        assert await no_metrics.scrape() is None
    finally:
        await no_metrics.close()


async def test_scraper_raises_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    scraper = MetricsScraper(f"http://127.0.0.1:{free_port}/metrics", timeout_s=1.0)
    try:
        with pytest.raises(ScrapeError, match=f"127.0.0.1:{free_port}"):
            await scraper.scrape()
    finally:
        await scraper.close()
