"""The `demo_server` fixture other suites use: the demo chat model behind batching, over gRPC."""

from __future__ import annotations

import numpy as np
import pytest

from core.embedded.launcher import EmbeddedServer
from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request

pytestmark = pytest.mark.slow

QUESTION = np.array([b"how do I enable batching?"], dtype=object)


async def test_both_demo_versions_answer_and_differ(demo_server: EmbeddedServer) -> None:
    async with open_channel(demo_server.grpc_target) as channel:
        stubs = Stubs(channel)
        latest = await stubs.prediction.Predict(predict_request("deepchat_model", text=QUESTION))
        first = await stubs.prediction.Predict(
            predict_request("deepchat_model", version=1, text=QUESTION)
        )
    assert latest.model_spec.version.value == 2
    assert first.model_spec.version.value == 1
    latest_reply = outputs_of(latest)["reply"][0]
    first_reply = outputs_of(first)["reply"][0]
    assert latest_reply and first_reply and latest_reply != first_reply
    assert 0.0 <= float(outputs_of(latest)["confidence"][0]) <= 1.0


async def test_rest_writes_utf8_text_unescaped(demo_server: EmbeddedServer) -> None:
    import aiohttp

    url = f"{demo_server.rest_url}/v1/models/deepchat_model:predict"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"instances": ["how do I enable batching?"]}) as reply:
            body = await reply.read()
    # Version 2 opens with a bold topic and an em dash; TF Serving writes it as UTF-8 bytes.
    assert "—".encode() in body and b"\\u2014" not in body
