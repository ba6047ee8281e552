"""A model server's Prometheus metrics text read into histogram totals, buckets and counters.

Reads real TF Serving (metric names such as
``:tensorflow:serving:batching_session:processed_batch_size``) as well as the embedded server:
core.client.exposition's fast reader first, prometheus_client's text parser as the fallback.
Fetching the text is the caller's: core.fleet (the console and `status`) and core.report.server_side
(`bench --metrics`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from core.client.exposition import Family, Unreadable, read_families

PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"

# One label set, hashable: sorted (name, value) pairs.
LabelSet = tuple[tuple[str, str], ...]
# A histogram's cumulative buckets: (upper bound, count) pairs sorted by bound, +Inf last.
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class HistogramTotals:
    """A histogram's (or summary's) running count and sum of observations."""

    count: float
    sum: float

    @property
    def mean(self) -> float | None:
        """Mean observation, None when nothing was observed."""
        return self.sum / self.count if self.count > 0 else None

    def since(self, earlier: HistogramTotals | None) -> HistogramTotals:
        """Observations made after ``earlier`` (all of them when the server restarted)."""
        if earlier is None or earlier.count > self.count:
            return self
        return HistogramTotals(self.count - earlier.count, self.sum - earlier.sum)


@dataclass(frozen=True)
class ServerMetrics:
    """One scrape: histogram totals and counter values by metric family and label set."""

    scraped_at: float
    histograms: Mapping[str, Mapping[LabelSet, HistogramTotals]] = field(default_factory=dict)
    counters: Mapping[str, Mapping[LabelSet, float]] = field(default_factory=dict)
    buckets: Mapping[str, Mapping[LabelSet, Buckets]] = field(default_factory=dict)
    """Each histogram's cumulative buckets by label set (the `le` label taken out)."""

    def exports(self, name: str) -> bool:
        """Whether the server exported this metric family in this scrape."""
        return name in self.histograms or name in self.counters

    def histogram(self, name: str, model_name: str | None = None) -> HistogramTotals | None:
        """Totals of a histogram over all its label sets (only model_name's when given)."""
        series = self.histograms.get(name)
        if not series:
            return None
        count = total = 0.0
        found = False
        for labels, totals in series.items():
            if model_name is not None and dict(labels).get("model_name", model_name) != model_name:
                continue
            count += totals.count
            total += totals.sum
            found = True
        return HistogramTotals(count, total) if found else None

    def counter(self, name: str, **label_filter: str) -> dict[LabelSet, float]:
        """A counter's values by label set, keeping the sets that match every given label."""
        series = self.counters.get(name, {})
        return {
            labels: value
            for labels, value in series.items()
            if all(dict(labels).get(key) == wanted for key, wanted in label_filter.items())
        }


class ScrapeError(Exception):
    """The metrics endpoint could not be read or parsed."""


def _families(text: str, wanted: Collection[str] | None) -> list[Family]:
    """The text's families: the fast reader, else prometheus_client's parser (the reference)."""
    try:
        return list(read_families(text, wanted))
    except Unreadable:
        pass
    # Imported here: the console draws its first frame before anything is scraped.
    from prometheus_client.parser import text_string_to_metric_families

    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise ScrapeError(
            f"metrics text does not parse as Prometheus exposition: {error}"
        ) from error
    return [
        Family(
            family.name,
            family.type,
            [(sample.name, dict(sample.labels), float(sample.value)) for sample in family.samples],
        )
        for family in parsed
        if wanted is None or family.name in wanted
    ]


def parse_metrics(
    text: str, scraped_at: float = 0.0, *, families: Collection[str] | None = None
) -> ServerMetrics:
    """Parse Prometheus text exposition into histogram totals, buckets and counters.

    families, when given, names the only metric families kept (the others are skipped unread).
    """
    histograms: dict[str, dict[LabelSet, dict[str, float]]] = {}
    counters: dict[str, dict[LabelSet, float]] = {}
    buckets: dict[str, dict[LabelSet, list[tuple[float, float]]]] = {}
    for family in _families(text, families):
        if family.type in ("histogram", "summary", "gaugehistogram"):
            series = histograms.setdefault(family.name, {})
            for sample_name, sample_labels, value in family.samples:
                suffix = sample_name[len(family.name) :]
                if suffix == "_bucket" and "le" in sample_labels:
                    labels = tuple(sorted((k, v) for k, v in sample_labels.items() if k != "le"))
                    buckets.setdefault(family.name, {}).setdefault(labels, []).append(
                        (float(sample_labels["le"]), value)
                    )
                    continue
                if suffix not in ("_count", "_sum"):
                    continue
                labels = tuple(sorted(sample_labels.items()))
                series.setdefault(labels, {})[suffix] = value
        elif family.type in ("counter", "gauge", "untyped", "unknown"):
            if family.name.endswith("_created"):
                continue  # prometheus_client's creation timestamps, not counts
            values = counters.setdefault(family.name, {})
            for sample_name, sample_labels, value in family.samples:
                if sample_name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample_labels.items()))
                values[labels] = values.get(labels, 0.0) + value
    return ServerMetrics(
        scraped_at=scraped_at,
        histograms={
            name: {
                labels: HistogramTotals(parts.get("_count", 0.0), parts.get("_sum", 0.0))
                for labels, parts in series.items()
            }
            for name, series in histograms.items()
        },
        counters=counters,
        buckets={
            name: {labels: tuple(sorted(pairs)) for labels, pairs in series.items()}
            for name, series in buckets.items()
        },
    )


def metrics_url(rest_base_url: str, path: str | None) -> str:
    """The metrics URL from a REST base URL and the configured path (TF Serving's default)."""
    path = path or DEFAULT_METRICS_PATH
    return rest_base_url.rstrip("/") + "/" + path.lstrip("/")
