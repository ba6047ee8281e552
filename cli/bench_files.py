"""`deepchat-tfs bench compare` and `deepchat-tfs bench merge`: commands over report files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.bench_run import EXIT_OK, EXIT_USAGE
from core.report.model import BenchReport, load_report, save_report
from core.report.text import compare_reports, render_markdown, render_table


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


def merge_main(argv: Sequence[str]) -> int:
    """`deepchat-tfs bench merge A.json B.json ... --out fleet.json`: one report from several."""
    from core.report.merge import merge_reports

    parser = argparse.ArgumentParser(
        prog="deepchat-tfs bench merge",
        description="Merge the reports of runs made together (e.g. N hosts started with "
        "--start-at): requests add up, percentiles come from the merged HDR histograms, "
        "rates are over the union of the measured windows.",
    )
    parser.add_argument("reports", nargs="+", type=Path, help="report JSON files")
    parser.add_argument("--out", type=Path, help="write the merged report here")
    parser.add_argument("--label", help="the merged report's name (default: 'merged N runs')")
    parser.add_argument("--hgrm", type=Path, help="also write the merged latency distribution")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    try:
        reports = [load_report(path) for path in args.reports]
        merged = merge_reports(reports, [str(path) for path in args.reports], args.label)
    except ValueError as error:
        print(f"deepchat-tfs bench merge: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(render_markdown(merged))
    print(f"report: {save_report(merged, args.out)}")
    if args.hgrm is not None:
        from core.report.export import write_hgrm

        print(f"latency distribution: {write_hgrm(merged, args.hgrm)}")
    return EXIT_OK
