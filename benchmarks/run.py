"""`make bench`: runs each benchmarks/bench_*.py and writes their sections to docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks (all by default) and write docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", help="benchmark names, e.g. server loadgen (default: all)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    available = sorted(
        p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
    )
    # LONG benchmarks (e.g. console_memory, minutes of load) run only when named.
    chosen = args.names or [name for name in available if not _is_long(name)]
    sections = _existing_sections(args.out)
    for name in chosen:
        if name not in available:
            parser.error(f"unknown benchmark {name!r}; expected one of {', '.join(available)}")
        print(f"== {name}", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        section = module.run()
        print(section, flush=True)
        sections[name] = (
            f"{section.rstrip()}\n\n_{name}: {time.monotonic() - started:.0f} s to run._\n"
        )
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m benchmarks.run`). Machine: "
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}. Absolute times are noisy here; each figure is a "
        "median of several runs, and ratios are measured side by side in one run.\n\n"
    )
    body = "\n".join(
        f"<!-- bench:{name} -->\n{text.rstrip()}\n<!-- /bench:{name} -->\n"
        for name, text in sorted(sections.items())
        if name in available
    )
    args.out.write_text(header + body)
    print(f"wrote {args.out}")
    return 0


def _is_long(name: str) -> bool:
    return bool(getattr(importlib.import_module(f"benchmarks.bench_{name}"), "LONG", False))


def _existing_sections(path: Path) -> dict[str, str]:
    """The sections a previous run wrote, by benchmark name; a run of some replaces only those."""
    if not path.is_file():
        return {}
    found = re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", path.read_text(), re.S)
    return dict(found)


if __name__ == "__main__":
    sys.exit(main())
