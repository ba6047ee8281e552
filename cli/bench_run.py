"""`deepchat-tfs bench`'s runs: one run with its progress line and Ctrl-C, the summary and side
files it leaves, the exit code, and the runs of --find-max and --sweep."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from core.bench.search import (
    find_max_rate,
    find_max_report,
    meets,
    save_sweep,
    sweep_document,
    sweep_specs,
)
from core.bench.session import BenchOutcome, run_bench
from core.bench.watch import RunWatch, stopped_for_breach
from core.load.burst import BurstProgress, BurstRun, BurstTarget
from core.load.spec import LoadSpec
from core.report.model import BenchReport, save_report
from core.report.slo import SloTerm, evaluate_slo
from core.report.text import errors_line, latency_chart_lines, render_markdown, render_table

EXIT_OK, EXIT_BREACHED, EXIT_USAGE, EXIT_FAILED, EXIT_ABORTED = 0, 1, 2, 3, 130
EXIT_HELP = (
    "exit codes: 0 ok, 1 an SLO breached, 2 usage error, "
    "3 the run failed (unreachable, model not found, no request succeeded), 130 aborted"
)


class UsageError(ValueError):
    """A command line that cannot run; the message says which flag and what is expected."""


@dataclass
class RunOptions:
    """What every run of one command line shares: the watch, the metrics URL, the start time."""

    watch: RunWatch
    metrics_url: str | None = None
    start_at: float | None = None


class ProgressPrinter:
    """A live progress line on a terminal; a plain line every few seconds otherwise."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._next_plain = 0.0
        self._warmup_said = False

    def __call__(self, progress: BurstProgress) -> None:
        """Show one progress update."""
        if self.live:
            self.stream.write("\r\x1b[K" + progress.line())
            self.stream.flush()
        elif progress.state == "warmup":
            if not self._warmup_said:
                self.stream.write("warming up ...\n")
                self._warmup_said = True
        elif progress.elapsed_s >= self._next_plain or progress.state in ("done", "aborted"):
            self.stream.write(progress.line() + "\n")
            self._next_plain = progress.elapsed_s + self.PLAIN_EVERY_S

    def close(self) -> None:
        """End the live line."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


async def run_once(
    spec: LoadSpec, target: BurstTarget, label: str | None, options: RunOptions | None = None
) -> BenchOutcome:
    """One run with a progress display and Ctrl-C as a clean stop."""
    printer = ProgressPrinter()
    watchers: list[Callable[[BurstProgress], None]] = [printer]

    def on_progress(progress: BurstProgress) -> None:
        for watcher in watchers:
            watcher(progress)

    run = BurstRun(
        spec, target, on_progress=on_progress, start_at_epoch=options.start_at if options else None
    )
    if options is not None:
        watchers.append(options.watch.follow(run))
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    interrupts = 0

    def on_interrupt() -> None:
        # First Ctrl-C: stop issuing and keep the partial report; a second one: stop at once.
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("\naborting: finishing requests in flight (Ctrl-C again to stop at once)",
                  file=sys.stderr)  # fmt: skip
            run.abort()
        elif main_task is not None:
            main_task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await run_bench(run, label, metrics_url=options.metrics_url if options else None)
    finally:
        printer.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


async def finish(
    outcome: BenchOutcome,
    args: argparse.Namespace,
    slo: list[SloTerm] | None,
    options: RunOptions | None = None,
) -> int:
    """Print the summary, write the report and its side files, push it, return the exit code."""
    report = outcome.report
    if slo is not None:
        report = report.with_slo(evaluate_slo(slo, report.model_dump()))
    if options is not None:
        await push_final(options, report)
    markdown = render_markdown(report)
    print(markdown)
    print("\n".join(latency_chart_lines(report)))
    path = save_report(report, args.out)
    print(f"report: {path}")
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")
    if args.timeseries is not None:
        from core.report.export import write_timeseries

        print(f"time series: {write_timeseries(outcome.seconds, args.timeseries)}")
    if args.hgrm is not None:
        from core.report.export import write_hgrm

        print(f"latency distribution: {write_hgrm(report, args.hgrm)}")
    return exit_code(report, outcome.aborted)


async def push_final(options: RunOptions, report: BenchReport) -> None:
    """--push's last push; a push that failed is one line on stderr."""
    await options.watch.finish(report)
    if options.watch.push_failure:
        print(f"deepchat-tfs bench: {options.watch.push_failure}", file=sys.stderr)


def exit_code(report: BenchReport, aborted: bool) -> int:
    """The documented exit code of a finished run (its report already carries the SLO)."""
    if stopped_for_breach(report):
        print(f"deepchat-tfs bench: {report.abort_reason}; run stopped", file=sys.stderr)
        return EXIT_BREACHED
    if aborted:
        return EXIT_ABORTED
    if report.requests > 0 and report.ok == 0:
        print("deepchat-tfs bench: every request failed", file=sys.stderr)
        return EXIT_FAILED
    if report.requests == 0:
        print("deepchat-tfs bench: no request finished", file=sys.stderr)
        return EXIT_FAILED
    if report.slo is None and report.error_count * 2 > report.requests:
        # No error budget without --slo: say so where a script's log shows it.
        print(
            f"deepchat-tfs bench: {errors_line(report)}; exit 0 without --slo "
            "(--slo 'errors<1%' makes such a run exit 1)",
            file=sys.stderr,
        )
    return EXIT_BREACHED if report.slo_passed is False else EXIT_OK


async def find_max(
    spec: LoadSpec,
    target: BurstTarget,
    slo: list[SloTerm],
    args: argparse.Namespace,
    options: RunOptions,
) -> int:
    """--find-max: probe rates, print one table of the probes and the highest passing rate."""
    if spec.mode == "closed":
        raise UsageError(
            "--find-max searches a rate: give --rate R as the first probe, not --concurrency"
        )
    aborted = False

    async def probe(rate: float) -> BenchReport:
        nonlocal aborted
        print(f"probe: {rate:,.0f} req/s", file=sys.stderr)
        outcome = await run_once(replace(spec, rate=rate).check(), target, None, options)
        aborted = outcome.aborted
        return outcome.report

    result = await find_max_rate(probe, slo, start_rps=spec.rate or 100.0)
    stages = [
        f"{p.rate:,.0f} rps {'meets SLO' if p.passed else 'breaches SLO'}" for p in result.probes
    ]
    print(render_table([p.report for p in result.probes], stages), end="")
    terms = args.slo
    best = find_max_report(result, terms, slo)
    if best is None:
        lowest = min(probe.rate for probe in result.probes)
        print(f"no probed rate met {terms} (lowest probed: {lowest:,.0f} req/s)")
        return EXIT_ABORTED if aborted else EXIT_BREACHED
    print(f"highest rate meeting {terms}: {result.best_rps:,.0f} req/s")
    print(f"report: {save_report(best, args.out)}")
    await push_final(options, best)
    return EXIT_ABORTED if aborted else EXIT_OK


async def sweep(
    spec: LoadSpec,
    target: BurstTarget,
    slo: list[SloTerm] | None,
    args: argparse.Namespace,
    options: RunOptions,
) -> int:
    """--sweep: one run per setting, one table; exit 1 if a setting breaches --slo."""
    try:
        parameter, settings = sweep_specs(spec, args.sweep)
    except ValueError as error:
        raise UsageError(str(error)) from None
    reports: list[BenchReport] = []
    for label, swept in settings:
        print(f"sweep: {label}", file=sys.stderr)
        outcome = await run_once(swept, target, label, options)
        report = outcome.report
        if slo is not None:
            report = report.with_slo(evaluate_slo(slo, report.model_dump()))
        reports.append(report)
        if outcome.aborted:
            break
    print(render_table(reports), end="")
    document = sweep_document(parameter, [label for label, _ in settings], reports)
    print(f"report: {save_sweep(document, args.out)}")
    if len(reports) < len(settings):
        return EXIT_ABORTED
    if all(report.ok == 0 for report in reports):
        print("deepchat-tfs bench: every request failed", file=sys.stderr)
        return EXIT_FAILED
    if slo is not None and not all(meets(report, slo) for report in reports):
        return EXIT_BREACHED
    return EXIT_OK
