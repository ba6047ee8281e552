"""A model server's Prometheus text: TF Serving's metric names read into totals and counters."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from core.client.scrape import (
    PROCESSED_BATCH_SIZE,
    QUEUING_LATENCY,
    REQUEST_COUNT,
    HistogramTotals,
    ScrapeError,
    metrics_url,
    parse_metrics,
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
    assert HistogramTotals(4, 80).mean == 20.0
    # TF Serving records queueing latency in microseconds: a mean of 500 us.
    assert metrics.histogram(QUEUING_LATENCY, "chat") == HistogramTotals(4, 2000)
    assert metrics.buckets[PROCESSED_BATCH_SIZE][(("model_name", "chat"),)] == (
        (8.0, 2.0),
        (float("inf"), 4.0),
    )
    errors = metrics.counter(REQUEST_COUNT, model_name="chat", status="NOT_FOUND")
    assert list(errors.values()) == [2.0]
    assert sum(metrics.counter(REQUEST_COUNT, status="OK").values()) == 47.0
    assert metrics.exports(REQUEST_COUNT) and metrics.exports(QUEUING_LATENCY)


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
    assert not any(name.endswith("_created") for name in first.counters)
    for size in (30, 32):
        sizes.labels("m").observe(size)
    second = parse_metrics(generate_latest(registry).decode())
    totals = second.histogram(PROCESSED_BATCH_SIZE, "m")
    assert totals is not None and totals.mean == 17.0  # since start
    recent = totals.since(first.histogram(PROCESSED_BATCH_SIZE, "m"))
    assert recent == HistogramTotals(2, 62) and recent.mean == 31.0  # since the previous scrape
    idle = totals.since(second.histogram(PROCESSED_BATCH_SIZE, "m"))
    assert idle == HistogramTotals(0, 0) and idle.mean is None  # nothing new
    assert totals.since(None) == totals


def test_no_batching_metrics_means_none_not_zero() -> None:
    metrics = parse_metrics("# TYPE up gauge\nup 1\n")
    assert metrics.histogram(PROCESSED_BATCH_SIZE, "m") is None
    assert metrics.histogram(QUEUING_LATENCY) is None
    assert not metrics.exports(PROCESSED_BATCH_SIZE) and metrics.exports("up")
    assert metrics.counter(REQUEST_COUNT) == {}


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
