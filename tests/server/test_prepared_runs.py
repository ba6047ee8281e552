"""A version's executors are built at load, before it serves, and its model does not run then.

The first request of each version used to pay TensorFlow's graph pruning, optimization and
executor build (51 ms for the demo model, 13 ms for half_plus_two; `python -m
benchmarks.bench_server_cpu startup` reports the figures). The server now builds them at load
time without running the model. The counter model counts its serving_default runs, so these
tests see whether anything ran it before the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request


async def _runs_so_far(stub: Any) -> int:
    request = predict_request("counter", signature="runs", like=np.zeros(1, np.float32))
    (count,) = outputs_of(await stub.Predict(request, timeout=30))["count"]
    return int(count)


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batching"])
async def test_a_version_is_prepared_at_load_without_running_its_model(
    start_server: Any, saved_models_root: Path, batching: bool
) -> None:
    server = start_server(
        model_name="counter", base_path=saved_models_root / "counter", enable_batching=batching
    )
    async with open_channel(server.grpc_target) as channel:
        stub = Stubs(channel).prediction
        assert await _runs_so_far(stub) == 0
        for expected_runs in (1, 2):
            # A deadline, as TF Serving clients send: unbatched, the run uses Session::Run's
            # own executors, which load time built by a dry run that must not run the model.
            request = predict_request("counter", x=np.array([1.5, -2.0], np.float32))
            reply = await stub.Predict(request, timeout=30)
            np.testing.assert_array_equal(outputs_of(reply)["y"], [3.0, -4.0])
            assert await _runs_so_far(stub) == expected_runs
        if not batching:  # batching refuses a run without inputs, as TF Serving's does
            # A signature without inputs has no feed to get wrong: load time left it alone.
            reply = await stub.Predict(predict_request("counter", signature="tick"), timeout=30)
            assert int(outputs_of(reply)["count"]) == 3
