"""A freshly started server answers its first seconds of traffic without a stall.

The first full garbage collection over TensorFlow's objects used to land in the first seconds of
traffic (p99 140-280 ms at 200 req/s); the server now pays it before it reports ready. The bound
here is wide on purpose: the machine running tests is shared and noisy.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.grpc_helpers import Stubs, open_channel, predict_request

pytestmark = pytest.mark.slow

RATE = 200.0
SECONDS = 5.0
P99_BOUND_MS = 100.0


async def _open_loop_latencies_ms(target: str, rate: float, seconds: float) -> np.ndarray:
    """Latency of each request from its intended send time, sending on schedule regardless."""
    request = predict_request("half_plus_two", x=np.array([[1.0]], np.float32))
    async with open_channel(target) as channel:
        predict = Stubs(channel).prediction.Predict
        latencies: list[float] = []

        async def one(intended_at: float) -> None:
            await predict(request, timeout=30)
            latencies.append(time.perf_counter() - intended_at)

        tasks = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            intended_at = started + index / rate
            delay = intended_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(intended_at)))
        await asyncio.gather(*tasks)
    return np.array(latencies) * 1000


async def test_first_seconds_at_200_rps_have_no_stall(
    start_server: Any, saved_models_root: Path
) -> None:
    server = start_server(model_name="half_plus_two", base_path=saved_models_root / "half_plus_two")
    latencies = await _open_loop_latencies_ms(server.grpc_target, RATE, SECONDS)
    assert latencies.size == int(RATE * SECONDS)
    p99 = float(np.percentile(latencies, 99))
    assert p99 < P99_BOUND_MS, f"p99 {p99:.1f} ms over the first {SECONDS:.0f} s"
