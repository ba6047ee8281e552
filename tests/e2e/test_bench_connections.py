"""`deepchat-tfs bench` reaching real infrastructure: a Prometheus Pushgateway, and a server that
needs mTLS, a bearer token and extra metadata (the console's connection options)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.trust import approve
from core.embedded.launcher import EmbeddedServer, free_loopback_port
from core.report.model import load_report
from tests.e2e.test_bench import DATA, bench
from tests.fixtures.fault_servicer import FaultServer
from tests.fixtures.tls_certificates import TestCertificates, make_test_certificates

pytestmark = pytest.mark.slow

PUSHGATEWAY = "prometheus-pushgateway"


def _pushgateway_binary() -> str:
    """The Pushgateway binary, installed with Debian's apt when missing and possible."""
    found = shutil.which(PUSHGATEWAY)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{PUSHGATEWAY} is not installed and apt-get cannot install it here (not root)")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", PUSHGATEWAY]):
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if result.returncode != 0:
            pytest.skip(f"{PUSHGATEWAY} could not be installed: {result.stderr.strip()[-300:]}")
    found = shutil.which(PUSHGATEWAY)
    if not found:
        pytest.skip(f"{PUSHGATEWAY} installed but not on PATH")
    return found


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway on a free loopback port; yields its base URL."""
    binary = _pushgateway_binary()
    port = free_loopback_port()
    log = (tmp_path_factory.mktemp("pushgateway") / "log").open("wb")
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"the Pushgateway did not start on {url}")
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def gateway_samples(url: str) -> dict[str, float]:
    """The Pushgateway's deepchat_tfs_bench samples, keyed by their exposition line's name part."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("deepchat_tfs_bench_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_push_sends_the_runs_figures_to_a_real_pushgateway(
    serving_server: EmbeddedServer, pushgateway: str, tmp_path: Path
) -> None:
    out = tmp_path / "pushed.json"
    group = 'instance="bench-test",job="deepchat_tfs_bench"'
    seen_running: list[float] = []

    async def watch_live_pushes() -> None:
        # Live pushes come every 5 s while the run goes on, with running = 1.
        for _ in range(300):
            samples = await asyncio.to_thread(gateway_samples, pushgateway)
            running = samples.get(f"deepchat_tfs_bench_running{{{group}}}")
            if running == 1:
                seen_running.append(samples[f"deepchat_tfs_bench_requests{{{group}}}"])
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch_live_pushes())
    code, _, stderr = await bench(
        "--target", serving_server.grpc_target, "--model", "half_plus_two",
        "--data", '{"instances": [1.0]}', "--rate", "40", "--duration", "6", "--warmup", "0",
        "--slo", "errors<1%", "--push", pushgateway, "--push-instance", "bench-test",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    await watcher
    assert seen_running, "no live push was seen while the run went on"
    report = load_report(out)
    samples = gateway_samples(pushgateway)
    assert samples[f"deepchat_tfs_bench_requests{{{group}}}"] == report.requests == 240
    assert samples[f"deepchat_tfs_bench_ok{{{group}}}"] == report.ok
    assert samples[f"deepchat_tfs_bench_running{{{group}}}"] == 0
    assert samples[f"deepchat_tfs_bench_slo_passed{{{group}}}"] == 1
    assert report.latency_ms.p99 is not None
    p99 = samples[f'deepchat_tfs_bench_latency_ms{{{group},quantile="0.99"}}']
    assert p99 == pytest.approx(report.latency_ms.p99)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


async def test_the_consoles_connection_options_reach_an_mtls_server_with_a_token(
    certificates: TestCertificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "very-secret-token-1234"
    config = tmp_path / "config.yaml"
    credentials = certificates.server_credentials(require_client_cert=True)
    async with FaultServer(server_credentials=credentials) as server:
        config.write_text(
            "model_serving:\n  tensorflow_serving:\n    host: 127.0.0.1\n"
            f"    grpc_port: {server.port}\n    bearer_token_env: BENCH_TEST_TOKEN\n"
            f"    tls:\n      ca_file: {certificates.ca_file}\n"
        )
        # A config file outside the user's config dir names a token variable only once approved
        # (bench's subprocess inherits this data dir and so sees the approval).
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
        approve(config)
        out = tmp_path / "tls.json"
        code, stdout, stderr = await bench(
            "--config", str(config), "--model", "m", "--data", DATA,
            "--cert", str(certificates.client_cert), "--key", str(certificates.client_key),
            "--server-name", "tfs.test", "--header", "x-team=search",
            "--rate", "20", "--requests", "10", "--warmup", "0", "--out", str(out),
            env={"BENCH_TEST_TOKEN": token},
        )  # fmt: skip
        assert code == 0, stderr
        predicts = server.calls_to("Predict")
        assert len(predicts) == 10
        assert predicts[0].metadata["authorization"] == f"Bearer {token}"
        assert predicts[0].metadata["x-team"] == "search"
        assert load_report(out).ok == 10
        # The token appears nowhere a person or a file would see it.
        assert token not in stdout + stderr + out.read_text()
        # Without the client certificate the mTLS server refuses: one line, exit 3.
        code, _, stderr = await bench(
            "--config", str(config), "--model", "m", "--data", DATA, "--server-name", "tfs.test",
            "--rate", "20", "--requests", "5", "--out", str(tmp_path / "refused.json"),
            env={"BENCH_TEST_TOKEN": token},
        )  # fmt: skip
        assert code == 3 and len(stderr.strip().splitlines()) == 1, stderr
        assert token not in stderr
