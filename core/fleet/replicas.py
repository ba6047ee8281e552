"""Which replicas make up the fleet: targets, `dns:///` names re-resolved, each one's metrics URL.

A target is `HOST:PORT`, `[IPV6]:PORT` or a gRPC URI (`dns:///NAME:PORT`, `ipv4:A:P,B:P`); every
address a name resolves to is one replica, as gRPC's round robin sees them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.client.channel import split_host_port
from core.client.scrape import DEFAULT_METRICS_PATH


@dataclass(frozen=True)
class Replica:
    """One model server: its gRPC address, the target it came from, and where its metrics are."""

    address: str
    """`HOST:PORT` (or `[IPV6]:PORT`) that gRPC calls go to."""
    target: str
    """The configured target this replica came from (a `dns:///` name may give several)."""
    metrics_url: str | None
    """Its Prometheus metrics URL; None when it has none (rest_port 0 and no --metrics)."""
    max_batch_size: int | None = None
    """Its server-side max_batch_size when configured; None = inferred from its metrics."""

    @property
    def host(self) -> str:
        """The host part of the address, without IPv6 brackets."""
        return split_host_port(self.address)[0]

    @property
    def is_local(self) -> bool:
        """Whether the replica runs on this machine (its process's memory can be read)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass(frozen=True)
class FleetTargets:
    """The configured replicas: targets, and metrics URLs and max batch sizes in their order."""

    targets: tuple[str, ...]
    metrics_urls: tuple[str, ...] = ()
    """Explicit metrics URL per target, in the targets' order; empty = host + rest_port."""
    max_batch_sizes: tuple[int, ...] = ()
    """Server-side max_batch_size per target, in the targets' order; empty = inferred."""
    rest_port: int = 8501
    """TF Serving's REST port on every replica (0 = no metrics unless metrics_urls)."""
    metrics_path: str = DEFAULT_METRICS_PATH

    def __post_init__(self) -> None:
        for name, values in (
            ("metrics URLs", self.metrics_urls),
            ("max batch sizes", self.max_batch_sizes),
        ):
            if values and len(values) != len(self.targets):
                raise ValueError(
                    f"{len(values)} {name} for {len(self.targets)} targets: expected one per "
                    f"target, in the order of the targets ({', '.join(self.targets)})"
                )
        for url in self.metrics_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"metrics URL {url!r}: expected http://HOST:PORT/PATH")
        for target in self.targets:
            target_addresses(target)  # raises ValueError naming a malformed target

    @property
    def dynamic(self) -> bool:
        """Whether some target is a name to re-resolve (its replicas may come and go)."""
        return any(target.startswith("dns:") for target in self.targets)


def target_addresses(target: str) -> tuple[str, tuple[str, ...]]:
    """A target's DNS name to resolve ('' when none) and its literal addresses.

    `ipv4:A:P,B:P` and `ipv6:[A]:P,...` list addresses; `dns:///NAME:PORT` is a name; `HOST:PORT`
    is a literal address (a host name there still names one replica, as the user wrote it).
    Raises ValueError for a target this cannot read.
    """
    if target.startswith(("ipv4:", "ipv6:")):
        listed = tuple(part for part in target.partition(":")[2].split(",") if part)
        for address in listed:
            split_host_port(address)
        if not listed:
            raise ValueError(f"target {target!r}: expected addresses after the scheme")
        return "", listed
    if target.startswith("dns:"):
        split_host_port(target)
        return target, ()
    if target.startswith(("unix:", "unix-abstract:", "vsock:", "xds:")):
        raise ValueError(
            f"target {target!r}: a fleet replica needs a network address ('HOST:PORT', "
            "'dns:///NAME:PORT' or 'ipv4:A:P,B:P'), not a socket path or xDS name"
        )
    split_host_port(target)
    return "", (target,)


def metrics_url_for(address: str, rest_port: int, metrics_path: str) -> str | None:
    """The default metrics URL of a replica: its host, the REST port, the metrics path."""
    if rest_port == 0:
        return None
    host = split_host_port(address)[0]
    host_text = f"[{host}]" if ":" in host else host
    return f"http://{host_text}:{rest_port}/{metrics_path.lstrip('/')}"


async def resolve_name(target: str) -> tuple[str, ...]:
    """Every address `dns:///NAME:PORT` resolves to now, as `HOST:PORT` (OSError if none)."""
    host, port = split_host_port(target)
    try:
        literal = ipaddress.ip_address(host)
        return (f"[{literal}]:{port}" if literal.version == 6 else f"{literal}:{port}",)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for info in infos:
        address = str(info[4][0])
        entry = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if entry not in found:
            found.append(entry)
    return tuple(found)


@dataclass
class ReplicaSet:
    """The fleet's replicas now; `refresh` re-resolves `dns:///` names (pods come and go)."""

    config: FleetTargets
    replicas: tuple[Replica, ...] = ()
    resolve_errors: dict[str, str] = field(default_factory=dict)
    """Targets whose name did not resolve at the last refresh, with the reason."""

    async def refresh(self) -> tuple[Replica, ...]:
        """Resolve every target again and return the replicas, in target order."""
        names = [target_addresses(target) for target in self.config.targets]
        lookups = await asyncio.gather(
            *(resolve_name(name) for name, _ in names if name), return_exceptions=True
        )
        resolved = iter(lookups)
        replicas: list[Replica] = []
        seen: set[str] = set()
        errors: dict[str, str] = {}
        for index, (target, (name, literal)) in enumerate(
            zip(self.config.targets, names, strict=True)
        ):
            addresses: Sequence[str] = literal
            if name:
                outcome = next(resolved)
                if isinstance(outcome, BaseException):
                    errors[target] = f"cannot resolve {name!r}: {outcome}"
                    # Keep the replicas it had: a DNS hiccup must not empty the table.
                    addresses = [r.address for r in self.replicas if r.target == target]
                else:
                    addresses = outcome
            for address in addresses:
                if address in seen:
                    continue
                seen.add(address)
                replicas.append(self._replica(index, target, address, len(addresses)))
        self.replicas = tuple(replicas)
        self.resolve_errors = errors
        return self.replicas

    def _replica(self, index: int, target: str, address: str, siblings: int) -> Replica:
        config = self.config
        url: str | None
        if config.metrics_urls:
            explicit = config.metrics_urls[index]
            # One URL for a name with many addresses: its host is swapped for each address.
            url = explicit if siblings == 1 else _with_host(explicit, split_host_port(address)[0])
        else:
            url = metrics_url_for(address, config.rest_port, config.metrics_path)
        max_batch = config.max_batch_sizes[index] if config.max_batch_sizes else None
        return Replica(address=address, target=target, metrics_url=url, max_batch_size=max_batch)


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    host_text = f"[{host}]" if ":" in host else host
    netloc = f"{host_text}:{parts.port}" if parts.port else host_text
    return parts._replace(netloc=netloc).geturl()
