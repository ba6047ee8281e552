"""The grpc.aio channel a ServingClient talks through: settings, target, options, credentials."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from core.client.targets import split_host_port

if TYPE_CHECKING:
    from core.config.schema import Config

# Every service the client calls; the retry policy covers all of them.
RETRIED_SERVICES = (
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "grpc.health.v1.Health",
)
# gRPC clamps maxAttempts to 5, so more than 4 retries cannot be asked for.
MAX_GRPC_ATTEMPTS = 5
USER_AGENT = "deepchat-tfs"


@dataclass(frozen=True)
class TlsSettings:
    """PEM files for TLS (CA only) or mTLS (CA plus client certificate and key)."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name_override: str | None = None


def tls_client_context(
    ca_file: str | Path | None,
    cert_file: str | Path | None,
    key_file: str | Path | None,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """An ssl client context for load clients that speak HTTP themselves: the CA file (or the
    system's roots), a client certificate for mTLS, and the ALPN protocols to offer."""
    context = ssl.create_default_context(
        cafile=None if ca_file is None else str(Path(ca_file).expanduser())
    )
    if cert_file is not None:
        key = None if key_file is None else str(Path(key_file).expanduser())
        context.load_cert_chain(str(Path(cert_file).expanduser()), key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


@dataclass(frozen=True)
class ClientSettings:
    """How a ServingClient reaches TF Serving: targets, deadline, retries, limits, security."""

    targets: tuple[str, ...]
    timeout_s: float = 30.0
    max_retries: int = 3
    max_message_bytes: int = 256 * 2**20
    keepalive_time_s: float = 60.0
    tls: TlsSettings | None = None
    # Never shown (repr): a secret that travels as `authorization: Bearer ...`.
    bearer_token: str | None = field(default=None, repr=False)
    # Extra request metadata (gRPC) or headers (REST), e.g. from --header K=V.
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("ClientSettings.targets is empty; expected at least one 'HOST:PORT'")
        if self.timeout_s <= 0:
            raise ValueError(
                f"ClientSettings.timeout_s: expected seconds > 0, got {self.timeout_s}"
            )
        if self.max_retries < 0:
            raise ValueError(f"ClientSettings.max_retries: expected >= 0, got {self.max_retries}")
        if self.max_message_bytes <= 0:
            raise ValueError(
                f"ClientSettings.max_message_bytes: expected > 0, got {self.max_message_bytes}"
            )
        if len(self.targets) > 1:
            for target in self.targets:
                split_host_port(target)  # replicas must be HOST:PORT; raises ValueError if not

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        targets: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Settings for the serving endpoint of a loaded Config.

        targets replaces the configured ones; the embedded server's port is only known once it
        runs, so its caller passes `targets=(server.grpc_target,)`. env is where the bearer
        token variable is read (default os.environ).
        """
        serving = config.model_serving.tensorflow_serving
        chosen_targets = tuple(config.resolved_targets() if targets is None else targets)
        if not chosen_targets:
            raise ValueError(
                "model_serving.tensorflow_serving: no gRPC target (host is 'embedded'); "
                "expected targets=(the embedded server's grpc_target,) or a host name in the config"
            )
        tls = None
        if serving.tls is not None:  # an empty tls section means TLS with the system's roots
            tls = TlsSettings(
                ca_file=serving.tls.ca_file,
                cert_file=serving.tls.cert_file,
                key_file=serving.tls.key_file,
                server_name_override=serving.tls.server_name_override,
            )
        return cls(
            targets=chosen_targets,
            timeout_s=float(serving.timeout),
            max_retries=int(serving.max_retries),
            max_message_bytes=int(serving.max_message_mb) * 2**20,
            keepalive_time_s=float(serving.keepalive_time_s),
            tls=tls,
            bearer_token=config.bearer_token(env),
        )


@dataclass(frozen=True)
class ChannelTarget:
    """What grpc.aio is given as target, and the authority to present when it cannot derive one."""

    target: str
    authority: str | None = None


def service_config(max_retries: int) -> dict[str, Any]:
    """gRPC service config: round_robin over all addresses, retries of UNAVAILABLE."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if max_retries > 0:
        config["methodConfig"] = [
            {
                "name": [{"service": service} for service in RETRIED_SERVICES],
                "retryPolicy": {
                    "maxAttempts": min(max_retries + 1, MAX_GRPC_ATTEMPTS),
                    "initialBackoff": "0.05s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return config


def channel_options(
    settings: ClientSettings, authority: str | None = None
) -> list[tuple[str, str | int]]:
    """Channel arguments for the settings (message limits, keepalive, service config)."""
    options: list[tuple[str, str | int]] = [
        # TF Serving tensors easily pass gRPC's 4 MB default, in both directions.
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # A default gRPC server (TF Serving's included) allows a ping every 5 min while calls
        # run and sends GOAWAY too_many_pings after 2 strikes; pinging only during calls, at
        # most 2 pings without data (gRPC's default), can never reach a third strike.
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 2),
        # With no retries asked for, gRPC's retry machinery (transparent retries included) is
        # left out of every call's path.
        ("grpc.enable_retries", 1 if settings.max_retries > 0 else 0),
        ("grpc.service_config", json.dumps(service_config(settings.max_retries))),
        # The service config above is ours; a DNS TXT record must not replace it.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.primary_user_agent", USER_AGENT),
        # gRPC backs off up to 120 s between reconnects by default; a console watching a
        # restarted server should notice it within seconds.
        ("grpc.max_reconnect_backoff_ms", 10_000),
    ]
    if authority is not None:
        options.append(("grpc.default_authority", authority))
    if settings.tls is not None and settings.tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", settings.tls.server_name_override))
    return options


async def _addresses(host: str, port: int) -> list[str]:
    """IP addresses of a host: the literal itself, or what the system resolver answers."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_target(targets: Sequence[str]) -> ChannelTarget:
    """One gRPC target for all replicas: as given for one, an ipv4:/ipv6: address list for several.

    gRPC Python has no multi-host resolver, so several host names are resolved once, here; the
    first target becomes the authority (and so the name TLS verifies) for all of them.
    Raises ValueError for a malformed target and OSError when a name does not resolve.
    """
    if len(targets) == 1:
        return ChannelTarget(targets[0])
    by_family: dict[int, list[str]] = {4: [], 6: []}
    families_per_target: list[set[int]] = []
    for target in targets:
        host, port = split_host_port(target)
        families: set[int] = set()
        for address in await _addresses(host, port):
            version = ipaddress.ip_address(address).version
            families.add(version)
            entry = f"{address}:{port}" if version == 4 else f"[{address}]:{port}"
            if entry not in by_family[version]:
                by_family[version].append(entry)
        families_per_target.append(families)
    for version in (4, 6):
        if all(version in families for families in families_per_target):
            return ChannelTarget(f"ipv{version}:" + ",".join(by_family[version]), targets[0])
    raise ValueError(
        f"targets {list(targets)}: expected addresses of one IP family (all IPv4 or all IPv6)"
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files; a client certificate and key make it mTLS."""
    if (tls.cert_file is None) != (tls.key_file is None):
        raise ValueError(
            "tls: cert_file and key_file go together for mTLS; "
            f"got cert_file={tls.cert_file!r}, key_file={tls.key_file!r}"
        )

    def read(label: str, path: str | Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as error:
            raise ValueError(f"tls.{label} {str(path)!r}: cannot read ({error.strerror})") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read("ca_file", tls.ca_file),
        private_key=read("key_file", tls.key_file),
        certificate_chain=read("cert_file", tls.cert_file),
    )


async def open_channel(
    settings: ClientSettings, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """A new grpc.aio channel for the settings (must run inside the event loop that uses it).

    credentials, when given, are the ones channel_credentials(settings.tls) built earlier.
    """
    target = await resolve_target(settings.targets)
    options = channel_options(settings, target.authority)
    if settings.tls is None:
        return grpc.aio.insecure_channel(target.target, options=options)
    if credentials is None:
        credentials = channel_credentials(settings.tls)
    return grpc.aio.secure_channel(target.target, credentials, options=options)
