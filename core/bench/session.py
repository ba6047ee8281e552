"""The set-up every load run shares, from `deepchat-tfs bench` or the console's burst screen.

Connection settings for load (the console's TLS, token and headers, no retries), the model's
inputs from its signature (sent over gRPC, or as REST predict bodies), and the report built from
the finished run with what the server's own metrics saw during it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.client.channel import TlsSettings
from core.client.serving import ClientSettings, ModelSpec
from core.load.burst import BurstRun, BurstTarget
from core.load.inputs import choose_inputs, fetch_signature, read_body
from core.metrics.timeseries import SecondRow
from core.report.model import BenchReport, build_report

PROTOCOLS = ("grpc", "rest")


def load_settings(
    targets: Sequence[str], timeout_s: float, connection: ClientSettings | None = None
) -> ClientSettings:
    """Settings for load on these targets: the connection's TLS, token and headers, no retries.

    Load runs never retry: a retried UNAVAILABLE would hide in the latency instead of showing.
    """
    if connection is None:
        return ClientSettings(targets=tuple(targets), timeout_s=timeout_s, max_retries=0)
    return dataclasses.replace(
        connection, targets=tuple(targets), timeout_s=timeout_s, max_retries=0
    )


def parse_headers(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--header K=V (or 'K: V') values as pairs; ValueError naming the one that is malformed."""
    headers = []
    for pair in pairs:
        key, separator, value = pair.partition("=") if "=" in pair else pair.partition(":")
        if not separator or not key.strip():
            raise ValueError(f"--header {pair!r}: expected KEY=VALUE, e.g. x-team=search")
        headers.append((key.strip(), value.strip()))
    return tuple(headers)


def connection_settings(
    *,
    targets: Sequence[str],
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    server_name: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> ClientSettings:
    """The console's connection from a config file (TLS, token variable) with flags over it.

    Raises ValueError (or core.config's ConfigError) naming the file or flag that is wrong.
    """
    settings: ClientSettings
    if config_path is not None:
        from core.config.schema import load_config

        config = load_config(config_path, env=env).config
        settings = ClientSettings.from_config(config, targets=tuple(targets) or None, env=env)
    else:
        settings = ClientSettings(targets=tuple(targets) or ("localhost:8500",))
    tls = settings.tls
    if any(value is not None for value in (ca_file, cert_file, key_file, server_name)):
        base = tls or TlsSettings()
        tls = TlsSettings(
            ca_file=ca_file if ca_file is not None else base.ca_file,
            cert_file=cert_file if cert_file is not None else base.cert_file,
            key_file=key_file if key_file is not None else base.key_file,
            server_name_override=server_name
            if server_name is not None
            else base.server_name_override,
        )
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ValueError("--cert and --key go together for mTLS; give both or neither")
    return dataclasses.replace(settings, tls=tls, headers=(*settings.headers, *headers))


async def prepare_target(
    settings: ClientSettings,
    model: ModelSpec,
    *,
    data: str | None = None,
    prompts: list[str] | None = None,
    rest_url: str | None = None,
) -> BurstTarget:
    """What the workers send: the model's signature read once, inputs chosen from it.

    With rest_url the run posts TF Serving REST predict bodies there (the --data body as given,
    or the prompts as instances); the model is checked over REST, so no gRPC port is needed.
    """
    if rest_url is None:
        signature = await fetch_signature(settings, model)
        inputs = choose_inputs(signature, data=data, prompts=prompts)
        return BurstTarget(settings, model, tuple(inputs))
    from core.load.rest import check_model, make_target, predict_body

    inputs = choose_inputs(None, data=data, prompts=prompts)  # checks --data before any call
    raw = read_body(data) if data is not None else None
    bodies = [predict_body(rows, model.signature_name, raw) for rows in inputs]
    rest = make_target(
        rest_url,
        model,
        bodies,
        headers=settings.headers,
        bearer_token=settings.bearer_token,
        tls=settings.tls,
    )
    await check_model(rest, model, settings.timeout_s)
    return BurstTarget(settings, model, tuple(inputs), rest=rest)


@dataclass
class BenchOutcome:
    """A finished run: its report, whether it was aborted, and its seconds one by one."""

    report: BenchReport
    aborted: bool
    seconds: list[SecondRow] = field(default_factory=list)


async def run_bench(
    run: BurstRun, label: str | None, *, metrics_url: str | None = None
) -> BenchOutcome:
    """Run a burst to its end; with metrics_url, add what the server saw in the measured window.

    The server is scraped when the measured window opens and after the run; a scrape that fails
    leaves the report without a server section and says why in its failures.
    """
    scraping: asyncio.Task[object] | None = None
    model_name = run.target.model.name
    if metrics_url is not None:
        scraping = asyncio.ensure_future(_scrape_at_window_start(run, metrics_url, model_name))
    try:
        result = await run.run()
    finally:
        if scraping is not None and not scraping.done():
            scraping.cancel()
    report = build_report(result, label)
    if scraping is not None:
        report = await _with_server_side(report, scraping, metrics_url or "", model_name)
    return BenchOutcome(report, result.aborted, result.seconds)


# The opening scrape is sent this long before the measured window, so the server answers it
# before the window's first requests arrive.
SCRAPE_LEAD_S = 0.03


async def _scrape_at_window_start(run: BurstRun, url: str, model_name: str) -> object:
    import aiohttp  # noqa: F401  (imported before the window opens, not during it)
    import prometheus_client.parser  # noqa: F401

    from core.report.server_side import fetch_scrape

    while run.measure_at is None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(run.measure_at - SCRAPE_LEAD_S - time.monotonic(), 0.0))
    return await fetch_scrape(url, model_name)


async def _with_server_side(
    report: BenchReport, scraping: asyncio.Task[object], url: str, model_name: str
) -> BenchReport:
    from core.report.server_side import Scrape, fetch_scrape, server_side

    problem = None
    with contextlib.suppress(asyncio.CancelledError):
        try:
            before = await scraping
            after = await fetch_scrape(url, model_name)
            assert isinstance(before, Scrape)
            figures = server_side(before, after, report.duration_s)
            return report.model_copy(update={"server": figures})
        except ValueError as error:
            problem = str(error)
    failures = [*report.failures, problem or f"--metrics {url}: the run ended before a scrape"]
    return report.model_copy(update={"failures": failures})


async def run_to_report(run: BurstRun, label: str | None) -> tuple[BenchReport, bool]:
    """Run a burst to its end; (its report, whether it was aborted)."""
    outcome = await run_bench(run, label)
    return outcome.report, outcome.aborted
