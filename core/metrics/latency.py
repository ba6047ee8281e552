"""HDR latency histograms: ``LatencyRecorder`` and the ``LatencySummary`` it reports.

Latencies are recorded in microseconds (1 µs to 1 h, 3 significant digits) in one layout that
every recorder shares, so counts arrays add bucket by bucket and histograms merge across
processes with ``encode()``, ``decode()`` and ``add()``. core.metrics.stats builds its sliding
window and cumulative latency on these.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = [
    "EMPTY_LATENCY",
    "HIGHEST_TRACKABLE_US",
    "LOWEST_TRACKABLE_US",
    "SIGNIFICANT_FIGURES",
    "LatencyRecorder",
    "LatencySummary",
    "bucket_indexes",
    "pack_latencies",
]

LOWEST_TRACKABLE_US = 1
HIGHEST_TRACKABLE_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles, max and mean in milliseconds; all 0.0 when count is 0."""

    count: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float


EMPTY_LATENCY = LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _new_histogram() -> HdrHistogram:
    """An empty histogram with the layout every recorder here shares."""
    return HdrHistogram(LOWEST_TRACKABLE_US, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES)


@functools.cache
def bucket_values_us() -> tuple[np.ndarray, np.ndarray]:
    """Per counts-array index: the highest and the median value of that bucket, in µs.

    Mirrors hdrhistogram's get_value_from_index / get_highest_equivalent_value so percentiles
    and means come from numpy in microseconds instead of a Python loop over 23,552 buckets.
    """
    template = _new_histogram()
    index = np.arange(template.counts_len, dtype=np.int64)
    bucket = (index >> template.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (template.sub_bucket_half_count - 1)) + template.sub_bucket_half_count
    below_first = bucket < 0
    sub_bucket = np.where(below_first, sub_bucket - template.sub_bucket_half_count, sub_bucket)
    bucket = np.where(below_first, 0, bucket)
    lowest = sub_bucket << (bucket + template.unit_magnitude)
    bucket_width = np.left_shift(np.int64(1), bucket + template.unit_magnitude)
    highest = lowest + bucket_width - 1
    median = lowest + (bucket_width >> 1)
    return highest, median.astype(np.float64)


@functools.cache
def _layout() -> tuple[int, int, int, int]:
    """(unit_magnitude, sub_bucket_half_count_magnitude, sub_bucket_half_count, sub_bucket_mask)."""
    template = _new_histogram()
    return (
        template.unit_magnitude,
        template.sub_bucket_half_count_magnitude,
        template.sub_bucket_half_count,
        template.sub_bucket_mask,
    )


def bucket_indexes(values_us: np.ndarray) -> np.ndarray:
    """The counts-array index of each value (whole µs within range), as hdrhistogram's
    _counts_index_for computes it one value at a time."""
    unit_magnitude, half_magnitude, half_count, mask = _layout()
    values = values_us.astype(np.int64)
    # The bit length of value | mask: frexp's exponent, exact for integers below 2**53.
    bit_length = np.frexp((values | mask).astype(np.float64))[1].astype(np.int64)
    bucket = bit_length - unit_magnitude - (half_magnitude + 1)
    sub_bucket = values >> (bucket + unit_magnitude)
    return ((bucket + 1) << half_magnitude) + (sub_bucket - half_count)


def pack_latencies(latencies_s: Sequence[float]) -> bytes:
    """Latencies in seconds (each >= 0) packed as LatencyRecorder.pack() packs a recorder holding
    them: a load worker keeps its latencies in lists and bins them once per delta, with numpy,
    instead of three HDR records in Python per request."""
    seconds = np.asarray(latencies_s, dtype=np.float64)
    if seconds.size and not seconds.min() >= 0.0:  # also catches NaN
        raise ValueError("pack_latencies: expected durations >= 0 seconds")
    values = np.minimum(np.rint(seconds * 1e6), HIGHEST_TRACKABLE_US)
    indexes, counts = np.unique(bucket_indexes(values), return_counts=True)
    return _packed(indexes, counts)


def _packed(indexes: np.ndarray, counts: np.ndarray) -> bytes:
    return (
        _PACK_MAGIC
        + len(indexes).to_bytes(4, "little")
        + indexes.astype("<u4").tobytes()
        + counts.astype("<u8").tobytes()
    )


def summarize_counts(counts: np.ndarray) -> LatencySummary:
    """Summarize a counts array in the shared layout (same percentile rule as hdrhistogram).

    Works on the non-zero buckets only: the same percentiles (a percentile's bucket is always
    one that holds values) without a full-size temporary per call. Arrays of 184 KiB made and
    freed at every panel refresh are what glibc kept as a fragmented heap.
    """
    filled = np.flatnonzero(counts)
    if filled.size == 0:
        return EMPTY_LATENCY
    filled_counts = counts[filled]
    cumulative = np.cumsum(filled_counts, dtype=np.uint64)
    total = int(cumulative[-1])
    highest_us, median_us = bucket_values_us()
    targets = [max(int(p * total / 100 + 0.5), 1) for p in (*_PERCENTILES, 100.0)]
    positions = np.searchsorted(cumulative, np.array(targets, dtype=np.uint64), side="left")
    p50, p90, p95, p99, p999, max_us = (float(highest_us[filled[i]]) / 1000.0 for i in positions)
    # einsum, not `@`: a BLAS dot wakes OpenBLAS's threads, milliseconds per call on a busy box.
    weights = filled_counts.astype(np.float64)
    mean_us = float(np.einsum("i,i->", weights, median_us[filled])) / total
    return LatencySummary(total, p50, p90, p95, p99, p999, max_us, mean_us / 1000.0)


# pack()'s first bytes: the format and its version.
_PACK_MAGIC = b"LRP1"


def _latency_us(latency_s: float) -> int:
    """A latency in seconds as whole microseconds within the histogram's range."""
    if not latency_s >= 0.0:  # also catches NaN
        raise ValueError(f"latency_s: expected a duration >= 0 seconds, got {latency_s!r}")
    return min(round(latency_s * 1e6), HIGHEST_TRACKABLE_US)


class LatencyRecorder:
    """An HDR latency histogram (µs, 1 µs to 1 h, 3 digits) that merges across processes."""

    def __init__(self) -> None:
        self._histogram = _new_histogram()
        self._counts: np.ndarray = np.ctypeslib.as_array(self._histogram.counts)

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> LatencyRecorder:
        """A recorder holding a counts array in the shared layout (e.g. a difference of two)."""
        recorder = cls()
        recorder._counts[:] = counts
        nonzero = np.flatnonzero(counts)
        if nonzero.size:
            recorder._histogram.set_internal_tacking_values(
                int(nonzero[0]), int(nonzero[-1]), int(counts.sum())
            )
        return recorder

    @classmethod
    def decode(cls, encoded: bytes | str) -> LatencyRecorder:
        """A recorder from ``encode()`` output (HdrHistogram's base64 V2 format)."""
        try:
            decoded = HdrHistogram.decode(encoded)
        except Exception as exc:  # hdrh raises TypeError, zlib.error and its own types
            raise ValueError(
                f"encoded latency histogram: expected HdrHistogram's base64 V2 format "
                f"(LatencyRecorder.encode()), got {len(encoded)} bytes that fail to decode: {exc}"
            ) from exc
        layout = (
            decoded.lowest_trackable_value,
            decoded.highest_trackable_value,
            decoded.significant_figures,
            decoded.word_size,
        )
        if layout == (LOWEST_TRACKABLE_US, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES, 8):
            # Ours (every load worker's): the decoded histogram is the recorder's, not copied
            # into a second 184 KiB one; a burst decodes a dozen of them a second.
            recorder = cls.__new__(cls)
            recorder._histogram = decoded
            recorder._counts = np.ctypeslib.as_array(decoded.counts)
            return recorder
        recorder = cls()
        # add() converts bucket by bucket when the sender used another layout.
        recorder._histogram.add(decoded)
        return recorder

    def encode(self) -> bytes:
        """This histogram in HdrHistogram's compressed base64 V2 format."""
        encoded: bytes = self._histogram.encode()
        return encoded

    def pack(self) -> bytes:
        """The non-empty buckets as raw arrays, for a pipe between processes of one run.

        Cheaper than ``encode()`` on both sides (no zlib, no base64, no Python varints): a load
        worker packs three histograms 4 times a second and the parent unpacks them. Never
        empty bytes, so a packed empty histogram is still truthy.
        """
        indexes = np.flatnonzero(self._counts)
        return _packed(indexes, self._counts[indexes])

    @classmethod
    def unpack(cls, packed: bytes) -> LatencyRecorder:
        """A recorder from ``pack()`` output."""
        size = int.from_bytes(packed[4:8], "little") if packed[:4] == _PACK_MAGIC else -1
        if size < 0 or len(packed) != 8 + 12 * size:
            raise ValueError(
                f"packed latency histogram: expected LatencyRecorder.pack() output, got "
                f"{len(packed)} bytes starting {packed[:8]!r}"
            )
        indexes = np.frombuffer(packed, "<u4", size, 8)
        if size and int(indexes.max()) >= len(bucket_values_us()[0]):
            raise ValueError("packed latency histogram: a bucket index past the shared layout")
        counts = np.zeros(len(bucket_values_us()[0]), dtype=np.int64)
        counts[indexes] = np.frombuffer(packed, "<u8", size, 8 + 4 * size)
        return cls.from_counts(counts)

    def record(self, latency_s: float, count: int = 1) -> None:
        """Record one latency (or ``count`` equal ones), in seconds."""
        self._histogram.record_value(_latency_us(latency_s), count)

    def add(self, other: LatencyRecorder) -> None:
        """Add every value recorded by ``other`` to this recorder."""
        self._histogram.add(other._histogram)

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return int(self._histogram.get_total_count())

    def counts(self) -> np.ndarray:
        """The bucket counts (a live view in the shared layout; do not modify)."""
        return self._counts

    def count_above(self, latency_s: float) -> int:
        """How many recorded latencies exceed latency_s (to the histogram's 3 digits)."""
        _, median_us = bucket_values_us()
        return int(self._counts[median_us > latency_s * 1e6].sum())

    def percentile_distribution(self, unit_scaling: float = 1000.0) -> str:
        """HdrHistogram's percentile distribution text (.hgrm); values in µs / unit_scaling."""
        import io

        buffer = io.BytesIO()
        self._histogram.output_percentile_distribution(buffer, unit_scaling)
        return buffer.getvalue().decode("ascii")

    def summary(self) -> LatencySummary:
        """Percentiles, max and mean of everything recorded."""
        return summarize_counts(self._counts)
