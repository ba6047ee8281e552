"""core.metrics.stats: HDR latency summaries, the sliding window, deltas across processes."""

from __future__ import annotations

import dataclasses
import math
import pickle
import random
import threading

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from core.metrics.latency import (
    HIGHEST_TRACKABLE_US,
    LatencyRecorder,
    bucket_indexes,
    bucket_values_us,
    pack_latencies,
)
from core.metrics.load import LoadRecorder
from core.metrics.stats import StatsCollector, StatsSnapshot


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _reference(latencies_us: list[int]) -> HdrHistogram:
    histogram = HdrHistogram(1, HIGHEST_TRACKABLE_US, 3)
    for value in latencies_us:
        histogram.record_value(value)
    return histogram


def test_bucket_values_match_hdrhistogram_for_every_index() -> None:
    histogram = HdrHistogram(1, HIGHEST_TRACKABLE_US, 3)
    highest, median = bucket_values_us()
    assert len(highest) == histogram.counts_len
    for index in range(0, histogram.counts_len, 7):
        value = histogram.get_value_from_index(index)
        top = histogram.get_highest_equivalent_value(value)
        bottom = histogram.get_lowest_equivalent_value(value)
        assert highest[index] == top
        assert median[index] == bottom + ((top - bottom + 1) >> 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_matches_hdrhistogram(seed: int) -> None:
    rng = random.Random(seed)
    # Heavy-tailed, from microseconds to minutes, so every bucket size is exercised.
    latencies_us = [
        max(1, int(rng.lognormvariate(9, 3))) % HIGHEST_TRACKABLE_US for _ in range(3000)
    ]
    recorder = LatencyRecorder()
    for value in latencies_us:
        recorder.record(value / 1e6)
    reference = _reference(latencies_us)
    expected = reference.get_percentile_to_value_dict([50, 90, 95, 99, 99.9])
    summary = recorder.summary()
    assert summary.count == 3000
    assert summary.p50_ms == expected[50] / 1000
    assert summary.p90_ms == expected[90] / 1000
    assert summary.p95_ms == expected[95] / 1000
    assert summary.p99_ms == expected[99] / 1000
    assert summary.p999_ms == expected[99.9] / 1000
    assert summary.max_ms == reference.get_max_value() / 1000
    assert summary.mean_ms == pytest.approx(reference.get_mean_value() / 1000, rel=1e-9)
    # And the figures are close to the exact ones (3 significant digits).
    exact = sorted(latencies_us)
    assert summary.p50_ms == pytest.approx(exact[1499] / 1000, rel=2e-3)


def test_empty_summary_is_zero() -> None:
    summary = LatencyRecorder().summary()
    assert summary.count == 0
    assert summary.p99_ms == 0.0 and summary.max_ms == 0.0 and summary.mean_ms == 0.0


def test_record_clamps_huge_and_rejects_negative_latencies() -> None:
    recorder = LatencyRecorder()
    recorder.record(7200.0)  # two hours: beyond the histogram, kept as its top value
    recorder.record(0.0)
    assert recorder.count == 2
    assert recorder.summary().max_ms == pytest.approx(HIGHEST_TRACKABLE_US / 1000, rel=1e-3)
    with pytest.raises(ValueError, match=r"latency_s: expected a duration >= 0 seconds, got -0.5"):
        recorder.record(-0.5)
    with pytest.raises(ValueError, match="nan"):
        recorder.record(math.nan)


def test_encode_decode_add_round_trip() -> None:
    first, second = LatencyRecorder(), LatencyRecorder()
    for ms in range(1, 101):
        first.record(ms / 1000)
    second.record(5.0, count=10)
    decoded = LatencyRecorder.decode(first.encode())
    assert decoded.summary() == first.summary()
    decoded.add(LatencyRecorder.decode(second.encode().decode("ascii")))
    assert decoded.count == 110
    assert decoded.summary().max_ms == pytest.approx(5000, rel=1e-3)
    assert first.count == 100  # add() does not touch the source


@pytest.mark.parametrize("seed", [0, 1])
def test_pack_unpack_round_trip_keeps_counts_min_max_and_merges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    recorder = LatencyRecorder()
    for latency_s in rng.lognormal(-6, 1.5, 2000):
        recorder.record(float(latency_s))
    unpacked = LatencyRecorder.unpack(recorder.pack())
    assert np.array_equal(unpacked.counts(), recorder.counts())
    assert unpacked.count == recorder.count == 2000
    assert unpacked.summary() == recorder.summary()
    # hdrh's own min/max/total follow, so encode() and add() see the same histogram.
    assert LatencyRecorder.decode(unpacked.encode()).summary() == recorder.summary()
    unpacked.add(recorder)
    assert unpacked.count == 4000 and unpacked.summary().max_ms == recorder.summary().max_ms
    empty = LatencyRecorder.unpack(LatencyRecorder().pack())
    assert empty.count == 0 and empty.summary().p99_ms == 0.0
    with pytest.raises(ValueError, match=r"expected LatencyRecorder\.pack"):
        LatencyRecorder.unpack(recorder.pack()[:-1])
    with pytest.raises(ValueError, match=r"expected LatencyRecorder\.pack"):
        LatencyRecorder.unpack(recorder.encode())


def test_bulk_binning_matches_hdrhistogram_value_by_value() -> None:
    template = HdrHistogram(1, HIGHEST_TRACKABLE_US, 3)
    edges = [v for k in range(1, 33) for v in (2**k - 1, 2**k, 2**k + 1)]
    rng = np.random.default_rng(7)
    values = [0, 1, 2047, 2048, HIGHEST_TRACKABLE_US, *edges]
    values += [int(v) for v in rng.integers(0, HIGHEST_TRACKABLE_US, 5000)]
    values = [v for v in values if v <= HIGHEST_TRACKABLE_US]
    expected = [template._counts_index_for(v) for v in values]
    assert bucket_indexes(np.array(values)).tolist() == expected
    # pack_latencies() packs exactly what record() one by one then pack() would.
    latencies_s = [0.0, 1e-7, 5e-7, 1.5e-6, 0.0123456, 3.0, 4000.0, *rng.lognormal(-6, 2, 3000)]
    recorder = LatencyRecorder()
    for latency_s in latencies_s:
        recorder.record(float(latency_s))
    assert pack_latencies(latencies_s) == recorder.pack()
    assert pack_latencies([]) == LatencyRecorder().pack()
    with pytest.raises(ValueError, match="expected durations >= 0"):
        pack_latencies([0.1, float("nan")])


def test_decode_converts_a_histogram_with_another_layout() -> None:
    other = HdrHistogram(1, 60_000_000, 2)
    for value in (100, 2_000, 30_000):
        other.record_value(value)
    recorder = LatencyRecorder.decode(other.encode())
    assert recorder.count == 3
    assert recorder.summary().max_ms == pytest.approx(30, rel=1e-2)


def test_decode_rejects_garbage_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected HdrHistogram's base64 V2 format"):
        LatencyRecorder.decode(b"not a histogram")


def test_window_latency_qps_and_history() -> None:
    clock = FakeClock(1000.0)
    stats = StatsCollector(window_s=10, history_s=5, clock=clock)
    for second in range(3):
        for tenth in range(10):
            clock.now = 1000.0 + second + tenth / 10
            stats.record(0.010 * (second + 1))
    clock.now = 1003.5
    snapshot = stats.snapshot()
    assert snapshot.requests_total == 30
    assert snapshot.latency.count == 30
    assert snapshot.qps == pytest.approx(30 / 3.5)  # the collector is younger than the window
    assert snapshot.qps_history == (10.0, 10.0, 10.0)  # the partial second 1003 is not shown
    assert snapshot.latency.p50_ms == pytest.approx(20, rel=1e-3)
    assert snapshot.latency.max_ms == pytest.approx(30, rel=1e-3)

    # 12 s later the window has moved past every request; the cumulative figures keep them.
    clock.now = 1015.5
    later = stats.snapshot()
    assert later.latency.count == 0
    assert later.qps == 0.0
    assert later.success_rate is None
    assert later.latency_total.count == 30
    assert later.latency_total.p50_ms == pytest.approx(20, rel=1e-3)
    assert later.qps_history == (0.0,) * 5  # history_s bounds it


def test_qps_in_steady_state_counts_the_whole_window() -> None:
    clock = FakeClock(500.0)
    stats = StatsCollector(window_s=4, clock=clock)
    for step in range(2000):  # 100 req/s for 20 s
        clock.now = 500.0 + step / 100
        stats.record(0.001)
    clock.now = 520.25
    snapshot = stats.snapshot()
    # The window is the 4 full seconds 516-519 plus 0.25 s of the current one.
    assert snapshot.qps == pytest.approx(400 / 4.25)
    assert snapshot.latency.count == 400
    assert snapshot.qps_history[-3:] == (100.0, 100.0, 100.0)
    assert len(snapshot.qps_history) == 20


def test_qps_right_after_start_is_not_inflated() -> None:
    clock = FakeClock(10.0)
    stats = StatsCollector(clock=clock)
    clock.now = 10.01
    stats.record(0.001)
    assert stats.snapshot().qps == 1.0


def test_codes_versions_success_rate_and_in_flight() -> None:
    clock = FakeClock()
    stats = StatsCollector(window_s=2, clock=clock)
    for _ in range(3):
        stats.request_started()
    stats.request_finished(0.002, "OK", served_version=1)
    stats.request_finished(0.002, "OK", served_version=2)
    stats.record(0.5, "DEADLINE_EXCEEDED")
    stats.record(0.001, "UNAVAILABLE")
    snapshot = stats.snapshot()
    assert snapshot.in_flight == 1
    assert snapshot.requests_total == 4 and snapshot.ok_total == 2
    assert snapshot.errors_by_code == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 1}
    assert snapshot.window_errors_by_code == snapshot.errors_by_code
    assert snapshot.versions == {1: 1, 2: 1}
    assert snapshot.success_rate == 0.5
    assert snapshot.latency.max_ms == pytest.approx(500, rel=1e-3)  # failed requests count too

    clock.now += 10
    stats.record(0.002, "OK", served_version=2)
    later = stats.snapshot()
    assert later.success_rate == 1.0
    assert later.window_versions == {2: 1} and later.window_errors_by_code == {}
    assert later.versions == {1: 1, 2: 2}


def test_in_flight_never_goes_negative() -> None:
    stats = StatsCollector(clock=FakeClock())
    stats.request_finished(0.001)
    assert stats.snapshot().in_flight == 0


def test_batches_are_windowed_and_totalled() -> None:
    clock = FakeClock()
    stats = StatsCollector(window_s=3, clock=clock)
    assert stats.snapshot().batch_size_mean is None
    stats.record_batch(32, 32)
    stats.record_batch(16, 32)
    snapshot = stats.snapshot()
    assert snapshot.batches_total == 2
    assert snapshot.batch_size_mean == 24.0
    assert snapshot.batch_fill_ratio == 0.75
    assert snapshot.batch_max_size == 32
    clock.now += 10
    stats.record_batch(8, 64)
    later = stats.snapshot()
    assert later.batch_size_mean == 8.0 and later.batch_fill_ratio == 0.125
    assert later.batch_max_size == 64
    assert later.batch_size_mean_total == pytest.approx(56 / 3)
    assert later.batch_fill_ratio_total == pytest.approx(56 / 128)
    with pytest.raises(ValueError, match="max_size >= 1"):
        stats.record_batch(1, 0)


def test_memory_stays_bounded_over_a_long_run() -> None:
    clock = FakeClock(0.0)
    stats = StatsCollector(window_s=5, history_s=30, clock=clock)
    for second in range(400):
        clock.now = second + 0.5
        stats.record(0.001)
        stats.record_batch(1, 2)
    clock.now = 400.0
    snapshot = stats.snapshot()
    assert len(stats._closed) <= 6  # only the seconds still inside the window keep histograms
    assert len(snapshot.qps_history) == 30
    assert snapshot.latency.count == 5
    assert snapshot.latency_total.count == 400


def test_closed_seconds_keep_only_their_filled_buckets_and_sum_like_one_histogram() -> None:
    clock = FakeClock(0.0)
    stats = StatsCollector(window_s=10, clock=clock)
    rng = random.Random(7)
    everything, window = LatencyRecorder(), LatencyRecorder()
    for second in range(30):
        clock.now = second + 0.5
        for _ in range(200):
            latency_s = rng.lognormvariate(-6, 1.2)
            stats.record(latency_s)
            everything.record(latency_s)
            if second >= 19:  # the 10 s window: 10 whole seconds before the current one
                window.record(latency_s)
    snapshot = stats.snapshot()
    # The current second has a full histogram (184 KiB); each closed one only what it filled.
    full_bytes = everything.counts().nbytes
    for closed in stats._closed:
        assert closed.latency is None and closed.closed_latency is not None
        assert sum(part.nbytes for part in closed.closed_latency) < full_bytes / 20
    assert snapshot.latency == window.summary()
    assert snapshot.latency_total == everything.summary()


def test_long_idle_gap_is_cheap_and_bounded() -> None:
    clock = FakeClock(0.0)
    stats = StatsCollector(history_s=60, clock=clock)
    stats.record(0.001)
    clock.now = 10**9  # decades later
    snapshot = stats.snapshot()
    assert snapshot.qps_history == (0.0,) * 60
    assert snapshot.latency_total.count == 1


def test_clock_stepping_back_stays_in_the_current_second() -> None:
    clock = FakeClock(100.7)
    stats = StatsCollector(clock=clock)
    stats.record(0.001)
    clock.now = 99.2
    stats.record(0.001)
    assert stats.snapshot().requests_total == 2


def test_snapshot_is_immutable_and_detached() -> None:
    stats = StatsCollector(clock=FakeClock())
    stats.record(0.001, "UNAVAILABLE", served_version=3)
    snapshot = stats.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.qps = 1.0  # type: ignore[misc]
    snapshot.errors_by_code["UNAVAILABLE"] = 99
    snapshot.versions[3] = 99
    again = stats.snapshot()
    assert again.errors_by_code == {"UNAVAILABLE": 1} and again.versions == {3: 1}
    assert isinstance(again, StatsSnapshot)


def test_rejects_a_window_below_one_second() -> None:
    with pytest.raises(ValueError, match=r"window_s: expected at least 1 second, got 0.5"):
        StatsCollector(window_s=0.5)


def test_deltas_from_workers_merge_into_a_parent() -> None:
    clock = FakeClock()
    workers = [LoadRecorder(worker=index) for index in range(2)]
    parent = StatsCollector(clock=clock)
    for latency_s, code, version, worker in (
        (0.001, "OK", 1, workers[0]),
        (0.003, "UNAVAILABLE", None, workers[0]),
        (0.100, "OK", 2, workers[1]),
    ):
        worker.sent(0.0, 0.0)
        worker.finished(0.0, 0.0, latency_s, code, served_version=version)
    workers[1].batch_sent(3)
    for worker in workers:
        parent.merge_delta(pickle.loads(pickle.dumps(worker.take_delta())), batch_max_size=4)
    snapshot = parent.snapshot()
    assert snapshot.requests_total == 3 and snapshot.ok_total == 2
    assert snapshot.errors_by_code == {"UNAVAILABLE": 1}
    assert snapshot.versions == {1: 1, 2: 1}
    assert snapshot.latency.count == 3
    assert snapshot.latency.max_ms == pytest.approx(100, rel=1e-3)
    assert snapshot.batch_fill_ratio == 0.75 and snapshot.batch_max_size == 4
    assert snapshot.qps_history == ()

    # A second delta carries only what happened since the first, across a second boundary.
    clock.now += 2.5
    workers[0].sent(0.0, 0.0)
    workers[0].finished(0.0, 0.0, 0.002, "OK", served_version=1)
    delta = workers[0].take_delta()
    assert delta.finished == 1 and delta.ok == 1 and delta.errors == {}
    assert delta.versions == {1: 1}
    assert LatencyRecorder.unpack(delta.corrected).summary().max_ms == pytest.approx(2, rel=1e-3)
    empty = workers[0].take_delta()
    assert empty.finished == 0 and LatencyRecorder.unpack(empty.corrected).count == 0
    assert empty.corrected  # an empty histogram still packs to bytes: not a failure notice


def test_concurrent_recording_from_threads_loses_nothing() -> None:
    stats = StatsCollector()
    barrier = threading.Barrier(4)

    def record_many() -> None:
        barrier.wait()
        for _ in range(2000):
            stats.request_started()
            stats.request_finished(0.001)
            stats.snapshot() if random.random() < 0.002 else None

    threads = [threading.Thread(target=record_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot.requests_total == 8000
    assert snapshot.latency_total.count == 8000
    assert snapshot.in_flight == 0


def test_from_counts_keeps_max_and_total() -> None:
    counts = np.zeros_like(bucket_values_us()[0], dtype=np.uint64)
    counts[10] = 4
    counts[2000] = 1
    recorder = LatencyRecorder.from_counts(counts)
    assert recorder.count == 5
    assert recorder.summary().max_ms == bucket_values_us()[0][2000] / 1000
    assert LatencyRecorder.decode(recorder.encode()).summary() == recorder.summary()


def test_an_idle_collectors_snapshot_is_reused_until_anything_changes() -> None:
    clock = FakeClock(1000.2)
    stats = StatsCollector(window_s=2, clock=clock)
    stats.record(0.010)
    clock.now = 1003.5  # the request has left the window: nothing left that decays with time
    first = stats.snapshot()
    assert first.qps == 0.0 and first.requests_total == 1
    clock.now = 1003.7
    again = stats.snapshot()
    # The same figures, summed once: the histograms' summary is the very same object.
    assert again.taken_at == 1003.7 and again.latency_total is first.latency_total
    assert dataclasses.replace(again, taken_at=0) == dataclasses.replace(first, taken_at=0)
    # Every kind of change is seen at once.
    stats.request_started()
    assert stats.snapshot().in_flight == 1
    stats.request_finished(0.020)
    after = stats.snapshot()
    assert after.requests_total == 2 and after.qps > 0 and after.in_flight == 0
    clock.now = 1007.0
    stats.record_batch(3, 8)
    assert stats.snapshot().batches_total == 1
    clock.now = 1010.0
    quiet = stats.snapshot()
    clock.now = 1011.0  # a new second: the QPS history grows by an idle second
    assert len(stats.snapshot().qps_history) == len(quiet.qps_history) + 1


def test_a_busy_collectors_snapshot_follows_the_clock_within_a_second() -> None:
    clock = FakeClock(1000.0)
    stats = StatsCollector(window_s=2, clock=clock)
    clock.now = 1002.1
    stats.record(0.010)
    clock.now = 1002.2
    first = stats.snapshot()
    clock.now = 1002.9
    # No new record, but the window's span grew: the rate is computed again, not reused.
    assert stats.snapshot().qps < first.qps
