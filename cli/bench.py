"""`deepchat-tfs bench`: a load run headless, its summary table, its JSON report and SLO exit code.

Exit codes: 0 done (and every --slo term met), 1 an SLO term breached (also when
--abort-on-breach stopped the run), 2 a usage error, 3 the run itself failed (target
unreachable, model not found, no request succeeded, workers failed), 130 aborted with Ctrl-C
(the partial report is still printed and written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cli.bench_run import (
    EXIT_FAILED,
    EXIT_HELP,
    EXIT_USAGE,
    RunOptions,
    UsageError,
    find_max,
    finish,
    run_once,
    sweep,
)
from core.bench.session import (
    PROTOCOLS,
    connection_settings,
    load_settings,
    parse_headers,
    prepare_target,
)
from core.bench.watch import PUSH_EVERY_S, RunWatch
from core.client.serving import ClientSettings, ModelSpec, ServingError
from core.identity import DEMO_MODEL_NAME
from core.load.burst import BurstError
from core.load.inputs import read_prompts
from core.load.spec import SCHEDULE_HELP, LoadSpec, parse_duration
from core.report.slo import SLO_HELP, SloTerm, parse_slo

DEFAULT_WARMUP_S = 1.0


def build_parser() -> argparse.ArgumentParser:
    """The `bench` command line."""
    parser = argparse.ArgumentParser(
        prog="deepchat-tfs bench",
        description="Run a load test against TF Serving (or the embedded server) and report it. "
        "`deepchat-tfs bench compare A.json B.json ...` compares reports side by side.",
        epilog=EXIT_HELP + ". `bench merge A.json B.json ... --out fleet.json` merges reports "
        "of runs made together on several hosts.",
    )
    where = parser.add_argument_group("what to load")
    where.add_argument("--target", action="append", metavar="HOST:PORT|URL", default=[],
                       help="TF Serving gRPC address (repeat for replicas), or with --protocol "
                       "rest its REST URL http://HOST:PORT; without it the console's "
                       "embedded server starts (config.yaml's embedded section)")  # fmt: skip
    where.add_argument("--protocol", default="grpc", metavar="grpc|rest",
                       help="TF Serving API: grpc (default) or rest (predict JSON)")  # fmt: skip
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
    load.add_argument("--warmup", type=_warmup_duration, default=DEFAULT_WARMUP_S,
                      metavar="DURATION", help="load at the run's rate before the measured "
                      "window, reported apart (default 1s; 0 turns it off)")  # fmt: skip
    load.add_argument("--start-at", type=float, metavar="EPOCH_SECONDS",
                      help="start the load at this wall-clock time (seconds since the epoch), "
                      "so several hosts start together")  # fmt: skip
    conn = parser.add_argument_group("connection (as the console's)")
    conn.add_argument("--config", metavar="FILE",
                      help="the console's config file: targets, TLS, token variable")  # fmt: skip
    conn.add_argument("--ca", metavar="PEM", help="CA certificate(s) to verify the server (TLS)")
    conn.add_argument("--cert", metavar="PEM", help="client certificate (mTLS, with --key)")
    conn.add_argument("--key", metavar="PEM", help="client private key (mTLS, with --cert)")
    conn.add_argument(
        "--allow-plaintext-token",
        action="store_true",
        help="send --config's bearer token even without TLS (never settable from a file)",
    )
    conn.add_argument("--server-name", help="name to verify the server's certificate against")
    conn.add_argument("--header", action="append", default=[], metavar="K=V",
                      help="extra gRPC metadata or HTTP header (repeatable)")  # fmt: skip
    out = parser.add_argument_group("results")
    out.add_argument("--out", type=Path, help="write the JSON report here "
                     "(default: a new file in the console's reports directory)")  # fmt: skip
    out.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    out.add_argument("--label", help="the run's name in tables (default: its settings)")
    out.add_argument("--timeseries", type=Path, metavar="FILE.csv|FILE.jsonl",
                     help="one row per second: intended and achieved rate, ok, errors by code, "
                     "p50/p90/p99, in flight, late sends")  # fmt: skip
    out.add_argument("--hgrm", type=Path, metavar="FILE",
                     help="the latency distribution in HdrHistogram's percentile format "
                     "(as wrk2 prints it)")  # fmt: skip
    out.add_argument("--push", metavar="URL",
                     help="push the run's figures to this Prometheus Pushgateway every "
                     f"{PUSH_EVERY_S:g} s and at the end")  # fmt: skip
    out.add_argument(
        "--push-instance",
        metavar="NAME",
        help="the pushed group's instance label (default: this host's name)",
    )
    out.add_argument("--metrics", metavar="URL",
                     help="the server's Prometheus metrics URL: the report adds what the server "
                     "saw (automatic with the embedded server)")  # fmt: skip
    # argparse formats help with %, so the SLO help's percent signs are doubled.
    out.add_argument(
        "--slo", help="objectives; exit 1 when one is breached: " + SLO_HELP.replace("%", "%%")
    )
    out.add_argument(
        "--abort-on-breach",
        action="store_true",
        help="stop the run once an --slo term can no longer be met (exit 1)",
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
        warmup_s=args.warmup,
    )
    if args.find_max or args.sweep:
        return spec  # each probe or setting is checked when it is built
    try:
        return spec.check()
    except ValueError as error:
        raise UsageError(str(error)) from None


def _warmup_duration(text: str) -> float:
    """--warmup's value: a duration, or 0 for none."""
    if text.strip() in ("0", "0s", "0ms", "off"):
        return 0.0
    return parse_duration(text)


@dataclass(frozen=True)
class Where:
    """Where the load goes: gRPC targets or a REST URL, and the server's metrics URL if known."""

    targets: list[str]
    rest_url: str | None
    metrics_url: str | None
    model: str | None = None  # the embedded server's model, when bench started it


def check_options(args: argparse.Namespace) -> None:
    """UsageError for flags that cannot go together or values that cannot be right."""
    if args.protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {args.protocol}: unknown protocol; expected grpc or rest")
    for target in args.target:
        is_url = target.startswith(("http://", "https://"))
        if args.protocol == "rest" and not is_url:
            raise UsageError(
                f"--target {target}: with --protocol rest, expected a URL such as "
                "http://HOST:8501 (TF Serving's REST port)"
            )
        if args.protocol == "grpc" and is_url:
            raise UsageError(
                f"--target {target}: a URL is a REST endpoint; add --protocol rest, or give "
                "the gRPC HOST:PORT"
            )
    if args.protocol == "rest" and args.batch_size and args.batch_size > 1:
        raise UsageError(
            "--batch-size is gRPC client-side batching; over REST, put several instances "
            "in --data instead"
        )
    if args.protocol == "rest" and len(args.target) > 1:
        raise UsageError("--protocol rest takes one --target URL (a load balancer's, for several)")
    if args.start_at is not None and args.start_at <= time.time():
        raise UsageError(
            f"--start-at {args.start_at:.3f}: that moment has passed (now is "
            f"{time.time():.0f}); expected a future time in seconds since the epoch"
        )
    several_runs = args.find_max or args.sweep
    single_run_flags = {
        "--start-at": args.start_at,
        "--timeseries": args.timeseries,
        "--hgrm": args.hgrm,
        "--abort-on-breach": args.abort_on_breach,
    }
    for flag, value in single_run_flags.items():
        if value and several_runs:
            raise UsageError(f"{flag} is for a single run, not --find-max or --sweep")
    if args.abort_on_breach and not args.slo:
        raise UsageError("--abort-on-breach needs --slo, e.g. --slo 'p99<100ms'")
    if args.timeseries is not None:
        from core.report.export import check_timeseries_path

        check_timeseries_path(args.timeseries)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deepchat-tfs bench`; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] in (["compare"], ["merge"]):
        from cli.bench_files import compare_main, merge_main

        return (compare_main if arguments[0] == "compare" else merge_main)(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_request:  # argparse's own usage errors and --help
        return int(exit_request.code or 0)
    try:
        check_options(args)
        spec = spec_from_args(args)
        slo = parse_slo(args.slo) if args.slo else None
        if args.find_max and slo is None:
            raise UsageError("--find-max needs --slo, e.g. --slo 'p99<100ms'")
        if args.find_max and args.sweep:
            raise UsageError("--find-max and --sweep: choose one")
        if not args.target and not args.config and args.model not in (None, DEMO_MODEL_NAME):
            raise UsageError(
                f"--model {args.model} needs --target HOST:PORT; without --target bench starts "
                f"the embedded server, which serves the demo model {DEMO_MODEL_NAME}"
            )
        prompts = read_prompts(args.prompts) if args.prompts else None
        headers = parse_headers(args.header)
    except ValueError as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_bench(args, spec, slo, prompts, headers))


def _connection(
    args: argparse.Namespace, targets: Sequence[str], headers: tuple[tuple[str, str], ...]
) -> ClientSettings:
    """The connection settings from --config and the TLS and header flags."""
    return connection_settings(
        targets=targets,
        config_path=args.config,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        server_name=args.server_name,
        headers=headers,
        allow_plaintext_token=args.allow_plaintext_token,
    )


@contextlib.asynccontextmanager
async def _where(args: argparse.Namespace) -> AsyncIterator[Where]:
    """The --target addresses (or --config's), or the embedded server's while it runs."""
    if args.target:
        rest = args.target[0] if args.protocol == "rest" else None
        yield Where(list(args.target) if rest is None else [_host_port(rest)], rest, args.metrics)
        return
    from core.config.schema import load_config

    # --config's gRPC targets, else the console's embedded server as the console would start
    # it: the embedded section of --config, or of the config file the console finds.
    config = load_config(args.config).config
    configured = config.resolved_targets() if args.config and args.protocol == "grpc" else []
    if configured:
        yield Where(configured, None, args.metrics)
        return
    from core.chat.session import build_embedded_server
    from core.client.scrape import metrics_url
    from core.identity import data_dir

    embedded = config.embedded
    print(f"starting the embedded server with the model {embedded.model_name} ...", file=sys.stderr)
    server = build_embedded_server(config, data_dir() / "bench")
    async with server:
        rest = server.rest_url if args.protocol == "rest" else None
        metrics = args.metrics or metrics_url(
            server.rest_url, config.model_serving.tensorflow_serving.metrics_path
        )
        yield Where([server.grpc_target], rest, metrics, embedded.model_name)


def _host_port(url: str) -> str:
    """HOST:PORT of a REST URL (the gRPC settings need a target even for REST)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise UsageError(f"--target {url}: expected a URL such as http://HOST:8501")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _failure_line(where: str, error: ServingError) -> str:
    """One line for a run that could not start, naming the target and the server's answer."""
    if error.code == "NOT_FOUND":
        return f"{where}: model not found: {error}"
    if error.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return f"{where}: unreachable: {error}"
    return f"{where}: {error}"


async def _bench(
    args: argparse.Namespace,
    spec: LoadSpec,
    slo: list[SloTerm] | None,
    prompts: list[str] | None,
    headers: tuple[tuple[str, str], ...],
) -> int:
    where_text = ", ".join(args.target) or "the embedded server"
    try:
        async with _where(args) as where:
            where_text = where.rest_url or ", ".join(where.targets)
            connection = _connection(args, where.targets, headers)
            settings = load_settings(where.targets, spec.timeout_s, connection)
            model = ModelSpec(
                args.model or where.model or DEMO_MODEL_NAME,
                args.version,
                args.version_label,
                args.signature,
            )
            target = await prepare_target(
                settings, model, data=args.data, prompts=prompts, rest_url=where.rest_url
            )
            options = RunOptions(_watch(args, slo), where.metrics_url, args.start_at)
            if args.find_max:
                assert slo is not None
                return await find_max(spec, target, slo, args, options)
            if args.sweep:
                return await sweep(spec, target, slo, args, options)
            outcome = await run_once(spec, target, _label(args, spec), options)
            return await finish(outcome, args, slo, options)
    except UsageError as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # --data that does not fit the model, a bad config file
        print(f"deepchat-tfs bench: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except ServingError as error:
        print(f"deepchat-tfs bench: {_failure_line(where_text, error)}", file=sys.stderr)
        return EXIT_FAILED
    except BurstError as error:
        print(f"deepchat-tfs bench: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # e.g. the embedded server failed to start, a bad config file
        from core.config.loader import ConfigError

        if isinstance(error, ConfigError):
            print(f"deepchat-tfs bench: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"deepchat-tfs bench: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _watch(args: argparse.Namespace, slo: list[SloTerm] | None) -> RunWatch:
    """--abort-on-breach's SLO watch and --push's gateway."""
    pusher = None
    if args.push:
        from core.report.push import Pusher

        pusher = Pusher(args.push, instance=args.push_instance)
    return RunWatch(slo=slo, abort_on_breach=bool(args.abort_on_breach), pusher=pusher)


def _one_line(error: Exception) -> str:
    return "; ".join(line for line in str(error).splitlines() if line.strip())


def _label(args: argparse.Namespace, spec: LoadSpec) -> str | None:
    """--label, or for REST runs the settings prefixed 'rest' (gRPC runs keep the plain ones)."""
    if args.label:
        return str(args.label)
    return f"rest {spec.describe()}" if args.protocol == "rest" else None
