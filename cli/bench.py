"""`deepchat-tfs bench`: a load run headless, its summary table, its JSON report and SLO exit code.

Exit codes: 0 done (and every --slo term met), 1 an SLO term breached or the run could not be
done (server unreachable, every request failed, workers failed), 2 a usage error, 130 aborted
with Ctrl-C (the partial report is still printed and written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from core.bench.search import (
    find_max_rate,
    find_max_report,
    meets,
    save_sweep,
    sweep_document,
    sweep_specs,
)
from core.bench.session import load_settings, prepare_target, run_to_report
from core.client.serving import ModelSpec, ServingError
from core.identity import DEMO_MODEL_NAME
from core.load.burst import BurstError, BurstProgress, BurstRun, BurstTarget
from core.load.inputs import read_prompts
from core.load.spec import SCHEDULE_HELP, LoadSpec, parse_duration
from core.report.model import (
    BenchReport,
    load_report,
    save_report,
)
from core.report.slo import SLO_HELP, SloTerm, evaluate_slo, parse_slo
from core.report.text import compare_reports, latency_chart_lines, render_markdown, render_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A command line that cannot run; the message says which flag and what is expected."""


def build_parser() -> argparse.ArgumentParser:
    """The `bench` command line."""
    parser = argparse.ArgumentParser(
        prog="deepchat-tfs bench",
        description="Run a load test against TF Serving (or the embedded server) and report it. "
        "`deepchat-tfs bench compare A.json B.json ...` compares reports side by side.",
        epilog="exit codes: 0 ok, 1 SLO breached or run failed, 2 usage error, 130 aborted",
    )
    where = parser.add_argument_group("what to load")
    where.add_argument("--target", action="append", metavar="HOST:PORT", default=[],
                       help="TF Serving gRPC address (repeat for replicas); "
                       "without it the embedded server starts with the demo model")  # fmt: skip
    where.add_argument("--model", help=f"model name (default {DEMO_MODEL_NAME} without --target)")
    where.add_argument("--signature", default="serving_default", help="signature name")
    where.add_argument("--version", type=int, help="pin a model version")
    where.add_argument("--version-label", help="pin a version label")
    where.add_argument("--data", metavar="JSON|@FILE",
                       help="a TF Serving REST predict body (instances or inputs), "
                       "inline or @file")  # fmt: skip
    where.add_argument("--prompts", metavar="FILE", help="prompts for a text model, one per line")
    load = parser.add_argument_group("load")
    mode = load.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, help="open loop: requests per second")
    mode.add_argument("--concurrency", type=int, help="closed loop: N requesters back to back")
    load.add_argument("--schedule", default="const", help=f"open-loop schedule: {SCHEDULE_HELP}")
    load.add_argument("--duration", type=parse_duration, help="run length, e.g. 30 or 30s or 2m")
    load.add_argument("--requests", type=int, help="stop after N requests")
    load.add_argument("--batch-size", type=int, help="client-side micro-batching: rows per RPC")
    load.add_argument("--batch-timeout-ms", type=float, default=5.0,
                      help="client-side micro-batching: longest wait for a batch "
                      "to fill")  # fmt: skip
    load.add_argument("--workers", type=int, default=1, help="load worker processes")
    load.add_argument("--max-inflight", type=int, help="cap on requests in flight")
    load.add_argument("--timeout", type=parse_duration, default=10.0, help="deadline per request")
    out = parser.add_argument_group("results")
    out.add_argument("--out", type=Path, help="write the JSON report here "
                     "(default: a new file in the console's reports directory)")  # fmt: skip
    out.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    out.add_argument("--label", help="the run's name in tables (default: its settings)")
    # argparse formats help with %, so the SLO help's percent signs are doubled.
    out.add_argument(
        "--slo", help="objectives; exit 1 when one is breached: " + SLO_HELP.replace("%", "%%")
    )
    out.add_argument("--find-max", action="store_true",
                     help="search the highest rate that meets --slo")  # fmt: skip
    out.add_argument("--sweep", metavar="PARAM=V1,V2,...",
                     help="one run per value of batch-size, concurrency, rate, "
                     "workers or max-inflight; one table")  # fmt: skip
    return parser


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The LoadSpec the flags describe; UsageError naming the flag otherwise."""
    if args.rate is None and args.concurrency is None and not args.find_max:
        if not (args.sweep or "").startswith(("rate=", "concurrency=")):
            raise UsageError("give --rate R (open loop) or --concurrency N (closed loop)")
    if args.duration is None and args.requests is None:
        raise UsageError("give --duration S or --requests N: a run needs a bound")
    spec = LoadSpec(
        mode="closed" if args.concurrency is not None else "open",
        rate=args.rate,
        schedule=args.schedule,
        concurrency=args.concurrency,
        duration_s=args.duration,
        requests=args.requests,
        max_inflight=args.max_inflight,
        batch_size=args.batch_size if args.batch_size and args.batch_size > 1 else None,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    if args.find_max or args.sweep:
        return spec  # each probe or setting is checked when it is built
    try:
        return spec.check()
    except ValueError as error:
        raise UsageError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deepchat-tfs bench`; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["compare"]:
        return compare_main(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_request:  # argparse's own usage errors and --help
        return int(exit_request.code or 0)
    try:
        spec = spec_from_args(args)
        slo = parse_slo(args.slo) if args.slo else None
        if args.find_max and slo is None:
            raise UsageError("--find-max needs --slo, e.g. --slo 'p99<100ms'")
        if args.find_max and args.sweep:
            raise UsageError("--find-max and --sweep: choose one")
        if not args.target and args.model not in (None, DEMO_MODEL_NAME):
            raise UsageError(
                f"--model {args.model} needs --target HOST:PORT; without --target bench starts "
                f"the embedded server, which serves the demo model {DEMO_MODEL_NAME}"
            )
        prompts = read_prompts(args.prompts) if args.prompts else None
    except ValueError as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_bench(args, spec, slo, prompts))


@contextlib.asynccontextmanager
async def _targets(args: argparse.Namespace) -> AsyncIterator[list[str]]:
    """The --target addresses, or the embedded server's while it runs."""
    if args.target:
        yield list(args.target)
        return
    from core.embedded.launcher import EmbeddedServer

    print(
        f"starting the embedded server with the demo model {DEMO_MODEL_NAME} ...", file=sys.stderr
    )
    async with EmbeddedServer(DEMO_MODEL_NAME) as server:
        yield [server.grpc_target]


async def _bench(
    args: argparse.Namespace, spec: LoadSpec, slo: list[SloTerm] | None, prompts: list[str] | None
) -> int:
    try:
        async with _targets(args) as targets:
            settings = load_settings(targets, spec.timeout_s)
            model = ModelSpec(
                args.model or DEMO_MODEL_NAME, args.version, args.version_label, args.signature
            )
            target = await prepare_target(settings, model, data=args.data, prompts=prompts)
            if args.find_max:
                assert slo is not None
                return await _find_max(spec, target, slo, args)
            if args.sweep:
                return await _sweep(spec, target, slo, args)
            report, aborted = await run_once(spec, target, args.label)
            return finish(report, args, slo, aborted)
    except UsageError as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # --data that does not fit the model
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ServingError, BurstError) as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # e.g. the embedded server failed to start
        print(f"deepchat-tfs bench: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


class ProgressPrinter:
    """A live progress line on a terminal; a plain line every few seconds otherwise."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._next_plain = 0.0

    def __call__(self, progress: BurstProgress) -> None:
        """Show one progress update."""
        if self.live:
            self.stream.write("\r\x1b[K" + progress.line())
            self.stream.flush()
        elif progress.elapsed_s >= self._next_plain or progress.state in ("done", "aborted"):
            self.stream.write(progress.line() + "\n")
            self._next_plain = progress.elapsed_s + self.PLAIN_EVERY_S

    def close(self) -> None:
        """End the live line."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


async def run_once(
    spec: LoadSpec, target: BurstTarget, label: str | None
) -> tuple[BenchReport, bool]:
    """One run with a progress display and Ctrl-C as a clean stop; (report, aborted)."""
    printer = ProgressPrinter()
    run = BurstRun(spec, target, on_progress=printer)
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
        return await run_to_report(run, label)
    finally:
        printer.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


def finish(
    report: BenchReport, args: argparse.Namespace, slo: list[SloTerm] | None, aborted: bool
) -> int:
    """Print the summary, write the report, return the exit code."""
    if slo is not None:
        report = report.with_slo(evaluate_slo(slo, report.model_dump()))
    markdown = render_markdown(report)
    print(markdown)
    print("\n".join(latency_chart_lines(report)))
    path = save_report(report, args.out)
    print(f"report: {path}")
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")
    if aborted:
        return EXIT_ABORTED
    if report.requests > 0 and report.ok == 0:
        print("deepchat-tfs bench: every request failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if report.slo_passed is False else EXIT_OK


async def _find_max(
    spec: LoadSpec, target: BurstTarget, slo: list[SloTerm], args: argparse.Namespace
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
        report, aborted = await run_once(replace(spec, rate=rate).check(), target, None)
        return report

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
        return EXIT_ABORTED if aborted else EXIT_FAILED
    print(f"highest rate meeting {terms}: {result.best_rps:,.0f} req/s")
    print(f"report: {save_report(best, args.out)}")
    return EXIT_ABORTED if aborted else EXIT_OK


async def _sweep(
    spec: LoadSpec, target: BurstTarget, slo: list[SloTerm] | None, args: argparse.Namespace
) -> int:
    """--sweep: one run per setting, one table; exit 1 if a setting breaches --slo."""
    try:
        parameter, settings = sweep_specs(spec, args.sweep)
    except ValueError as error:
        raise UsageError(str(error)) from None
    reports: list[BenchReport] = []
    for label, swept in settings:
        print(f"sweep: {label}", file=sys.stderr)
        report, aborted = await run_once(swept, target, label)
        if slo is not None:
            report = report.with_slo(evaluate_slo(slo, report.model_dump()))
        reports.append(report)
        if aborted:
            break
    print(render_table(reports), end="")
    document = sweep_document(parameter, [label for label, _ in settings], reports)
    print(f"report: {save_sweep(document, args.out)}")
    if len(reports) < len(settings):
        return EXIT_ABORTED
    if slo is not None and not all(meets(report, slo) for report in reports):
        return EXIT_FAILED
    return EXIT_OK


def compare_main(argv: Sequence[str]) -> int:
    """`deepchat-tfs bench compare A.json B.json ...`: the reports side by side with changes."""
    parser = argparse.ArgumentParser(
        prog="deepchat-tfs bench compare",
        description="Compare bench reports side by side; "
        "later columns show the change from the first.",
    )
    parser.add_argument("reports", nargs="+", type=Path, help="report JSON files")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    if len(args.reports) < 2:
        print("deepchat-tfs bench compare: expected at least 2 report files", file=sys.stderr)
        return EXIT_USAGE
    try:
        reports = [load_report(path) for path in args.reports]
    except ValueError as error:
        print(f"deepchat-tfs bench compare: {error}", file=sys.stderr)
        return EXIT_USAGE
    names = _column_names(args.reports, reports)
    print(compare_reports(reports, names), end="")
    print()
    print(render_table(reports, names), end="")
    return EXIT_OK


def _column_names(paths: Sequence[Path], reports: Sequence[BenchReport]) -> list[str]:
    """Report labels, or file names when labels repeat."""
    labels = [report.label or path.stem for path, report in zip(paths, reports, strict=True)]
    return labels if len(set(labels)) == len(labels) else [path.stem for path in paths]
