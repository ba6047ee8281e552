"""TF Serving's Prometheus metrics, with its names, labels and bucket layouts.

TF Serving keeps TensorFlow monitoring Counters and Samplers and exports them with `/` replaced by
`:`, e.g. `/tensorflow/serving/request_count` as `:tensorflow:serving:request_count`. A scraper
written for tensorflow_model_server reads ours unchanged: counters have no `_total` suffix and no
`_created` series, histograms use TF Serving's exponential buckets, and a family appears once it
has a value, as TF Serving's exporter does.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# The Prometheus text format that generate_latest writes (TF Serving answers with the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
INPUT_BATCH_SIZE = ":tensorflow:serving:batching_session:input_batch_size"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
PADDING_SIZE = ":tensorflow:serving:batching_session:padding_size"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"


def exponential_buckets(scale: float, growth_factor: float, bucket_count: int) -> tuple[float, ...]:
    """Bucket upper bounds like TensorFlow's monitoring::Buckets::Exponential (+Inf is implied)."""
    return tuple(scale * growth_factor**index for index in range(bucket_count))


# TF Serving's layouts: latencies in microseconds from 10 us growing by 1.8 (~20 minutes), batch
# sizes 1..8192 in powers of two, queuing latency from 100 us growing by 1.2 (~1 second).
LATENCY_BUCKETS_US = exponential_buckets(10, 1.8, 33)
BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 14)
QUEUING_LATENCY_BUCKETS_US = exponential_buckets(100, 1.2, 52)


class _Sampler:
    """A TensorFlow monitoring Sampler: one fixed-bucket histogram per label combination."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label_names: Sequence[str],
        bucket_limits: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self.bucket_limits = tuple(bucket_limits)
        # label values -> (per-bucket counts, the last one for +Inf; sum of observed values)
        self._cells: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, label_values: tuple[str, ...], value: float) -> None:
        """Add one observation (the caller holds the lock)."""
        cell = self._cells.get(label_values)
        if cell is None:
            # Built once per label combination (setdefault would build it on every call).
            cell = self._cells[label_values] = ([0] * (len(self.bucket_limits) + 1), [0.0])
        counts, total = cell
        counts[bisect.bisect_left(self.bucket_limits, value)] += 1
        total[0] += value

    def family(self) -> HistogramMetricFamily | None:
        """The histogram family with cumulative buckets, or None before any observation."""
        if not self._cells:
            return None
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)
        bounds = [floatToGoString(limit) for limit in self.bucket_limits] + ["+Inf"]
        for label_values, (counts, total) in sorted(self._cells.items()):
            cumulative = 0
            buckets = []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric(list(label_values), buckets, sum_value=total[0])
        return family


class _Counter:
    """A TensorFlow monitoring Counter, exported without the `_total` suffix."""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}

    def increment(self, label_values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add to one label combination's count (the caller holds the lock)."""
        self._values[label_values] = self._values.get(label_values, 0.0) + amount

    def family(self) -> Metric | None:
        """A counter family whose samples carry the bare name, or None before any count."""
        if not self._values:
            return None
        family = Metric(self.name, self.documentation, "counter")
        for label_values, value in sorted(self._values.items()):
            labels = dict(zip(self.label_names, label_values, strict=True))
            family.add_sample(self.name, labels, value)
        return family


class _Families:
    """A prometheus_client collector over a fixed list of families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """The families, as generate_latest expects from a registry."""
        return iter(self._families)


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _bare_counter_text(family: Metric) -> str:
    """TF Serving's exposition of a counter: TYPE and samples under the bare name."""
    lines = [
        f"# HELP {family.name} {family.documentation}\n",
        f"# TYPE {family.name} counter\n",
    ]
    for sample in family.samples:
        labels = ",".join(
            f'{name}="{_escape_label_value(value)}"'
            for name, value in sorted(sample.labels.items())
        )
        label_text = f"{{{labels}}}" if labels else ""
        lines.append(f"{sample.name}{label_text} {floatToGoString(sample.value)}\n")
    return "".join(lines)


def render_registry(registry: CollectorRegistry) -> bytes:
    """Prometheus text for a registry; counters named without `_total` keep their bare name.

    generate_latest always writes a counter's TYPE line as NAME_total; TF Serving writes
    `# TYPE :tensorflow:serving:request_count counter`, so those families are written here.
    """
    families = list(registry.collect())
    bare_counters = [
        family
        for family in families
        if family.type == "counter"
        and not family.name.endswith("_total")
        and all(sample.name == family.name for sample in family.samples)
    ]
    others = [family for family in families if family not in bare_counters]
    counter_text = "".join(_bare_counter_text(family) for family in bare_counters)
    return counter_text.encode("utf-8") + generate_latest(_Families(others))


class ServerMetrics:
    """The model server's metrics under TF Serving's exported names."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # Batch threads, the gRPC server and the REST handlers record concurrently.
        self._lock = threading.Lock()
        self._request_count = _Counter(
            REQUEST_COUNT, "The total number of requests.", ("model_name", "status")
        )
        self._request_latency = _Sampler(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            LATENCY_BUCKETS_US,
        )
        self._runtime_latency = _Sampler(
            RUNTIME_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ("model_name", "API", "runtime"),
            LATENCY_BUCKETS_US,
        )
        self._input_batch_size = _Sampler(
            INPUT_BATCH_SIZE,
            "Tracks the batch size distribution on the inputs.",
            (),
            BATCH_SIZE_BUCKETS,
        )
        self._processed_batch_size = _Sampler(
            PROCESSED_BATCH_SIZE,
            "Tracks the batch size distribution on processing.",
            (),
            BATCH_SIZE_BUCKETS,
        )
        self._padding_size = _Sampler(
            PADDING_SIZE,
            "Tracks the padding size distribution on batches.",
            ("execution_batch_size",),
            BATCH_SIZE_BUCKETS,
        )
        self._queuing_latency = _Sampler(
            QUEUING_LATENCY,
            "Distribution of wall time spent (in microseconds) in queuing",
            ("thread_pool_name",),
            QUEUING_LATENCY_BUCKETS_US,
        )
        self.registry.register(self)

    def record_request(
        self,
        model_name: str,
        api: str,
        entrypoint: str,
        status: str,
        latency_us: float | None = None,
    ) -> None:
        """Count one request by status; its latency counts only when it succeeded, as in TF Serving.

        api is TF Serving's API label ("Predict", "Classify", "Regress", "MultiInference",
        "GetModelMetadata"), entrypoint "GRPC" or "REST", status a code name such as "OK".
        """
        with self._lock:
            self._request_count.increment((model_name, status))
            if status == "OK" and latency_us is not None:
                self._request_latency.observe((model_name, api, entrypoint), latency_us)

    def record_runtime(self, model_name: str, api: str, runtime: str, latency_us: float) -> None:
        """Record the wall time of one model run (runtime "TF1" for a session, as TF Serving)."""
        with self._lock:
            self._runtime_latency.observe((model_name, api, runtime), latency_us)

    def record_input_batch_size(self, size: int) -> None:
        """Record the number of rows one request brought to the batcher."""
        with self._lock:
            self._input_batch_size.observe((), size)

    def record_batch(self, processed_batch_size: int, padding_size: int) -> None:
        """Record one batch run: its size after padding and how many rows were padding."""
        with self._lock:
            self._processed_batch_size.observe((), processed_batch_size)
            self._padding_size.observe((str(processed_batch_size),), padding_size)

    def record_queuing_latency(self, thread_pool_name: str, latency_us: float) -> None:
        """Record how long one request waited in the batch queue before its batch ran."""
        with self._lock:
            self._queuing_latency.observe((thread_pool_name,), latency_us)

    def _metrics(self) -> tuple[_Counter | _Sampler, ...]:
        return (
            self._request_count,
            self._request_latency,
            self._runtime_latency,
            self._input_batch_size,
            self._processed_batch_size,
            self._padding_size,
            self._queuing_latency,
        )

    def describe(self) -> list[Metric]:
        """Empty families naming every metric, so a registry can refuse duplicates."""
        return [
            Metric(metric.name, metric.documentation, "counter")
            if isinstance(metric, _Counter)
            else HistogramMetricFamily(metric.name, metric.documentation, labels=metric.label_names)
            for metric in self._metrics()
        ]

    def collect(self) -> Iterator[Metric]:
        """The families that have values (prometheus_client's collector protocol)."""
        with self._lock:
            families = [metric.family() for metric in self._metrics()]
        return iter([family for family in families if family is not None])

    def render(self) -> tuple[bytes, str]:
        """The registry's metrics as Prometheus text, and the content type to serve them with."""
        return render_registry(self.registry), CONTENT_TYPE
