"""The one line `deepchat-tfs serve` prints on stdout once it answers, and its parser.

server/main.py writes it with ready_line(); the launcher reads it with parse_ready_line().
"""

from __future__ import annotations

from dataclasses import dataclass

READY_PREFIX = "deepchat-tfs serve: ready"


@dataclass(frozen=True)
class ReadyLine:
    """Where a started server listens: "HOST:PORT" for gRPC, REST ("" when off)."""

    grpc_target: str
    rest_address: str
    models: tuple[str, ...] = ()

    @property
    def rest_url(self) -> str:
        """The REST base URL, or "" when REST is off."""
        return f"http://{self.rest_address}" if self.rest_address else ""


def ready_line(
    grpc_address: str, rest_address: str | None, models: list[str], unix_socket: str | None = None
) -> str:
    """The ready line for a server listening on these addresses."""
    unix_text = f" unix={unix_socket}" if unix_socket else ""
    return (
        f"{READY_PREFIX} grpc={grpc_address} rest={rest_address or 'off'}{unix_text} "
        f"models={','.join(models)}"
    )


def parse_ready_line(line: str) -> ReadyLine | None:
    """The addresses in a ready line; None when the line is not one."""
    if not line.startswith(READY_PREFIX):
        return None
    fields = dict(item.split("=", 1) for item in line[len(READY_PREFIX) :].split() if "=" in item)
    rest = fields.get("rest", "off")
    models = tuple(name for name in fields.get("models", "").split(",") if name)
    return ReadyLine(fields.get("grpc", ""), "" if rest == "off" else rest, models)
