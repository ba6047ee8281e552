"""Our client (core.client.serving) against the embedded server: the two agree on the wire."""

from __future__ import annotations

import numpy as np
import pytest

from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError
from core.embedded.launcher import EmbeddedServer
from tests.fixtures.servers import HALF_PLUS_TWO_VERSION

pytestmark = pytest.mark.slow


async def test_core_client_predicts_classifies_and_reads_status(
    serving_server: EmbeddedServer,
) -> None:
    settings = ClientSettings(targets=(serving_server.grpc_target,), timeout_s=10.0)
    async with ServingClient(settings) as client:
        result = await client.predict(
            ModelSpec("half_plus_two"), {"x": np.array([[2.0], [4.0]], np.float32)}
        )
        np.testing.assert_allclose(result.outputs["y"], [[3.0], [4.0]])
        assert result.model_version == HALF_PLUS_TWO_VERSION
        assert result.signature_name == "serving_default"

        classified = await client.classify(
            ModelSpec("half_plus_two", signature_name="classify_x_to_y"), [{"x": 4.0}]
        )
        assert classified.classes == [[("half", 4.0), ("two", -4.0)]]

        regressed = await client.regress(
            ModelSpec("half_plus_two", signature_name="regress_x_to_y"), [{"x": 2.0}]
        )
        assert regressed.values == [3.0]

        statuses = await client.get_model_status("broken")
        assert [(s.version, s.state) for s in statuses] == [(2, "END"), (1, "AVAILABLE")]
        assert statuses[1].error_code == "OK"

        metadata = await client.get_model_metadata(ModelSpec("tf2_add", version=1))
        serving = metadata.signatures["serving_default"]
        assert sorted(serving.inputs) == ["a", "b"]
        assert serving.inputs["a"].dtype == "DT_FLOAT"
        assert metadata.model_version == 1

        assert await client.health() == "SERVING"
        with pytest.raises(ServingError) as caught:
            await client.predict(ModelSpec("missing"), {"x": np.ones(1, np.float32)})
        assert str(caught.value) == "NOT_FOUND: Servable not found for request: Latest(missing)"
