"""`deepchat-tfs status`: the fleet's server-side figures, once or every N seconds (kubectl top).

Exit codes: 0 every replica up, 1 some replica down (or none reachable), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.fleet.sampler import FleetSampler
    from core.fleet.snapshot import FleetSnapshot, ReplicaRow, ServerFigures

EXIT_OK, EXIT_DOWN, EXIT_USAGE = 0, 1, 2
PROG = "deepchat-tfs status"


class UsageError(ValueError):
    """A command line that cannot run."""


def build_parser() -> argparse.ArgumentParser:
    """The status command's arguments."""
    from core.fleet.flags import add_metrics_argument, add_prometheus_argument, add_target_argument

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Server-side figures of every replica and of the fleet: QPS, p50/p99 latency, errors "
            "by code, batch fill, loaded versions; from each replica's Prometheus metrics or an "
            "existing Prometheus server."
        ),
        epilog="exit codes: 0 every replica up, 1 a replica down, 2 usage error",
    )
    add_target_argument(
        parser,
        help="a replica's gRPC address or 'dns:///NAME:PORT' (every address is a replica); "
        "repeat for more; default: the config's targets",
    )
    add_metrics_argument(
        parser, default="each replica's host, the config's rest_port and metrics_path"
    )
    parser.add_argument(
        "--max-batch-size",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="a replica's server-side max_batch_size for batch fill, in the order of --target "
        "(default: inferred from its processed_batch_size histogram)",
    )
    add_prometheus_argument(parser, help="read the figures from this Prometheus server")
    parser.add_argument("--model", help="model name (default: every model's requests)")
    parser.add_argument(
        "--window",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds the rates and percentiles cover (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--watch", type=float, metavar="SECONDS", help="print again every SECONDS until Ctrl-C"
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default: config.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def sampler_from_args(args: argparse.Namespace) -> FleetSampler:
    """A FleetSampler for the command line and the config; UsageError when it cannot be built."""
    from core.config.schema import ConfigError, load_config
    from core.fleet.setup import fleet_sampler

    if args.window <= 0:
        raise UsageError(f"--window {args.window}: expected seconds > 0")
    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch {args.watch}: expected seconds > 0")
    if not args.target and (args.metrics or args.max_batch_size):
        raise UsageError("--metrics and --max-batch-size go with --target, in its order")
    try:
        config = load_config(args.config).config
    except ConfigError as error:
        raise UsageError(str(error)) from None
    model_name = args.model
    prometheus_url = args.prometheus or config.model_serving.tensorflow_serving.prometheus_url
    if not args.target:
        if not config.resolved_targets() and not prometheus_url:
            raise UsageError(
                "nothing to check: the config uses the embedded server, which status does not "
                "start, so no replica is reachable; give --target HOST:PORT (repeat for replicas) "
                "or set model_serving.tensorflow_serving.targets (or give --prometheus URL to find "
                "the replicas Prometheus scrapes)"
            )
        if config.resolved_targets():
            model_name = model_name or config.models[0].model_name
    try:
        return fleet_sampler(
            config,
            targets=args.target,
            metrics_urls=args.metrics,
            max_batch_sizes=args.max_batch_size,
            prometheus_url=args.prometheus,
            model_name=model_name,
            window_s=args.window,
        )
    except (ValueError, ConfigError) as error:
        raise UsageError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deepchat-tfs status`; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_request:  # argparse's own usage errors and --help
        return int(exit_request.code or 0)
    try:
        sampler = sampler_from_args(args)
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(sampler, args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"{PROG}: {type(error).__name__}: {error} (--debug shows more)", file=sys.stderr)
        return EXIT_DOWN


async def _run(sampler: FleetSampler, args: argparse.Namespace) -> int:
    import time

    try:
        # The direct source needs two scrapes a window apart; Prometheus keeps its own history.
        snapshot = await sampler.sample()
        if sampler.source.description == "scrape":
            await asyncio.sleep(args.window)
            snapshot = await sampler.sample()
        _print(snapshot, args.json)
        next_at = time.monotonic()
        while args.watch is not None:
            # Every watch seconds, however long a sample took.
            next_at += args.watch
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            snapshot = await sampler.sample()
            _print(snapshot, args.json)
    finally:
        await sampler.close()
    return EXIT_OK if snapshot.all_up else EXIT_DOWN


def _print(snapshot: FleetSnapshot, as_json: bool) -> None:
    if as_json:
        print(json.dumps(snapshot.to_json()), flush=True)
    else:
        print(render_text(snapshot), flush=True)


def _number(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _errors(figures: ServerFigures) -> str:
    if not figures.errors:
        return "-"
    return ",".join(f"{code}:{count:.0f}" for code, count in sorted(figures.errors.items()))


def _batch(figures: ServerFigures) -> str:
    batch = figures.batch
    if batch.size_mean is None:
        return "-"
    if batch.fill is None:
        return f"{batch.size_mean:.1f}"
    marker = "~" if batch.max_batch_size_inferred else ""
    return f"{batch.size_mean:.1f}/{marker}{batch.max_batch_size} {batch.fill:.0%}"


def _versions(row: ReplicaRow) -> str:
    if not row.versions:
        return "-"
    return " ".join(f"{version}:{state}" for version, state in sorted(row.versions.items()))


def render_text(snapshot: FleetSnapshot) -> str:
    """The snapshot as a table: a fleet line, then one line per replica."""
    fleet = snapshot.fleet
    up = sum(row.up for row in snapshot.replicas)
    window = _number(fleet.window_s, 1, " s")
    lines = [
        f"model {snapshot.model_name or '(all)'} · {snapshot.source} · window {window} · "
        f"{up}/{len(snapshot.replicas)} up" + (" · VERSION SKEW" if snapshot.version_skew else ""),
        f"fleet  QPS {_number(fleet.qps)}  p50 {_number(fleet.latency.p50_ms, 2)} ms  "
        f"p99 {_number(fleet.latency.p99_ms, 2)} ms (bucketed)  errors {_errors(fleet)}  "
        f"batch {_batch(fleet)}",
    ]
    header = ("REPLICA", "UP", "QPS", "P50 MS", "P99 MS", "ERRORS", "BATCH", "VERSIONS", "RSS MB")
    table = [header]
    for row in snapshot.replicas:
        figures = row.figures
        table.append(
            (
                row.address,
                "up" if row.up else "DOWN",
                _number(figures.qps),
                _number(figures.latency.p50_ms, 2),
                _number(figures.latency.p99_ms, 2),
                _errors(figures),
                _batch(figures),
                _versions(row),
                _number(row.rss_bytes / 2**20, 0) if row.rss_bytes is not None else "-",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    notes = [
        f"{row.address}: {row.error or row.figures.metrics_error}"
        for row in snapshot.replicas
        if row.error or row.figures.metrics_error
    ]
    if any(row.figures.batch.max_batch_size_inferred for row in snapshot.replicas):
        notes.append("~N: max batch size inferred from the processed_batch_size buckets")
    not_exported = sorted({name for row in snapshot.replicas for name in row.figures.not_exported})
    if not_exported:
        notes.append("not exported: " + ", ".join(not_exported))
    lines += [*snapshot.problems, *notes]
    return "\n".join(line.rstrip() for line in lines)
