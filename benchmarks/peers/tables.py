"""bench_peers' Markdown: the goals, cost and ceiling, accuracy, the freeze, the headline."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from benchmarks.peers.runner import Run
from benchmarks.peers.tools import Figures

BENCH_GRPC = "deepchat-tfs bench (gRPC)"
BENCH_REST = "deepchat-tfs bench (REST)"
AIO_FLOOR = "bare grpc.aio loop (reference)"
COST_RATE = 1000  # the rate the goals compare CPU per request at
FREEZE_SHOWN_MS = 500.0  # p99 at least this long: the 1 s freeze shows

Ladder = Mapping[str, Sequence[tuple[int, Sequence[Run]]]]


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _figure(runs: Sequence[Run], name: str) -> float | None:
    return _median([getattr(run.figures, name) if run.figures else None for run in runs])


def cost_at(ladder: Ladder, peer: str, rate: int) -> float | None:
    """Median steady CPU µs per request of peer at rate, if it ran there."""
    for rung_rate, runs in ladder.get(peer, ()):
        if rung_rate == rate:
            return _median([run.steady_cpu_us_per_request for run in runs])
    return None


def ceiling(ladder: Ladder, peer: str, held_share: float) -> int | None:
    """The highest rung whose median answered rate is within 1 % of offered."""
    best = None
    for rate, runs in ladder.get(peer, ()):
        shares = [(run.steady_rps or 0.0) / rate for run in runs]
        if shares and statistics.median(shares) >= held_share:
            best = rate
    return best


def goals(ladder: Ladder, frozen: Mapping[str, Run]) -> str:
    """The issue's goals, each with the measured figures and whether it is met."""
    lines = ["### Goals", ""]
    bench, hey = cost_at(ladder, BENCH_GRPC, COST_RATE), cost_at(ladder, "hey", COST_RATE)
    if bench is not None and hey is not None:
        ratio = bench / hey
        lines.append(
            f"- bench over gRPC at most 2x hey's CPU per request over REST at {COST_RATE:,} "
            f"req/s: {bench:,.0f} vs {hey:,.0f} µs = {ratio:.1f}x, "
            f"**{'met' if ratio <= 2 else 'not met'}**."
        )
    python_peers = [
        name for name in ladder if name not in (BENCH_GRPC, BENCH_REST, AIO_FLOOR, "hey")
    ]
    if bench is not None:
        beaten = []
        for name in python_peers:
            other = cost_at(ladder, name, COST_RATE)
            if other is not None:
                beaten.append(f"{name} {other:,.0f} µs ({'ahead' if bench < other else 'behind'})")
        ahead = all(
            bench < (cost_at(ladder, name, COST_RATE) or float("inf")) for name in python_peers
        )
        lines.append(
            f"- bench over gRPC ahead of every Python peer in CPU per request at {COST_RATE:,} "
            f"req/s ({bench:,.0f} µs): {'; '.join(beaten)}; **{'met' if ahead else 'not met'}**."
        )
    rest = cost_at(ladder, BENCH_REST, COST_RATE)
    if rest is not None and hey is not None:
        lines.append(
            f"- bench over REST within 1.5x of hey: {rest:,.0f} vs {hey:,.0f} µs = "
            f"{rest / hey:.1f}x, **{'met' if rest / hey <= 1.5 else 'not met'}**."
        )
    else:
        lines.append("- bench over REST within 1.5x of hey: no figure (bench's REST run failed).")
    showing = [name for name, run in frozen.items() if _shows_freeze(run) and name != AIO_FLOOR]
    # A tool shows it over both APIs when its gRPC and its REST rows both do.
    families = {name.rsplit(" (", 1)[0] for name in showing if name.endswith(("(gRPC)", "(REST)"))}
    both = sorted(f for f in families if {f"{f} (gRPC)", f"{f} (REST)"} <= set(showing))
    lines.append(
        "- the only tool that shows a 1 s freeze in p99 over both APIs: shown by "
        f"{', '.join(showing) or 'none'}; over both APIs by {', '.join(both) or 'none'}; "
        f"**{'met' if both == ['deepchat-tfs bench'] else 'not met'}**."
    )
    return "\n".join(lines) + "\n"


def why(ladder: Ladder) -> str:
    """Where bench's CPU per request goes, from this run's figures and the profiles behind them."""
    bench, floor = cost_at(ladder, BENCH_GRPC, COST_RATE), cost_at(ladder, AIO_FLOOR, COST_RATE)
    rest, hey = cost_at(ladder, BENCH_REST, COST_RATE), cost_at(ladder, "hey", COST_RATE)
    lines = ["### Where bench's CPU goes", ""]
    if bench is not None and floor is not None:
        lines.append(
            f"- gRPC: bench {bench:,.0f} µs per request at {COST_RATE:,} req/s in this run; a bare "
            f"grpc.aio loop that only sends and times (the reference row, asyncio's loop, gRPC's "
            f"default EventEngine client) {floor:,.0f}. bench's load workers send Predict on "
            "their own HTTP/2 client (`core.load.http2`): each call is one write of a HEADERS "
            "frame of pre-encoded bytes (HPACK literals: path, authority, content-type, te, "
            "grpc-timeout, metadata) and a DATA frame of the pre-serialised request on an asyncio "
            "Protocol, settled by a future when the trailers arrive, with response header blocks "
            "decoded by `hpack` and remembered while the server's dynamic table stays as it was. "
            "grpc.aio hands each answer from gRPC core's poller thread to the event loop through "
            "a socket and runs a task per call: py-spy and perf on a worker showed that path "
            "(`UnaryUnaryCall._invoke`, cygrpc, the thread hand-offs: 27 % of the worker's "
            "samples in the kernel, 12 % in task switches) as most of its time. On the HTTP/2 "
            "client, py-spy on a worker at 1,000 req/s shows the one write per call (its "
            "sendmsg) in 28 % of the samples, the event loop's own C code (epoll, reads, timers) "
            "in 59 % and the client's Python (frames, futures, the response's parse) in under "
            "10 %; the worker took 77 µs of user and 30 µs of system CPU per request, the "
            "parent (merging the workers' histograms) 17. The workers keep "
            "deadlines (grpc-timeout and a 20 ms sweep that resets the stream), TLS and mTLS "
            "(ALPN h2), metadata and round robin over replicas; targets that are not HOST:PORT "
            "(unix sockets, ipv4: lists) and client-side batches still go through grpc.aio. Why "
            "not the `h2` library's state machine: driven in memory (no sockets), its client side "
            "(send_headers, send_data, receive_data) costs 111 µs of Python per unary call here, "
            "about as much as the whole of bench per request. A "
            "sync stub blocking in a thread (TF Serving's example) holds a thread per request in "
            "flight and cannot keep an open-loop schedule."
        )
    if rest is not None and hey is not None:
        lines.append(
            f"- REST: bench {rest:,.0f} µs per request against hey's {hey:,.0f}: each send "
            "writes a pre-built request on a keep-alive connection of an asyncio Protocol and "
            "reads the answer with httptools (llhttp, the parser uvicorn uses; "
            "`core.load.http1`), settled by a future and recorded by its done callback, with no "
            "task per request. It was about 260 µs on aiohttp's `ClientSession.post`; the "
            "generator's timer-callback sends and the workers' packed histograms took the rest "
            "down."
        )
    lines.append(
        "- Fixed here: the parent summarised latencies with a BLAS dot product, which left an "
        "OpenBLAS thread spinning after each of its 4 summaries a second: 276 µs per request "
        "of parent CPU at 1,000 req/s before, 26 µs after. Load workers run on uvloop where it "
        "is installed (not on Windows) and start with `GRPC_EXPERIMENTS=-event_engine_client` "
        "(gRPC core's older iomgr client path): bench's whole process tree at 1,000 req/s, "
        "median of 3 interleaved 6 s runs, went from 344-356 µs per request (asyncio, "
        "EventEngine) to 339-345 (uvloop alone), 301-313 (iomgr alone) and 261-285 (both). "
        "Tried and not kept: sending pre-serialised bytes past the ServingClient wrapper "
        "(1.7 µs of ~300 per request), grpc's synchronous `.future()` with callbacks (386-429 "
        "µs against grpc.aio's 313-331 for the same bare loop).\n"
        "- The gRPC client, measured the same way (bench's process tree at 1,000 req/s against "
        "the gRPC echo, interleaved 6 s runs with hey against the REST echo, medians; load "
        "average 2 to 6 from other work on the machine): settling grpc.aio's call by callbacks "
        "instead of a task per request, 266 -> 253 µs (hey 83 in the same runs); channels "
        "without retries (`grpc.enable_retries` 0: load workers send each request once), "
        "248 -> 243 alone and 247 -> 235 with `gc.freeze()` (which alone gave 245: not kept); "
        "bench's own HTTP/2 client against that grpc.aio path, 229 -> 121 µs (hey 90 in the "
        "same 5 rounds). A whole run of this benchmark on the grpc.aio path with the first "
        "two changes gave 233 µs against hey's 87 (2.7x). Tried on grpc.aio and not kept, no "
        "change beyond the runs' spread (in one process, 4 s runs): `GRPC_POLL_STRATEGY=poll`, "
        "the experiments tcp_rcv_lowat, event_engine_callback_cq, pollset_alternative, "
        "fuse_filters, use_call_event_engine_in_completion_queue and "
        "-event_engine_for_all_other_endpoints, `grpc.minimal_stack`, two channels instead of "
        "one."
    )
    return "\n".join(lines) + "\n"


def _shows_freeze(run: Run) -> bool:
    return bool(run.figures and (run.figures.p99_ms or 0.0) >= FREEZE_SHOWN_MS)


def cost_table(
    ladder: Ladder,
    closed: Mapping[str, Sequence[Run]],
    rates: Sequence[int],
    held_share: float,
    runs: int,
) -> str:
    """One row per peer: ceiling, CPU per request at each rate and in closed loop."""
    shown_rates = [rate for rate in rates if any(cost_at(ladder, p, rate) for p in ladder)]
    header = (
        "| peer | API | offers load as | ceiling (req/s held) | "
        + " | ".join(f"µs/req at {rate:,}" for rate in shown_rates)
        + " | c=16: req/s, µs/req | c=64: req/s, µs/req |"
    )
    lines = [
        "### Cost and ceiling (bare echo targets)",
        "",
        "Against a bare grpc.aio Predict service and a bare aiohttp REST predict that answer fixed "
        "bytes without parsing (benchmarks/peers/echo.py), so the tool, not the server, is the "
        "limit. Rates climb until one is not held (the target answered less than 99 % of it, "
        f"median of {runs} runs). CPU per request = utime+stime of the tool's whole process "
        "tree over the steady part of the run (from 0.5 s after the first answer to 0.3 s "
        "before the last, as the target counts them) / answers in that part; start-up is left "
        "out for every tool alike. A `-` is a rate the peer did not reach.",
        "",
        header,
        "|---|---|---|---:|" + "---:|" * len(shown_rates) + "---:|---:|",
    ]
    for name, peer_closed in closed.items():
        rungs = ladder.get(name)
        loop = _loop_of(name)
        top = ceiling(ladder, name, held_share) if rungs is not None else None
        ceiling_text = "n/a (no rate)" if rungs is None else (f"{top:,}" if top else "< 200")
        if rungs and top == rungs[-1][0]:
            ceiling_text = f"≥ {top:,}"
        cells = [_us(cost_at(ladder, name, rate)) for rate in shown_rates]
        closed_cells = [
            f"{run.steady_rps or 0:,.0f}, {_us(run.steady_cpu_us_per_request)}"
            for run in peer_closed
        ]
        lines.append(
            f"| {name} | {_api(name)} | {loop} | {ceiling_text} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(closed_cells)
            + " |"
        )
    lines.append("")
    lines.append(
        "A ceiling written ≥ N held the top rung tried. The echo targets are Python too, so "
        "the fastest tools can meet the echo's own limit before their own."
    )
    lines.append("")
    lines.append("<details><summary>Every rung: offered, answered, latency as the tool reports it"
                 "</summary>\n")  # fmt: skip
    lines.append("| peer | offered req/s | answered / offered | p50 | p99 | µs/req |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for name, rungs_of_peer in ladder.items():
        for rate, rate_runs in rungs_of_peer:
            share = _median([(run.steady_rps or 0.0) / rate for run in rate_runs]) or 0.0
            lines.append(
                f"| {name} | {rate:,} | {share * 100:.1f} % | {_ms(_figure(rate_runs, 'p50_ms'))} "
                f"| {_ms(_figure(rate_runs, 'p99_ms'))} "
                f"| {_us(_median([run.steady_cpu_us_per_request for run in rate_runs]))} |"
            )
    lines.append("\n</details>\n")
    return "\n".join(lines) + "\n"


LOOPS = {
    BENCH_GRPC: "open loop, latency from the intended send time",
    BENCH_REST: "open loop, latency from the intended send time",
    AIO_FLOOR: "open loop; raw bytes, no histograms, one process",
    "TF Serving example client": "threads, closed loop, each paced by sleep",
    "seed article's client": "thread pool fed on schedule, asyncio.run per request",
    "Locust (gRPC)": "users, closed loop, constant_throughput",
    "Locust (REST)": "users (HttpUser), closed loop, constant_throughput",
    "hey": "workers, closed loop, -q per worker",
    "wrk": "connections, closed loop only",
}


def _loop_of(name: str) -> str:
    return LOOPS.get(name, "")


def accuracy_table(real: Mapping[str, Sequence[Run]]) -> str:
    """Each peer at 200 req/s and closed loop against `deepchat-tfs serve` with half_plus_two."""
    seconds = next((run.load.duration_s for runs in real.values() for run in runs), 0.0)
    lines = [
        "### Accuracy against `deepchat-tfs serve` (half_plus_two, no batching)",
        "",
        f"One run of {seconds:g} s per row. achieved / offered uses the tool's own count and "
        "duration; latencies are as each tool reports them (bench: from the intended send "
        "time, and in brackets from the actual send time, i.e. uncorrected).",
        "",
        "| peer | API | load | achieved | p50 | p99 | max | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in real.items():
        for run in runs:
            figures = run.figures
            if figures is None:
                lines.append(f"| {name} | | {run.load.describe()} | failed: {run.failure} |||||")
                continue
            achieved = (
                f"{figures.achieved_rps / run.load.rate * 100:.1f} % of offered"
                if run.load.rate
                else f"{figures.achieved_rps:,.0f} req/s"
            )
            lines.append(
                f"| {name} | {_api(name)} | {run.load.describe()} | {achieved} "
                f"| {_with_uncorrected(figures.p50_ms, figures.uncorrected_p50_ms)} "
                f"| {_with_uncorrected(figures.p99_ms, figures.uncorrected_p99_ms)} "
                f"| {_ms(figures.max_ms)} | {figures.errors} |"
            )
    return "\n".join(lines) + "\n"


def _api(name: str) -> str:
    return "REST" if name in ("hey", "wrk") or "REST" in name else "gRPC"


def _with_uncorrected(corrected: float | None, uncorrected: float | None) -> str:
    if uncorrected is None:
        return _ms(corrected)
    return f"{_ms(corrected)} ({_ms(uncorrected)})"


def freeze_table(frozen: Mapping[str, Run], freeze_after_s: float) -> str:
    """What each peer reports of a 1 s SIGSTOP of the target."""
    any_run = next(iter(frozen.values()), None)
    duration = any_run.load.duration_s if any_run else 0.0
    lines = [
        "### A 1 s server freeze (coordinated omission)",
        "",
        f"200 req/s for {duration:g} s against the echo targets; {freeze_after_s:g} s after the "
        "first answer the target is stopped (SIGSTOP) for 1 s, then continued. About one "
        "request in eight of the schedule falls into the freeze, so an honest p99 is close to "
        "1 s. A tool that waits for each answer before sending the next records one long "
        "sample per worker instead of the ~200 the schedule asked for, and its p99 hides the "
        "freeze: the way wrk2's README shows it for wrk. wrk (no rate) ran closed loop with "
        "10 connections; Debian's wrk 4.1 back-fills samples after the run from the mean "
        "interval per connection (`stats_correct` in wrk.c, before the Lua `done()` sees the "
        "latencies), so its p99 can show a freeze that its raw samples hid.",
        "",
        "| peer | API | p50 | p99 | max | the freeze in p99 |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, run in frozen.items():
        figures: Figures | None = run.figures
        if figures is None:
            lines.append(f"| {name} | {_api(name)} | failed: {run.failure} ||||")
            continue
        shown = "**shown**" if _shows_freeze(run) else "hidden"
        if figures.uncorrected_p99_ms is not None:
            raw = "shown" if figures.uncorrected_p99_ms >= FREEZE_SHOWN_MS else "hidden"
            shown += f" (uncorrected: {raw})"
        lines.append(
            f"| {name} | {_api(name)} "
            f"| {_with_uncorrected(figures.p50_ms, figures.uncorrected_p50_ms)} "
            f"| {_with_uncorrected(figures.p99_ms, figures.uncorrected_p99_ms)} "
            f"| {_ms(figures.max_ms)} | {shown} |"
        )
    return "\n".join(lines) + "\n"


def headline_table(rows: Sequence[tuple[str, int, Run]], batching: Mapping[str, int]) -> str:
    """Server batching off and on with the demo model, against the article's figures."""
    parameters = ", ".join(f"{key} {value}" for key, value in batching.items())
    lines = [
        "### The seed article's headline: server batching off and on",
        "",
        "`deepchat-tfs serve` with the demo chat model, `deepchat-tfs bench` closed loop (one "
        "item per request, bench's built-in prompts), the better of 2 runs by items/s; "
        f"batching on: {parameters}. The article reported 45 -> 185 QPS (4.1x) and p95 "
        "450 -> 95 ms.",
        "",
        "| server batching | concurrency | items/s | p50 | p95 | p99 | on / off |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    off_rate = {c: run.figures.achieved_rps for b, c, run in rows if b == "off" and run.figures}
    for state, concurrency, run in rows:
        figures = run.figures
        if figures is None:
            lines.append(f"| {state} | {concurrency} | failed: {run.failure} |||||")
            continue
        ratio = "-"
        if state == "on" and off_rate.get(concurrency):
            ratio = f"{figures.achieved_rps / off_rate[concurrency]:.1f}x"
        lines.append(
            f"| {state} | {concurrency} | {figures.achieved_rps:,.0f} | {_ms(figures.p50_ms)} "
            f"| {_ms(figures.p95_ms)} | {_ms(figures.p99_ms)} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def command_lines(
    ladder: Ladder,
    closed: Mapping[str, Sequence[Run]],
    real: Mapping[str, Sequence[Run]],
    headline: Sequence[tuple[str, int, Run]],
    as_printed: str,
    skipped: Mapping[str, str],
) -> str:
    """The exact command line of each peer (at 1,000 req/s and c=16) and what was fixed or left."""
    lines = [
        "### Command lines",
        "",
        "`$TARGET` is the gRPC HOST:PORT and `$URL` the REST base URL of the target; the other "
        "rates and concurrencies change only `--rate`/`-q`/`-u`/`-c`.",
        "",
    ]
    for name, runs in closed.items():
        rungs = {rate: rate_runs for rate, rate_runs in ladder.get(name, ())}
        example = rungs.get(COST_RATE, rungs.get(200, []))
        shown = [run.command for run in [*example[:1], *runs[:1]]]
        lines.append(f"- {name}:")
        lines.extend(f"  `{command}`" + ("  " if i < len(shown) - 1 else "")
                     for i, command in enumerate(shown))  # fmt: skip
    if headline:
        lines.append(f"- headline: `{headline[0][2].command}`")
    lines += [
        "",
        "The seed article's pattern as printed (one grpc.aio channel at module level, each "
        f"pool task `asyncio.run(stub.Predict(...))`) fails on every call after the first: "
        f"`{as_printed}`. A grpc.aio channel belongs to the event loop it first ran on, and "
        "each asyncio.run makes a new loop. The one change made to run it: the channel is "
        "opened inside the coroutine (`async with grpc.aio.insecure_channel(...)`), so every "
        "request pays for a new channel and connection; that is most of its cost per request.",
    ]
    for name, reason in skipped.items():
        lines.append(f"- skipped {name}: {reason}")
    return "\n".join(lines) + "\n"
