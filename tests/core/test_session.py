"""The chat session's set-up: the embedded server as the config describes it."""

from __future__ import annotations

from pathlib import Path

from core.chat.session import build_embedded_server
from core.config.schema import Config


def test_the_embedded_server_is_built_from_the_config(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "model_serving": {"tensorflow_serving": {"metrics_path": "/metrics"}},
            "embedded": {"max_batch_size": 8, "all_versions": False},
        }
    )
    server = build_embedded_server(config, tmp_path / "data")
    monitoring = tmp_path / "data" / "monitoring.config"
    assert server.extra_flags == (f"--monitoring_config_file={monitoring}",)
    assert monitoring.read_text() == 'prometheus_config { enable: true path: "/metrics" }\n'
    assert server.log_path == tmp_path / "data" / "server.log"
    assert server.batching_parameters["max_batch_size"] == 8
    assert server.all_versions is False and server.model_name == config.embedded.model_name
