"""The slash command grammar: each command's usage, and parsing an input line (no Textual).

What each command does is tui.runner's; the help screen lists SLASH_COMMANDS.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlashSpec:
    """One slash command: its usage line and what it does."""

    name: str
    usage: str
    summary: str
    min_args: int = 0
    max_args: int | None = 0
    # Free text (a prompt, burst arguments) is split on spaces only: quotes and apostrophes stay.
    free_text: bool = False


SLASH_COMMANDS: dict[str, SlashSpec] = {
    spec.name: spec
    for spec in (
        SlashSpec(
            "model", "/model NAME", "chat with another model (config name or model name)", 1, 1
        ),
        SlashSpec(
            "version", "/version N|latest", "pin the chat to a version, or follow the latest", 1, 1
        ),
        SlashSpec(
            "label", "/label L", "pin the chat to a version label (e.g. stable, canary)", 1, 1
        ),
        SlashSpec("signature", "/signature S", "use another signature of the model", 1, 1),
        SlashSpec(
            "compare",
            "/compare V1 V2 [PROMPT]",
            "one prompt (default: the last) to two versions, side by side",
            2,
            None,
            free_text=True,
        ),
        SlashSpec(
            "burst",
            "/burst [ARGS]",
            "open the burst load form, e.g. /burst 200rps 30s",
            0,
            None,
            free_text=True,
        ),
        SlashSpec("full", "/full", "the whole of the latest long reply (scrolls; s saves it)"),
        SlashSpec(
            "replicas",
            "/replicas",
            "every replica: up/down, QPS, p50/p99, errors, batch fill, versions (F3)",
        ),
        SlashSpec("export", "/export [DIR]", "write this conversation as Markdown and JSONL", 0, 1),
        SlashSpec("clear", "/clear", "clear the chat pane and start a new conversation"),
        SlashSpec("help", "/help", "keys and commands"),
    )
}


@dataclass(frozen=True)
class SlashCommand:
    """A parsed slash command: its name, arguments, and the raw text after the name."""

    name: str
    args: tuple[str, ...]
    rest: str


class SlashError(ValueError):
    """A slash command that cannot run, with the usage to show."""


def parse_slash(text: str) -> SlashCommand | None:
    """The command in an input line starting with '/', None for a chat prompt."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, rest = stripped[1:].partition(" ")
    spec = SLASH_COMMANDS.get(name.lower())
    if spec is None:
        known = ", ".join(f"/{command}" for command in SLASH_COMMANDS)
        raise SlashError(f"unknown command /{name}; expected one of {known} (// sends a '/')")
    try:
        if spec.free_text:
            args = tuple(rest.split())
        else:
            import shlex  # on the first command, not before the console's first frame

            args = tuple(shlex.split(rest))
    except ValueError as error:
        raise SlashError(f"usage: {spec.usage}; cannot split the arguments ({error})") from None
    if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
        expected = (
            f"{spec.min_args}"
            if spec.max_args == spec.min_args
            else f"{spec.min_args} or more"
            if spec.max_args is None
            else f"up to {spec.max_args}"
        )
        raise SlashError(f"usage: {spec.usage}; expected {expected} argument(s), got {len(args)}")
    return SlashCommand(name=spec.name, args=args, rest=rest.strip())


def parse_version(text: str, usage: str) -> int:
    """A version number argument; SlashError naming it otherwise."""
    cleaned = text.lstrip("vV")
    if not cleaned.isdigit():
        raise SlashError(f"usage: {usage}; expected a version number, got {text!r}")
    return int(cleaned)


def prompt_text(line: str) -> str:
    """The chat prompt in an input line that is not a command ('//x' sends '/x')."""
    return line[1:] if line.lstrip().startswith("//") else line
