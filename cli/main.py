"""The `deepchat-tfs` command: dispatches to a subcommand, importing only what that one needs."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

USAGE = """\
usage: deepchat-tfs [SUBCOMMAND] [OPTIONS]

A terminal console for TensorFlow Serving.

subcommands:
  (none)              open the console on the configured target (config.yaml)
  chat                open the console against given servers (--target HOST:PORT --model NAME)
  serve               run the embedded TF-Serving-compatible model server
                      (tensorflow_model_server's flags: --port, --rest_api_port, --model_name, ...)
  bench               run a load test headless and write a report
  status              server-side QPS, latency, errors, batch fill and versions of every replica
  export-demo-model   write the bundled demo chat model as a SavedModel (versions 1 and 2)
  allow FILE          approve a config file (as it is now) to name a bearer-token variable

Run `deepchat-tfs SUBCOMMAND --help` for a subcommand's options.
"""

# subcommand -> "module:function"; the function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, str] = {
    "console": "tui.main:main",
    "chat": "tui.main:chat_main",
    "serve": "server.main:main",
    "bench": "cli.bench:main",
    "status": "cli.status:main",
    "export-demo-model": "server.demo_model:main",
    "allow": "cli.allow:main",
}


# Environment a subcommand starts with unless the user set it; applied before its imports, since
# gRPC core reads GRPC_EXPERIMENTS once, when it starts. serve: the listener on gRPC core's iomgr
# path rather than EventEngine's; half_plus_two's server CPU per request on a 2-core machine,
# one side-by-side run: 22 % less at 200 req/s, 2 % at 1,000, 12 % at saturation
# (docs/BENCHMARKS.md, "Embedded server: first seconds and CPU per request").
SUBCOMMAND_ENVIRONMENT: dict[str, dict[str, str]] = {
    "serve": {"GRPC_EXPERIMENTS": "-event_engine_listener"},
}


def _resolve(target: str) -> Callable[[list[str]], int]:
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    entry: Callable[[list[str]], int] = getattr(module, function_name)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args and not args[0].startswith("-"):
        name, rest = args[0], args[1:]
        if name not in SUBCOMMANDS:
            print(f"deepchat-tfs: unknown subcommand {name!r}\n", file=sys.stderr)
            print(USAGE, end="", file=sys.stderr)
            return 2
    else:
        name, rest = "console", args
    for variable, value in SUBCOMMAND_ENVIRONMENT.get(name, {}).items():
        os.environ.setdefault(variable, value)
    code = _resolve(SUBCOMMANDS[name])(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
