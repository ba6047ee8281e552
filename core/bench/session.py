"""The set-up every load run shares, from `deepchat-tfs bench` or the console's burst screen.

Connection settings for load (the console's TLS and token, no retries), the model's inputs from
its signature, and the report built from the finished run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from core.client.serving import ClientSettings, ModelSpec
from core.load.burst import BurstRun, BurstTarget
from core.load.inputs import choose_inputs, fetch_signature
from core.report.model import BenchReport, build_report


def load_settings(
    targets: Sequence[str], timeout_s: float, connection: ClientSettings | None = None
) -> ClientSettings:
    """Settings for load on these targets: the connection's TLS and token, no retries.

    Load runs never retry: a retried UNAVAILABLE would hide in the latency instead of showing.
    """
    if connection is None:
        return ClientSettings(targets=tuple(targets), timeout_s=timeout_s, max_retries=0)
    return dataclasses.replace(
        connection, targets=tuple(targets), timeout_s=timeout_s, max_retries=0
    )


async def prepare_target(
    settings: ClientSettings,
    model: ModelSpec,
    *,
    data: str | None = None,
    prompts: list[str] | None = None,
) -> BurstTarget:
    """What the workers send: the model's signature read once, inputs chosen from it."""
    signature = await fetch_signature(settings, model)
    return BurstTarget(settings, model, tuple(choose_inputs(signature, data=data, prompts=prompts)))


async def run_to_report(run: BurstRun, label: str | None) -> tuple[BenchReport, bool]:
    """Run a burst to its end; (its report, whether it was aborted)."""
    result = await run.run()
    return build_report(result, label), result.aborted
