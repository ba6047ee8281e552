"""An empty --model_config_file starts the server with no models, as TF Serving does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_an_empty_model_config_file_takes_no_action_and_starts(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text("")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port=0", f"--model_config_file={config}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("deepchat-tfs serve: ready grpc=127.0.0.1:")
        assert ready.rstrip().endswith("rest=off models=")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Taking no action for empty config." in stderr
