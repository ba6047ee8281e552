"""Tiny requests that declare huge tensors, and malformed ones, against the real server.

Each is answered at once (INVALID_ARGUMENT or RESOURCE_EXHAUSTED, TF Serving's 400 over REST)
and the server's RSS stays near where it was. Bounds are generous: the machine is shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from benchmarks.hostile_requests import (
    GRPC_GARBAGE,
    declared_request,
    long_number_body,
    nested_json_body,
    text_rows_body,
)
from core.embedded.launcher import EmbeddedServer
from core.wire import protos
from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request, rpc_error
from tests.server.hostile import watch_rss

pytestmark = pytest.mark.slow

DT_FLOAT = protos.types_pb2.DT_FLOAT
DT_STRING = protos.types_pb2.DT_STRING
# The server may grow a little while it answers (buffers, metrics); never by the tensor's size.
RSS_GROWTH_BOUND_MB = 200
ANSWER_BOUND_S = 10


@pytest.fixture
async def stubs(serving_server: EmbeddedServer) -> AsyncIterator[Stubs]:
    async with open_channel(serving_server.grpc_target) as channel:
        yield Stubs(channel)


@pytest.mark.parametrize(
    ("model", "alias", "dtype", "shape", "values"),
    [
        ("half_plus_two", "x", DT_FLOAT, [10**9, 1], [1.0]),  # one value fills 4 GB
        ("half_plus_two", "x", DT_FLOAT, [10**9, 1], None),  # zeros fill 4 GB
        ("strings", "text", DT_STRING, [10**8], None),  # 100 million empty strings
        ("strings", "text", DT_STRING, [10**6], [b"x" * 4096]),  # the last string copied
        ("half_plus_two", "x", DT_FLOAT, [10**6, 10**6], [1.0]),  # 1e12 elements
    ],
)
async def test_a_declared_tensor_over_the_ceiling_is_refused_before_it_is_built(
    stubs: Stubs,
    serving_server: EmbeddedServer,
    model: str,
    alias: str,
    dtype: int,
    shape: list[int],
    values: list[object] | None,
) -> None:
    request = declared_request(model, alias, dtype, shape, values)
    assert request.ByteSize() < 5000
    with watch_rss(serving_server.pid) as rss:
        code, details = await rpc_error(stubs.prediction.Predict(request, timeout=60))
    assert code == "RESOURCE_EXHAUSTED"
    assert details.startswith("OOM when allocating tensor with shape[")
    assert "--max_request_tensor_bytes" in details
    assert rss.elapsed_s < ANSWER_BOUND_S
    assert rss.growth_mb < RSS_GROWTH_BOUND_MB


@pytest.mark.parametrize(
    "shape", [[2**40, 2**40], [-1, 1], [1] * 255], ids=["int64-overflow", "negative", "rank-255"]
)
async def test_a_shape_tensorflow_calls_invalid_is_a_tensor_parsing_error(
    stubs: Stubs, shape: list[int]
) -> None:
    request = declared_request("half_plus_two", "x", DT_FLOAT, shape, [1.0])
    code, details = await rpc_error(stubs.prediction.Predict(request))
    assert (code, details) == ("INVALID_ARGUMENT", "tensor parsing error: x")


async def test_tensor_content_of_the_wrong_size_is_a_tensor_parsing_error(stubs: Stubs) -> None:
    request = declared_request("half_plus_two", "x", DT_FLOAT, [10**8, 1])
    request.inputs["x"].tensor_content = b"\0" * 8
    code, details = await rpc_error(stubs.prediction.Predict(request))
    assert (code, details) == ("INVALID_ARGUMENT", "tensor parsing error: x")


async def test_a_filled_tensor_under_the_ceiling_still_runs(stubs: Stubs) -> None:
    request = declared_request("half_plus_two", "x", DT_FLOAT, [1000, 1], [2.0])
    response = await stubs.prediction.Predict(request)
    np.testing.assert_allclose(outputs_of(response)["y"], np.full((1000, 1), 3.0))


async def test_the_ceiling_is_a_flag(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "tf2_add", "base_path": saved_models_root / "tf2_add"}],
        flags=["--max_request_tensor_bytes=4000"],
    )
    small = np.ones(400, np.float32)  # 1600 bytes per input, 3200 in all
    large = np.ones(600, np.float32)  # 4800 in all
    async with open_channel(server.grpc_target) as channel:
        stubs = Stubs(channel)
        await stubs.prediction.Predict(predict_request("tf2_add", a=small, b=small))
        code, details = await rpc_error(
            stubs.prediction.Predict(predict_request("tf2_add", a=large, b=large))
        )
    assert code == "RESOURCE_EXHAUSTED"
    assert "over the server's limit of 4000 bytes" in details


async def test_batching_refuses_a_large_task_before_building_it(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}],
        enable_batching=True,
        batching_parameters={"max_batch_size": 32},
    )
    request = declared_request("half_plus_two", "x", DT_FLOAT, [10**9, 1], [1.0])
    async with open_channel(server.grpc_target) as channel:
        with watch_rss(server.pid) as rss:
            code, details = await rpc_error(Stubs(channel).prediction.Predict(request))
    assert code == "INVALID_ARGUMENT"
    assert details == "Task size 1000000000 is larger than maximum input batch size 32"
    assert rss.elapsed_s < ANSWER_BOUND_S
    assert rss.growth_mb < RSS_GROWTH_BOUND_MB


async def test_100000_text_rows_to_the_batching_demo_model_are_refused_at_once(
    demo_server: EmbeddedServer,
) -> None:
    body = text_rows_body(100_000)
    async with aiohttp.ClientSession() as http:
        with watch_rss(demo_server.pid) as rss:
            async with http.post(
                f"{demo_server.rest_url}/v1/models/deepchat_model:predict", data=body
            ) as response:
                status, answer = response.status, await response.json()
    assert status == 400
    assert answer == {"error": "Task size 100000 is larger than maximum input batch size 32"}
    assert rss.elapsed_s < ANSWER_BOUND_S
    assert rss.growth_mb < RSS_GROWTH_BOUND_MB


# ---- malformed requests get TF Serving's 400 / INVALID_ARGUMENT with a plain message -----------


async def _post(server: EmbeddedServer, body: bytes) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.rest_url}/v1/models/half_plus_two:predict", data=body) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            nested_json_body(10_000),
            "JSON Parse error: the document nests arrays or objects too deeply",
        ),
        (long_number_body(5000), "JSON Parse error: Number too big to be stored in double."),
    ],
    ids=["10000-levels", "5000-digits"],
)
async def test_rest_json_too_deep_or_too_long_is_a_plain_400(
    serving_server: EmbeddedServer, body: bytes, message: str
) -> None:
    status, answer = await _post(serving_server, body)
    assert (status, answer) == (400, {"error": message})


async def test_rest_json_nested_just_under_the_parser_limit_is_a_plain_400(
    serving_server: EmbeddedServer,
) -> None:
    body = nested_json_body(900)
    status, answer = await _post(serving_server, body)
    assert status == 400
    assert "Error" not in answer["error"] and "Traceback" not in answer["error"]


async def test_a_rest_body_over_the_limit_is_refused(
    start_server: Callable[..., EmbeddedServer], saved_models_root: Path
) -> None:
    server = start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}],
        flags=["--rest_api_max_body_bytes=1000"],
    )
    status, answer = await _post(server, b'{"instances": [' + b"1.0," * 400 + b"1.0]}")
    assert status == 413
    assert answer == {
        "error": "Request body is larger than the server's limit of 1000 bytes "
        "(--rest_api_max_body_bytes)"
    }
    status, _ = await _post(server, b'{"instances": [[1.0]]}')
    assert status == 200


async def test_garbage_bytes_over_grpc_are_invalid_argument(
    serving_server: EmbeddedServer,
) -> None:
    async with open_channel(serving_server.grpc_target) as channel:
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        code, details = await rpc_error(predict(GRPC_GARBAGE))
        # The service still answers well-formed requests on the same channel.
        status = await Stubs(channel).model.GetModelStatus(
            protos.get_model_status_pb2.GetModelStatusRequest(
                model_spec=protos.model_pb2.ModelSpec(name="half_plus_two")
            )
        )
    assert code == "INVALID_ARGUMENT"
    assert details == (
        f"Failed to parse the request: its {len(GRPC_GARBAGE)} bytes are not a valid "
        "tensorflow.serving.PredictRequest"
    )
    assert status.model_version_status


async def test_100000_text_rows_to_the_unbatched_demo_model_stop_at_tensorflows_memory_limit(
    start_server: Callable[..., EmbeddedServer], demo_model_base_path: Path
) -> None:
    # The rows are small; the model's intermediate tensors are what grows: the scores alone are
    # 100,000 x 450 floats (180 MB), over a 128 MB cap that still holds the loaded model.
    limit_mb = 128
    server = start_server(
        models=[{"name": "deepchat_model", "base_path": demo_model_base_path}],
        flags=[f"--tensorflow_cpu_memory_limit_in_mb={limit_mb}"],
    )
    body = text_rows_body(100_000)
    async with aiohttp.ClientSession() as http:
        with watch_rss(server.pid) as rss:
            async with http.post(
                f"{server.rest_url}/v1/models/deepchat_model:predict",
                data=body,
                timeout=aiohttp.ClientTimeout(total=120),
            ) as response:
                status, answer = response.status, await response.json()
        # The server still answers afterwards.
        async with http.post(
            f"{server.rest_url}/v1/models/deepchat_model:predict",
            json={"instances": ["what is a canary"]},
        ) as response:
            assert response.status == 200
    assert status == 429
    assert answer["error"].startswith("OOM when allocating tensor with shape")
    assert rss.growth_mb < limit_mb + RSS_GROWTH_BOUND_MB
