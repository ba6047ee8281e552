"""The fast exposition reader reads what prometheus_client's parser reads, the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.client.exposition import Unreadable, read_families
from core.client.scrape import parse_metrics

RECORDED = (Path(__file__).parents[1] / "fixtures" / "tfs_metrics_batching.txt").read_text()


def _client_text() -> str:
    registry = CollectorRegistry()
    histogram = Histogram("latency_us", "l", ["model_name"], registry=registry)
    histogram.labels("m").observe(3)
    Counter("requests", "r", ["status"], registry=registry).labels("OK").inc(5)
    Gauge("odd", "o", ["path"], registry=registry).labels('a "quoted" \\ path,{x}\nnext').set(2)
    return generate_latest(registry).decode()


@pytest.mark.parametrize("text", [RECORDED, _client_text()], ids=["tf-serving", "client"])
def test_the_fast_reader_agrees_with_prometheus_client(text: str) -> None:
    def bare(name: str) -> str:
        # prometheus_client names a TF Serving counter's samples NAME_total; nothing reads that.
        return name.removesuffix("_total")

    reference = {
        family.name: (
            family.type,
            [(bare(s.name), dict(s.labels), s.value) for s in family.samples],
        )
        for family in text_string_to_metric_families(text)
    }
    fast = {
        family.name: (family.type, [(bare(name), labels, v) for name, labels, v in family.samples])
        for family in read_families(text)
    }
    assert fast == reference


def test_wanted_families_are_the_only_ones_read() -> None:
    wanted = {":tensorflow:serving:request_count"}
    assert [family.name for family in read_families(RECORDED, wanted)] == list(wanted)
    metrics = parse_metrics(RECORDED, families=wanted)
    assert set(metrics.counters) == wanted and not metrics.histograms


def test_a_line_the_fast_reader_cannot_read_falls_back_to_prometheus_client() -> None:
    text = '# TYPE x counter\nx{a="1",} 3\n'  # a trailing comma, which prometheus_client accepts
    try:
        families = list(read_families(text))
    except Unreadable:
        families = []
    metrics = parse_metrics(text)
    assert metrics.counters["x"] == {(("a", "1"),): 3.0}
    assert families == [] or families[0].samples == [("x", {"a": "1"}, 3.0)]
    with pytest.raises(Unreadable):
        list(read_families("x{a=1} 3\n"))
