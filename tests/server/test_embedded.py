"""core.embedded.launcher: the launcher the console and bench use to run the server as a child."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from core.embedded import launcher as embedded
from core.embedded.launcher import EmbeddedServer, EmbeddedServerError
from core.identity import DEMO_MODEL_REVISION
from core.wire import protos
from tests.server.grpc_helpers import Stubs, open_channel, outputs_of, predict_request

pytestmark = pytest.mark.slow


def _wait_until_gone(pid: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


async def test_start_serve_and_stop(saved_models_root: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    server = EmbeddedServer(
        "tf2_add", saved_models_root / "tf2_add", enable_batching=False, log_path=log_path
    )
    assert server.state == "starting" and server.pid is None
    async with server:
        assert server.state == "ready"
        assert server.grpc_target.startswith("127.0.0.1:")
        assert server.rest_url.startswith("http://127.0.0.1:")
        assert psutil.pid_exists(server.pid or -1)
        async with open_channel(server.grpc_target) as channel:
            a = np.array([1.0], np.float32)
            response = await Stubs(channel).prediction.Predict(predict_request("tf2_add", a=a, b=a))
        assert outputs_of(response)["sum"].tolist() == [2.0]
    assert server.state == "exited"
    assert server.returncode == 0
    # TensorFlow's own lines went to the log file, not to anybody's terminal.
    assert "Successfully loaded servable version {name: tf2_add version: 2}" in log_path.read_text()


def test_a_start_failure_carries_the_log_tail(tmp_path: Path) -> None:
    server = EmbeddedServer("m", tmp_path / "nowhere", log_path=tmp_path / "server.log")
    with pytest.raises(EmbeddedServerError) as caught:
        server.start_sync(timeout_s=60)
    assert "exited during start-up" in str(caught.value)
    assert "is not a directory" in caught.value.log_tail
    assert server.state == "exited"


def test_the_server_exits_when_its_parent_is_killed(
    saved_models_root: Path, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from core.embedded.launcher import EmbeddedServer
        server = EmbeddedServer("tf2_add", Path({str(saved_models_root / "tf2_add")!r}),
                                enable_batching=False, log_path=Path({str(tmp_path / "s.log")!r}))
        server.start_sync()
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(server_pid)
        parent.kill()
        parent.wait()
        assert _wait_until_gone(server_pid), "the server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


async def test_first_run_exports_the_demo_model_into_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    base_path = embedded.default_model_base_path()
    assert str(base_path).startswith(str(tmp_path / "data"))
    # An export by an older release (no revision mark) is replaced, not served.
    (base_path / "1").mkdir(parents=True)
    (base_path / "1" / "left-by-an-older-release").write_text("stale")
    async with EmbeddedServer() as server:
        assert (base_path / "1").is_dir() and (base_path / "2").is_dir()
        assert not (base_path / "1" / "left-by-an-older-release").exists()
        assert (base_path / "REVISION").read_text().strip() == str(DEMO_MODEL_REVISION)
        assert embedded.default_log_path().exists()
        async with open_channel(server.grpc_target) as channel:
            response = await Stubs(channel).prediction.Predict(
                predict_request(
                    "deepchat_model",
                    text=np.array([b"how do I load a new model version?"], dtype=object),
                )
            )
    outputs = outputs_of(response)
    assert response.model_spec.version.value == 2
    assert outputs["reply"].dtype == object and outputs["reply"][0]
    assert outputs["confidence"].shape == (1,)
    # No export staging directory is left behind.
    assert sorted(p.name for p in base_path.parent.iterdir()) == ["deepchat_model"]


async def test_all_versions_serves_every_version_through_a_model_config_file(
    saved_models_root: Path, tmp_path: Path
) -> None:
    server = EmbeddedServer(
        "tf2_add",
        saved_models_root / "tf2_add",
        enable_batching=False,
        all_versions=True,
        log_path=tmp_path / "server.log",
    )
    async with server:
        config_files = list(tmp_path.glob("models-*.config"))
        assert len(config_files) == 1
        assert "model_version_policy { all {} }" in config_files[0].read_text()
        async with open_channel(server.grpc_target) as channel:
            request = protos.get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "tf2_add"
            response = await Stubs(channel).model.GetModelStatus(request)
    states = {status.version: status.state for status in response.model_version_status}
    available = protos.get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states == {1: available, 2: available}
    # The generated config file goes with the server.
    assert list(tmp_path.glob("models-*.config")) == []


def test_run_files_of_dead_launchers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(finished.stdout)
    assert not psutil.pid_exists(dead)
    names = [
        f"batching-{dead}-8500.txt",
        f"models-{dead}-8500.config",
        f"batching-{os.getpid()}-8501.txt",
        f"models-{os.getpid()}-8501.config",
        "models.config",
        "server.log",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    embedded.remove_orphaned_run_files(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[2:])
