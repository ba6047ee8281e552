"""The console's memory over a long session: 10,000 chat-sized requests, then a long burst.

LONG: `make bench` skips it; run it by name (`python -m benchmarks.run console_memory`), or
shortened with `python -m benchmarks.bench_console_memory --burst-s 60`.

The console (DeepChatApp, headless at 160 x 48, in this process) talks to
benchmarks.chat_stub_server. Chat requests go through the console's own chat session (client,
micro-batcher, stats) 16 at a time, as the prompt line sends them, without adding entries to the
chat log (a log of 10,000 replies is content the reader keeps, not a leak). Then `/burst
1000rps ...` runs from the console, left behind it with F4 as a reader would. RSS is read after a
garbage collection at each mark; the goal is the last within 5 % of the one after 1,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.console_live import start_stub_server
from core.config.schema import load_config
from tui.app import DeepChatApp
from tui.burst import BurstScreen
from tui.options import build_options
from tui.widgets.panels import BurstPanel

LONG = True
PROMPTS = [
    "how does batching work?",
    "what is a servable version and how do labels pin one?",
    "why is my p99 latency higher than the p50 by so much?",
    "explain the difference between open and closed loop load",
]


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


async def _wait(pilot: object, condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (callable(condition) and condition()):
        if time.monotonic() > deadline:
            raise RuntimeError("condition not met in time")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def measure(requests: int = 10_000, burst_s: int = 300, rate: int = 1000) -> dict[str, float]:
    """RSS (MB) after the first 1,000 requests, after all of them, and after the burst."""
    server, target = start_stub_server()
    marks: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            os.environ["DEEPCHAT_TFS_REPORTS_DIR"] = str(Path(scratch) / "reports")
            loaded = load_config(
                None, env={}, overrides={"model_serving.tensorflow_serving.targets": [target]}
            )
            options = build_options(loaded.config, targets=(target,), data_dir=Path(scratch))
            app = DeepChatApp(options)
            async with app.run_test(size=(160, 48)) as pilot:
                await _wait(pilot, lambda: app.server_state == "up", 60)
                session = app.ensure_session()
                model = app.chat.model
                sent = 0
                while sent < requests:
                    batch = min(16, requests - sent)
                    await asyncio.gather(
                        *(
                            session.ask(
                                PROMPTS[(sent + i) % len(PROMPTS)], model.spec, model.adapter
                            )
                            for i in range(batch)
                        )
                    )
                    sent += batch
                    await pilot.pause()
                    if sent >= 1000 and not marks:
                        marks["after 1,000 requests"] = _rss_mb()
                marks[f"after {requests:,} requests"] = _rss_mb()
                await app.slash.run_line(f"/burst {rate}rps {burst_s}s")
                await _wait(
                    pilot, lambda: isinstance(app.screen, BurstScreen) and app.screen.running, 60
                )
                await pilot.press("f4")
                panel = app.query_one(BurstPanel)
                # Once running, the burst's modules and screen are loaded: growth from here on
                # is what the run itself keeps.
                await pilot.pause(min(10.0, burst_s / 4))
                marks["burst running (its modules and screen loaded)"] = _rss_mb()
                await _wait(
                    pilot,
                    lambda: (
                        bool(panel.summary) and panel.summary[0].startswith(("last", "aborted"))
                    ),
                    burst_s + 120,
                )
                marks[f"after a {burst_s} s burst at {rate:,} req/s"] = _rss_mb()
                marks["burst summary"] = 0.0
                marks[" / ".join(panel.summary)] = 0.0
                await app.action_quit()
    finally:
        server.kill()
        server.wait()
    return marks


def run(requests: int = 10_000, burst_s: int = 300) -> str:
    """Markdown section: console RSS at the marks, and growth against the 1,000-request mark."""
    marks = asyncio.run(measure(requests, burst_s))
    figures = [(name, value) for name, value in marks.items() if value]
    notes = [name for name, value in marks.items() if not value and name != "burst summary"]
    base = figures[0][1]
    rows = "\n".join(
        f"| {name} | {value:.1f} MB | {100 * (value - base) / base:+.1f} % |"
        for name, value in figures
    )
    return (
        "## Console memory over a long session (bench_console_memory, long)\n\n"
        "The console (headless, 160 x 48, in the benchmark's process) against "
        "`benchmarks/chat_stub_server.py`: chat-sized prompts through the console's chat session "
        f"(16 at a time, no chat-log entries), then `/burst 1000rps {burst_s}s` left running "
        "behind the console (F4). RSS after a garbage collection at each mark; goal: the last "
        f"within 5 % of the first. Burst: {notes[0] if notes else 'n/a'}. Load average "
        f"{os.getloadavg()[0]:.1f} at the end.\n\n"
        "| mark | console RSS | vs after 1,000 |\n|---|---:|---:|\n" + rows + "\n\n"
        "What the growth was, before issue 14's memory work (+18.7 %; mallinfo2, "
        "/proc/self/smaps and malloc_trim at the marks): glibc's dynamic mmap threshold put the "
        "freed 184 KiB latency histograms (the stats' per-second ones, the burst workers' "
        "decoded deltas, snapshot temporaries) in the heap and kept the holes (the console now "
        "pins the threshold: tui.heap); the stats window held a full histogram for each of its "
        "11 seconds (closed seconds now keep their filled buckets only); the burst screen's "
        "report and compare views loaded Textual's Markdown stack (now Rich tables). This "
        "benchmark imports tui.burst (with core.load and core.report) before its first mark, so "
        "those modules are not in the growth; what the burst adds is its screen, installed for "
        "F5: its widgets, their styles and render caches, loaded once, not growing with the run. "
        "The screen has no Footer (a line of its keys), no Start button (Enter or F5 starts) and "
        "no ProgressBar (a text bar), and its past-reports table gets Rich Text cells (a str "
        "cell is parsed as markup, which loaded Rich's emoji table). Opening the form and going "
        "back to the console (no run) now leaves 1.7 MB more allocated Python objects "
        "(sys._debugmallocstats), 2.8 MB with the Footer, Start button and ProgressBar.\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--burst-s", type=int, default=300)
    arguments = parser.parse_args()
    print(run(arguments.requests, arguments.burst_s))
