"""gRPC targets as people write them: host and port, and the REST URL beside a gRPC target.

No gRPC import: the console derives its REST URL before the serving modules load.
"""

from __future__ import annotations

import re

# gRPC's name-resolver schemes (https://github.com/grpc/grpc/blob/master/doc/naming.md).
_SCHEME = re.compile(r"^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds):")


def _dns_address(target: str) -> str:
    """'HOST:PORT' of 'dns:HOST:PORT', 'dns:///HOST:PORT' or 'dns://AUTHORITY/HOST:PORT'."""
    address = target.removeprefix("dns:")
    if address.startswith("//"):
        _authority, _, address = address[2:].partition("/")
    return address


def split_host_port(target: str) -> tuple[str, int]:
    """Split 'HOST:PORT', '[IPV6]:PORT' or 'dns:///HOST:PORT' into host and port.

    Raises ValueError naming the target when it is malformed.
    """
    expected = "expected 'HOST:PORT' or '[IPV6]:PORT'"
    address = _dns_address(target) if target.startswith("dns:") else target
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"target {target!r}: {expected}")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon or not host or ":" in host:
            raise ValueError(f"target {target!r}: {expected}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"target {target!r}: expected a port 1-65535, got {port_text!r}")
    return host, int(port_text)


def rest_url_for(target: str, rest_port: int) -> str | None:
    """The REST base URL beside a gRPC target: same host, the given REST port.

    None when there is no REST port or no host to reach it on (unix sockets, xds, no port).
    """
    if not rest_port:
        return None
    scheme = _SCHEME.match(target)
    address = target
    if scheme is not None:
        if scheme.group(1) == "dns":
            address = _dns_address(target)
        elif scheme.group(1) in ("ipv4", "ipv6"):
            address = target[scheme.end() :].split(",")[0]  # the first of the listed addresses
        else:
            return None
    try:
        host, _port = split_host_port(address)
    except ValueError:
        return None
    return f"http://[{host}]:{rest_port}" if ":" in host else f"http://{host}:{rest_port}"
