"""The embedded server's REST API and Prometheus endpoint, over real HTTP (aiohttp client)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.embedded.launcher import EmbeddedServer
from tests.fixtures.servers import HALF_PLUS_TWO_VERSION, PROMETHEUS_PATH

pytestmark = pytest.mark.slow


@pytest.fixture
async def http(serving_server: EmbeddedServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=serving_server.rest_url) as session:
        yield session


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {}
    if isinstance(body, (bytes, str)):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    async with http.request(method, path, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_model_status_json_is_tf_servings(http: aiohttp.ClientSession) -> None:
    status, body = await _call(http, "GET", "/v1/models/half_plus_two")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": str(HALF_PLUS_TWO_VERSION),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    status, body = await _call(http, "GET", "/v1/models/tf2_add/versions/1")
    assert [v["version"] for v in body["model_version_status"]] == ["1"]


async def test_metadata_json_nests_the_signature_def_map(http: aiohttp.ClientSession) -> None:
    status, body = await _call(http, "GET", "/v1/models/tf2_add/labels/stable/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "tf2_add", "signature_name": "", "version": "1"}
    serving = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert serving["inputs"]["a"]["dtype"] == "DT_FLOAT"
    assert serving["inputs"]["a"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]


async def test_predict_row_format_with_a_single_unnamed_output(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await _call(
        http, "POST", "/v1/models/half_plus_two:predict", {"instances": [2.0, 3.0, 4.0]}
    )
    assert (status, body) == (200, {"predictions": [3.0, 3.5, 4.0]})


async def test_predict_columnar_format_and_versions(http: aiohttp.ClientSession) -> None:
    payload = {"inputs": {"a": [1.0, 2.0], "b": [3.0, 4.0]}}
    status, body = await _call(http, "POST", "/v1/models/tf2_add/versions/1:predict", payload)
    assert (status, body) == (200, {"outputs": {"sum": [4.0, 6.0], "scaled": [4.0, 6.0]}})
    status, body = await _call(http, "POST", "/v1/models/tf2_add/labels/canary:predict", payload)
    assert body["outputs"]["scaled"] == [8.0, 12.0]


async def test_predict_row_format_named_inputs(http: aiohttp.ClientSession) -> None:
    status, body = await _call(
        http, "POST", "/v1/models/tf2_add:predict", {"instances": [{"a": 1.0, "b": 2.0}]}
    )
    assert (status, body) == (200, {"predictions": [{"sum": 3.0, "scaled": 6.0}]})


async def test_predict_strings_and_b64(http: aiohttp.ClientSession) -> None:
    payload = {"instances": ["hi", {"b64": base64.b64encode(b"yo").decode()}]}
    status, body = await _call(http, "POST", "/v1/models/strings:predict", payload)
    assert status == 200
    first, second = body["predictions"]
    assert (first["upper"], first["length"]) == ("HI", 2)
    # raw_bytes ends in _bytes (and holds invalid UTF-8): it comes back base64-encoded.
    assert base64.b64decode(second["raw_bytes"]["b64"]) == b"yo\xff"


async def test_classify_and_regress_json(http: aiohttp.ClientSession) -> None:
    examples = {"examples": [{"x": 1.0}, {"x": 2.0}]}
    status, body = await _call(
        http,
        "POST",
        "/v1/models/half_plus_two:classify",
        {"signature_name": "classify_x_to_y", **examples},
    )
    assert (status, body) == (
        200,
        {"results": [[["half", 2.5], ["two", -2.5]], [["half", 3.0], ["two", -3.0]]]},
    )
    status, body = await _call(
        http,
        "POST",
        "/v1/models/half_plus_two:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}]},
    )
    assert (status, body) == (200, {"results": [4.0]})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b'{"instances": [1.0',
            400,
            "JSON Parse error",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": "nope", "instances": [1.0]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": 7, "instances": [1.0]},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "POST",
            "/v1/models/broken/versions/2:predict",
            {"instances": [{"a": 1.0, "b": 1.0}]},
            400,
            "Servable {name: broken version: 2} failed to load",
        ),
        (
            "POST",
            "/v1/models/tf2_add/labels/nope:predict",
            {"instances": [{"a": 1.0, "b": 1.0}]},
            400,
            "Unrecognized servable version label: nope",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:regress",
            {"examples": [{"x": 1.0}]},
            400,
            # Method names go unchecked by default, as in TF Serving: the shape is checked.
            "No regression inputs found in SignatureDef: ",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        (
            "POST",
            "/v1/models/half_plus_two:explode",
            {},
            400,
            "Malformed request: POST /v1/models/half_plus_two:explode",
        ),
        (
            "PUT",
            "/v1/models/half_plus_two",
            {},
            400,
            "Malformed request: PUT /v1/models/half_plus_two",
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-model-status",
        "bad-json",
        "unknown-signature",
        "signature-not-string",
        "failed-load",
        "unknown-label",
        "wrong-signature-kind",
        "no-model-name",
        "unknown-verb",
        "unsupported-method",
    ],
)
async def test_errors_are_json_with_tf_servings_http_status(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    status: int,
    error: str,
) -> None:
    got_status, got_body = await _call(http, method, path, body)
    assert got_status == status
    assert set(got_body) == {"error"}
    assert got_body["error"].startswith(error)


async def test_paths_outside_the_api_are_not_found(http: aiohttp.ClientSession) -> None:
    status, _ = await _call(http, "GET", "/v2/models/half_plus_two")
    assert status == 404


async def test_prometheus_metrics_parse_and_count_requests(http: aiohttp.ClientSession) -> None:
    await _call(http, "POST", "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    await _call(http, "POST", "/v1/models/nope:predict", {"instances": [1.0]})
    async with http.get(PROMETHEUS_PATH) as response:
        assert response.status == 200
        text = await response.text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    counts = {
        (sample.labels["model_name"], sample.labels["status"]): sample.value
        for sample in families[":tensorflow:serving:request_count"].samples
    }
    assert counts[("half_plus_two", "OK")] >= 1
    assert counts[("nope", "NOT_FOUND")] >= 1
    latency = families[":tensorflow:serving:request_latency"]
    assert latency.type == "histogram"
    rest_predicts = [
        sample
        for sample in latency.samples
        if sample.name.endswith("_count")
        and sample.labels == {"model_name": "half_plus_two", "API": "Predict", "entrypoint": "REST"}
    ]
    assert rest_predicts and rest_predicts[0].value >= 1
    assert ":tensorflow:serving:runtime_latency" in families
