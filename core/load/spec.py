"""What a load run does: arrival schedules, the run's settings, and the `/burst` argument parser."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

LoadMode = Literal["open", "closed"]

SCHEDULE_HELP = (
    "const, poisson, ramp:A-B (A to B req/s over the run), steps:A,B,C (equal-length steps), "
    "spike:PEAK[@START[+LENGTH]] (--rate, then PEAK req/s from START s for LENGTH s)"
)


@dataclass(frozen=True)
class RateSegment:
    """A stretch of the run whose offered rate goes linearly from start_rps to end_rps."""

    start_s: float
    end_s: float
    start_rps: float
    end_rps: float

    @property
    def arrivals(self) -> float:
        """Expected number of sends in this segment."""
        return (self.start_rps + self.end_rps) / 2 * (self.end_s - self.start_s)

    def time_of(self, arrivals_into_segment: float) -> float:
        """The time at which the cumulative count since start_s reaches the given value."""
        if arrivals_into_segment <= 0:
            return self.start_s
        length = self.end_s - self.start_s
        slope_term = (self.end_rps - self.start_rps) / (2 * length) if length > 0 else 0.0
        # Solves start_rps*t + slope_term*t^2 = n in the form that stays exact for slope 0.
        discriminant = self.start_rps**2 + 4 * slope_term * arrivals_into_segment
        root = math.sqrt(max(discriminant, 0.0))
        denominator = self.start_rps + root
        if denominator <= 0:
            return self.end_s
        return self.start_s + 2 * arrivals_into_segment / denominator


@dataclass(frozen=True)
class Schedule:
    """An open-loop arrival schedule: a piecewise-linear offered rate, evenly or Poisson spaced."""

    name: str
    segments: tuple[RateSegment, ...]
    poisson: bool = False
    # A schedule whose last segment runs on until the request count is reached.
    open_ended: bool = False

    @property
    def mean_rps(self) -> float:
        """Offered rate averaged over the schedule's length."""
        total_s = self.segments[-1].end_s - self.segments[0].start_s
        if self.open_ended or total_s <= 0:
            return self.segments[-1].end_rps
        return sum(segment.arrivals for segment in self.segments) / total_s

    def rate_at(self, elapsed_s: float) -> float:
        """The offered rate at a moment of the run."""
        for segment in self.segments:
            if elapsed_s < segment.end_s or segment is self.segments[-1]:
                if segment.end_s <= segment.start_s:
                    return segment.end_rps
                fraction = min(
                    max((elapsed_s - segment.start_s) / (segment.end_s - segment.start_s), 0), 1
                )
                return segment.start_rps + (segment.end_rps - segment.start_rps) * fraction
        return 0.0

    def offsets(self, seed: int = 0) -> Iterator[float]:
        """Intended send times in seconds from the start, ascending, for the whole run."""
        rng = random.Random(seed)
        cumulative = rng.expovariate(1.0) if self.poisson else 0.0
        segment_base = 0.0
        for index, segment in enumerate(self.segments):
            last = index == len(self.segments) - 1
            segment_arrivals = math.inf if (last and self.open_ended) else segment.arrivals
            while cumulative - segment_base < segment_arrivals:
                if last and self.open_ended:
                    yield segment.start_s + (cumulative - segment_base) / segment.start_rps
                else:
                    yield segment.time_of(cumulative - segment_base)
                cumulative += rng.expovariate(1.0) if self.poisson else 1.0
            segment_base += segment_arrivals

    def end_of(self, requests: int | None, duration_s: float | None) -> float:
        """When the load phase is due to end: the duration, or the slot after the last request."""
        if duration_s is not None and requests is None:
            return duration_s
        assert requests is not None
        seconds_for_count = self._time_of_cumulative(float(requests))
        return seconds_for_count if duration_s is None else min(duration_s, seconds_for_count)

    def _time_of_cumulative(self, arrivals: float) -> float:
        base = 0.0
        for index, segment in enumerate(self.segments):
            last = index == len(self.segments) - 1
            if last and self.open_ended:
                return segment.start_s + (arrivals - base) / segment.start_rps
            if arrivals - base <= segment.arrivals:
                return segment.time_of(arrivals - base)
            base += segment.arrivals
        return self.segments[-1].end_s


def parse_schedule(text: str, rate: float | None, duration_s: float | None) -> Schedule:
    """A Schedule from --schedule's text, --rate and --duration; ValueError if they don't fit."""
    kind, _, argument = text.strip().partition(":")
    kind = kind.lower()
    if kind in ("const", "constant", "poisson"):
        if rate is None or rate <= 0:
            raise ValueError(f"--schedule {text}: needs --rate R with R > 0 (requests per second)")
        end = duration_s if duration_s is not None else math.inf
        segment = RateSegment(0.0, end, rate, rate)
        return Schedule(kind, (segment,), poisson=kind == "poisson", open_ended=duration_s is None)
    if duration_s is None:
        raise ValueError(
            f"--schedule {text}: a {kind} schedule needs --duration S to lay out its shape"
        )
    if kind == "ramp":
        low, high = _parse_rates(text, argument.split("-", 1) if "-" in argument else [argument], 2)
        return Schedule(text, (RateSegment(0.0, duration_s, low, high),))
    if kind == "steps":
        rates = _parse_rates(text, argument.split(","), None)
        step_s = duration_s / len(rates)
        segments = tuple(
            RateSegment(step_s * index, step_s * (index + 1), step_rate, step_rate)
            for index, step_rate in enumerate(rates)
        )
        return Schedule(text, segments)
    if kind == "spike":
        return _parse_spike(text, argument, rate, duration_s)
    raise ValueError(f"--schedule {text!r}: unknown schedule; expected one of {SCHEDULE_HELP}")


def _parse_rates(text: str, parts: list[str], expected: int | None) -> list[float]:
    try:
        rates = [float(part) for part in parts if part.strip()]
    except ValueError:
        rates = []
    if not rates or (expected is not None and len(rates) != expected) or min(rates) < 0:
        raise ValueError(f"--schedule {text!r}: expected {SCHEDULE_HELP}, with rates >= 0 req/s")
    if max(rates) <= 0:
        raise ValueError(f"--schedule {text!r}: at least one rate must be above 0 req/s")
    return rates


def _parse_spike(text: str, argument: str, rate: float | None, duration_s: float) -> Schedule:
    match = re.fullmatch(r"\s*([\d.]+)\s*(?:@\s*([\d.]+)s?\s*(?:\+\s*([\d.]+)s?)?)?\s*", argument)
    if match is None or rate is None or rate <= 0:
        raise ValueError(
            f"--schedule {text!r}: expected spike:PEAK[@START[+LENGTH]] "
            "with --rate R as the base rate"
        )
    peak = float(match.group(1))
    start = float(match.group(2)) if match.group(2) else duration_s * 0.4
    length = float(match.group(3)) if match.group(3) else duration_s * 0.2
    end = min(start + length, duration_s)
    if start >= duration_s or length <= 0:
        raise ValueError(
            f"--schedule {text!r}: the spike must start and end within --duration {duration_s:g}"
        )
    segments = [
        RateSegment(0.0, start, rate, rate),
        RateSegment(start, end, peak, peak),
        RateSegment(end, duration_s, rate, rate),
    ]
    return Schedule(text, tuple(segment for segment in segments if segment.end_s > segment.start_s))


@dataclass(frozen=True)
class LoadSpec:
    """The settings of one load run, shared by the console's burst form and `deepchat-tfs bench`."""

    mode: LoadMode = "open"
    rate: float | None = 100.0
    schedule: str = "const"
    concurrency: int | None = None
    duration_s: float | None = 10.0
    requests: int | None = None
    max_inflight: int | None = None
    batch_size: int | None = None
    batch_timeout_ms: float = 5.0
    workers: int = 1
    timeout_s: float = 10.0
    # Load at the run's rate before the measured window starts; measured apart, not reported in
    # the run's figures (0 = none).
    warmup_s: float = 0.0

    def check(self) -> LoadSpec:
        """Return self when the settings make a runnable load; ValueError naming the problem."""
        if self.mode == "open":
            parse_schedule(self.schedule, self.rate, self.duration_s)
        elif self.concurrency is None or self.concurrency < 1:
            raise ValueError(f"concurrency: expected an integer >= 1, got {self.concurrency}")
        if self.duration_s is None and self.requests is None:
            raise ValueError("a run needs a bound: give a duration (e.g. 30s) or a request count")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"duration: expected seconds > 0, got {self.duration_s:g}")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests: expected an integer >= 1, got {self.requests}")
        if self.workers < 1:
            raise ValueError(f"workers: expected an integer >= 1, got {self.workers}")
        if self.max_inflight is not None and self.max_inflight < self.workers:
            raise ValueError(
                f"max-inflight: expected at least one per worker (>= {self.workers}), "
                f"got {self.max_inflight}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch-size: expected an integer >= 1, got {self.batch_size}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout: expected seconds > 0, got {self.timeout_s:g}")
        if self.warmup_s < 0:
            raise ValueError(f"warmup: expected seconds >= 0, got {self.warmup_s:g}")
        return self

    def warmup_spec(self) -> LoadSpec | None:
        """The warm-up: the run's opening rate (or concurrency) for warmup_s; None if off."""
        if self.warmup_s <= 0:
            return None
        if self.mode == "closed":
            return replace(self, duration_s=self.warmup_s, requests=None, warmup_s=0.0)
        opening_rps = self.open_schedule().rate_at(0.0) or self.open_schedule().mean_rps
        schedule = "poisson" if self.schedule.strip().lower() == "poisson" else "const"
        return replace(
            self,
            rate=opening_rps,
            schedule=schedule,
            duration_s=self.warmup_s,
            requests=None,
            warmup_s=0.0,
        )

    def open_schedule(self) -> Schedule:
        """This run's arrival schedule (open loop only)."""
        return parse_schedule(self.schedule, self.rate, self.duration_s)

    def describe(self) -> str:
        """A short label such as '200 rps const 30s' or 'c=16 1000 req'."""
        load = (
            f"c={self.concurrency}"
            if self.mode == "closed"
            else f"{self.rate:g} rps {self.schedule}"
        )
        if self.mode == "open" and self.schedule.split(":")[0] in ("ramp", "steps"):
            load = self.schedule
        bounds = []
        if self.duration_s is not None:
            bounds.append(f"{self.duration_s:g}s")
        if self.requests is not None:
            bounds.append(f"{self.requests} req")
        extras = [f"batch={self.batch_size}"] if self.batch_size else []
        extras += [f"inflight<={self.max_inflight}"] if self.max_inflight else []
        extras += [f"workers={self.workers}"] if self.workers > 1 else []
        return " ".join([load, *bounds, *extras])


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|min)$")


def parse_duration(text: str) -> float:
    """Seconds from '30s', '1.5s', '500ms', '2m' or a bare number of seconds."""
    cleaned = text.strip().lower()
    match = _DURATION.match(cleaned)
    try:
        if match is None:
            value = float(cleaned)
            if value > 0:
                return value
        else:
            value, unit = float(match.group(1)), match.group(2)
            seconds = (
                value / 1000 if unit == "ms" else value * 60 if unit in ("m", "min") else value
            )
            if seconds > 0:
                return seconds
    except ValueError:
        pass
    raise ValueError(f"duration {text!r}: expected seconds > 0 such as 30s, 500ms or 2m")


BURST_HELP = (
    "/burst [RATErps | c=N] [DURATION | Nreq] [const|poisson|ramp:A-B|steps:A,B,C|spike:P] "
    "[batch=N] [inflight=N] [workers=N] [timeout=S]   e.g. /burst 200rps 30s, /burst c=16 10s"
)


def parse_burst_args(text: str, base: LoadSpec | None = None) -> LoadSpec:
    """Parse the `/burst` argument string (e.g. '200rps 30s', 'c=16 10s poisson') into a LoadSpec.

    Tokens come in any order. `c=N` alone runs N closed-loop requesters; with a rate or a
    schedule it caps an open-loop run at N requests in flight, as ghz's -c with --rps does.
    """
    spec = base or LoadSpec()
    concurrency: int | None = None
    open_loop_asked = False
    for token in text.split():
        lowered = token.lower()
        key, has_value, value = lowered.partition("=")
        try:
            if lowered.endswith(("rps", "qps")):
                spec, open_loop_asked = replace(spec, rate=_positive(lowered[:-3], token)), True
            elif key in ("rate", "r") and has_value:
                spec, open_loop_asked = replace(spec, rate=_positive(value, token)), True
            elif key in ("c", "concurrency") and has_value:
                concurrency = int(value)
            elif lowered.endswith("req") or (key in ("n", "requests") and has_value):
                count = value if has_value else lowered.removesuffix("req")
                spec = replace(spec, requests=int(count), duration_s=None)
            elif key in ("batch", "batch-size") and has_value:
                spec = replace(spec, batch_size=int(value) if int(value) > 1 else None)
            elif key in ("batch-timeout", "batch-timeout-ms") and has_value:
                spec = replace(spec, batch_timeout_ms=float(value))
            elif key in ("inflight", "max-inflight") and has_value:
                spec = replace(spec, max_inflight=int(value))
            elif key == "workers" and has_value:
                spec = replace(spec, workers=int(value))
            elif key == "timeout" and has_value:
                spec = replace(spec, timeout_s=parse_duration(value))
            elif key.split(":")[0] in ("const", "constant", "poisson", "ramp", "steps", "spike"):
                spec, open_loop_asked = replace(spec, schedule=token), True
            elif _DURATION.match(lowered):
                spec = replace(spec, duration_s=parse_duration(lowered))
            else:
                raise ValueError("not understood")
        except ValueError as error:
            raise ValueError(f"/burst {text}: {token!r}: {error}; usage: {BURST_HELP}") from None
    if concurrency is not None and not open_loop_asked:
        spec = replace(spec, mode="closed", concurrency=concurrency, rate=None)
    elif concurrency is not None:
        spec = replace(spec, mode="open", max_inflight=concurrency)
    elif open_loop_asked:
        spec = replace(spec, mode="open")
    if spec.mode == "open" and spec.rate is None:
        spec = replace(spec, rate=100.0)
    try:
        return spec.check()
    except ValueError as error:
        raise ValueError(f"/burst {text}: {error}; usage: {BURST_HELP}") from None


def _positive(text: str, token: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"expected a rate above 0 in {token!r}")
    return value
