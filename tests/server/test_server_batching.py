"""Server-side batching end to end: concurrent clients are merged, split back, and measured."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.embedded.launcher import EmbeddedServer
from tests.fixtures.servers import PROMETHEUS_PATH
from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request, rpc_error

pytestmark = pytest.mark.slow

CLIENTS = 24


async def _histogram(server: EmbeddedServer, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled histogram on the server's Prometheus endpoint."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.rest_url + PROMETHEUS_PATH) as response,
    ):
        text = await response.text()
    family = next(f for f in text_string_to_metric_families(text) if f.name == name)
    values = {sample.name: sample.value for sample in family.samples if not sample.labels.get("le")}
    return values[f"{name}_sum"], values[f"{name}_count"]


async def test_concurrent_clients_are_batched_and_each_gets_its_own_rows(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        model_name="tf2_add",
        base_path=saved_models_root / "tf2_add",
        enable_batching=True,
        batching_parameters={
            "max_batch_size": 16,
            # Long enough that concurrent requests meet in one batch on a busy machine.
            "batch_timeout_micros": 50_000,
            "num_batch_threads": 1,
        },
    )
    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)

        async def one(index: int) -> np.ndarray:
            a = np.array([index, index + 0.5], np.float32)
            response = await stubs.prediction.Predict(
                predict_request("tf2_add", a=a, b=np.zeros(2, np.float32))
            )
            return outputs_of(response)["sum"]

        results = await asyncio.gather(*(one(index) for index in range(CLIENTS)))
        # Batching refuses what it cannot split along dim 0, with TF Serving's text.
        scalar_error = await rpc_error(
            stubs.prediction.Predict(
                predict_request("tf2_add", a=np.float32(1.0), b=np.float32(2.0))
            )
        )

    for index, total in enumerate(results):
        np.testing.assert_array_equal(total, [index, index + 0.5])
    assert scalar_error == (
        "INVALID_ARGUMENT",
        "Batching Run() input tensors must have at least one dimension",
    )
    processed_sum, processed_count = await _histogram(
        server, ":tensorflow:serving:batching_session:processed_batch_size"
    )
    assert processed_sum == 2 * CLIENTS
    # Fewer runs than requests: some batches carried several clients' rows.
    assert processed_count < CLIENTS
    assert processed_sum / processed_count > 2
