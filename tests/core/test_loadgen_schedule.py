"""Arrival schedules, LoadSpec checks and the `/burst` argument parser (core.load.spec)."""

from __future__ import annotations

import itertools
import statistics

import pytest

from core.load.spec import LoadSpec, parse_burst_args, parse_duration, parse_schedule


def sends_per_second(offsets: list[float], seconds: int) -> list[int]:
    return [sum(1 for offset in offsets if s <= offset < s + 1) for s in range(seconds)]


def test_constant_schedule_sends_rate_times_duration_evenly_spaced() -> None:
    offsets = list(parse_schedule("const", 200, 2.0).offsets())
    assert len(offsets) == 400
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.005}
    assert offsets[0] == 0.0 and offsets[-1] < 2.0


def test_constant_schedule_without_duration_runs_on_until_the_count() -> None:
    schedule = parse_schedule("const", 1000, None)
    assert list(itertools.islice(schedule.offsets(), 3)) == [0.0, 0.001, 0.002]
    assert schedule.end_of(50, None) == pytest.approx(0.05)


def test_poisson_schedule_has_exponential_gaps_with_the_asked_mean() -> None:
    offsets = list(parse_schedule("poisson", 1000, 5.0).offsets(seed=7))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert len(offsets) == pytest.approx(5000, rel=0.05)
    assert statistics.fmean(gaps) == pytest.approx(0.001, rel=0.05)
    # Exponential gaps: the standard deviation equals the mean (constant gaps would have 0).
    assert statistics.pstdev(gaps) == pytest.approx(0.001, rel=0.1)
    assert offsets == list(parse_schedule("poisson", 1000, 5.0).offsets(seed=7))


def test_ramp_rises_linearly_and_averages_the_two_rates() -> None:
    schedule = parse_schedule("ramp:0-100", None, 10.0)
    offsets = list(schedule.offsets())
    assert len(offsets) == 500
    assert schedule.mean_rps == pytest.approx(50)
    first_half = sum(1 for offset in offsets if offset < 5.0)
    assert first_half == pytest.approx(125, abs=2)  # area under 0 -> 50 req/s over 5 s
    assert schedule.rate_at(2.5) == pytest.approx(25)


def test_steps_hold_each_rate_for_an_equal_share_of_the_duration() -> None:
    offsets = list(parse_schedule("steps:10,0,40", None, 3.0).offsets())
    per_second = sends_per_second(offsets, 3)
    assert per_second == [10, 0, 40]


def test_spike_raises_the_rate_for_its_window_only() -> None:
    schedule = parse_schedule("spike:100@1+1", 10, 3.0)
    offsets = list(schedule.offsets())
    per_second = sends_per_second(offsets, 3)
    assert per_second == [10, 100, 10]
    assert schedule.rate_at(1.5) == 100 and schedule.rate_at(2.5) == 10


@pytest.mark.parametrize(
    ("text", "rate", "duration", "message"),
    [
        ("const", None, 1.0, "needs --rate"),
        ("ramp:10-20", None, None, "needs --duration"),
        ("ramp:10", None, 1.0, "ramp:A-B"),
        ("steps:a,b", None, 1.0, "steps:A,B,C"),
        ("spike:100@5", 10, 2.0, "within --duration"),
        ("sawtooth", 10, 1.0, "unknown schedule"),
    ],
)
def test_bad_schedules_say_what_is_expected(
    text: str, rate: float | None, duration: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text, rate, duration)


def test_load_spec_check_names_the_bad_setting() -> None:
    with pytest.raises(ValueError, match="needs a bound"):
        LoadSpec(duration_s=None, requests=None).check()
    with pytest.raises(ValueError, match="concurrency"):
        LoadSpec(mode="closed", concurrency=0).check()
    with pytest.raises(ValueError, match="max-inflight"):
        LoadSpec(workers=4, max_inflight=2).check()


def test_parse_duration_units() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration("1.5") == 1.5
    with pytest.raises(ValueError, match="expected seconds"):
        parse_duration("soon")


def test_burst_args_rate_and_duration() -> None:
    spec = parse_burst_args("200rps 30s")
    assert (spec.mode, spec.rate, spec.duration_s, spec.schedule) == ("open", 200, 30, "const")


def test_burst_args_concurrency_alone_is_a_closed_loop() -> None:
    spec = parse_burst_args("c=16 1000req")
    assert (spec.mode, spec.concurrency, spec.requests, spec.duration_s) == (
        "closed",
        16,
        1000,
        None,
    )


def test_burst_args_concurrency_with_a_schedule_caps_an_open_loop() -> None:
    spec = parse_burst_args("c=16 10s poisson")
    assert (spec.mode, spec.schedule, spec.max_inflight, spec.duration_s) == (
        "open",
        "poisson",
        16,
        10,
    )


def test_burst_args_batching_and_workers() -> None:
    spec = parse_burst_args("500rps 5s batch=32 batch-timeout-ms=2 workers=2 inflight=64")
    assert (spec.batch_size, spec.batch_timeout_ms, spec.workers, spec.max_inflight) == (
        32,
        2,
        2,
        64,
    )


def test_burst_args_errors_name_the_token_and_show_usage() -> None:
    with pytest.raises(ValueError, match=r"'fast'.*usage: /burst"):
        parse_burst_args("200rps fast")
    with pytest.raises(ValueError, match="rate above 0"):
        parse_burst_args("0rps 5s")


def test_describe_is_a_short_label() -> None:
    assert LoadSpec(rate=200, duration_s=30).describe() == "200 rps const 30s"
    closed = LoadSpec(mode="closed", concurrency=8, rate=None, duration_s=None, requests=100)
    assert closed.describe() == "c=8 100 req"
