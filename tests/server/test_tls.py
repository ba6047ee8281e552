"""--ssl_config_file end to end: TLS, mTLS and bad certificates, with real gRPC clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.embedded.launcher import EmbeddedServer
from server.config import ConfigFileError
from server.tls import parse_ssl_config
from tests.fixtures.tls_certificates import TestCertificates, make_test_certificates
from tests.server.grpc_helpers import Stubs, outputs_of, predict_request, rpc_error

pytestmark = pytest.mark.slow

SERVER_NAME = "localhost"  # the certificate names localhost, the server listens on 127.0.0.1


def _text_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def ssl_config_text(
    certificates: TestCertificates, *, client_verify: bool, key: Path | None = None
) -> str:
    """An SSLConfig in text format, PEM text inline as TF Serving expects."""
    lines = [
        f"server_key: {_text_field((key or certificates.server_key).read_text())}",
        f"server_cert: {_text_field(certificates.server_cert.read_text())}",
    ]
    if client_verify:
        lines.append(f"custom_ca: {_text_field(certificates.ca_file.read_text())}")
        lines.append("client_verify: true")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("other_tls"))


def _start(
    start_server: Callable[..., EmbeddedServer],
    saved_models_root: Path,
    tmp_path: Path,
    config_text: str,
) -> EmbeddedServer:
    config_path = tmp_path / "ssl.config"
    config_path.write_text(config_text)
    return start_server(
        models=[{"name": "half_plus_two", "base_path": saved_models_root / "half_plus_two"}],
        flags=[f"--ssl_config_file={config_path}"],
    )


def _secure_channel(
    target: str,
    ca_file: Path,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=client_key.read_bytes() if client_key else None,
        certificate_chain=client_cert.read_bytes() if client_cert else None,
    )
    return grpc.aio.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", SERVER_NAME)]
    )


def _request() -> object:
    return predict_request("half_plus_two", x=np.array([[2.0]], np.float32))


async def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(
    start_server: Callable[..., EmbeddedServer],
    saved_models_root: Path,
    tmp_path: Path,
    certificates: TestCertificates,
) -> None:
    server = _start(
        start_server,
        saved_models_root,
        tmp_path,
        ssl_config_text(certificates, client_verify=False),
    )
    async with _secure_channel(server.grpc_target, certificates.ca_file) as channel:
        response = await Stubs(channel).prediction.Predict(_request(), timeout=10)
    assert outputs_of(response)["y"].tolist() == [[3.0]]
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        code, _ = await rpc_error(Stubs(channel).prediction.Predict(_request(), timeout=5))
    assert code == "UNAVAILABLE"
    assert "gRPC uses TLS from --ssl_config_file" in server.log_path.read_text()


async def test_a_client_with_the_wrong_ca_fails_the_handshake_clearly(
    start_server: Callable[..., EmbeddedServer],
    saved_models_root: Path,
    tmp_path: Path,
    certificates: TestCertificates,
    other_certificates: TestCertificates,
) -> None:
    server = _start(
        start_server,
        saved_models_root,
        tmp_path,
        ssl_config_text(certificates, client_verify=False),
    )
    async with _secure_channel(server.grpc_target, other_certificates.ca_file) as channel:
        code, details = await rpc_error(Stubs(channel).prediction.Predict(_request(), timeout=5))
    assert code == "UNAVAILABLE"
    assert "handshake" in details.lower() or "certificate" in details.lower(), details


async def test_mtls_refuses_a_client_without_a_valid_certificate(
    start_server: Callable[..., EmbeddedServer],
    saved_models_root: Path,
    tmp_path: Path,
    certificates: TestCertificates,
    other_certificates: TestCertificates,
) -> None:
    server = _start(
        start_server,
        saved_models_root,
        tmp_path,
        ssl_config_text(certificates, client_verify=True),
    )
    target, ca_file = server.grpc_target, certificates.ca_file
    async with _secure_channel(
        target, ca_file, client_cert=certificates.client_cert, client_key=certificates.client_key
    ) as channel:
        response = await Stubs(channel).prediction.Predict(_request(), timeout=10)
    assert outputs_of(response)["y"].tolist() == [[3.0]]
    async with _secure_channel(target, ca_file) as channel:
        code, _ = await rpc_error(Stubs(channel).prediction.Predict(_request(), timeout=5))
    assert code == "UNAVAILABLE"
    async with _secure_channel(
        target,
        ca_file,
        client_cert=other_certificates.client_cert,
        client_key=other_certificates.client_key,
    ) as channel:
        code, _ = await rpc_error(Stubs(channel).prediction.Predict(_request(), timeout=5))
    assert code == "UNAVAILABLE"


def _serve_exit(config_path: Path, base_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--port=0",
            f"--model_base_path={base_path}",
            f"--ssl_config_file={config_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(
    saved_models_root: Path,
    tmp_path: Path,
    certificates: TestCertificates,
    other_certificates: TestCertificates,
) -> None:
    config_path = tmp_path / "ssl.config"
    config_path.write_text(
        ssl_config_text(certificates, client_verify=False, key=other_certificates.server_key)
    )
    result = _serve_exit(config_path, saved_models_root / "half_plus_two")
    assert result.returncode == 1
    assert "server_cert and server_key do not form a usable pair" in result.stderr
    assert "Traceback" not in result.stderr


def test_client_verify_without_a_ca_is_refused_at_start(
    saved_models_root: Path, tmp_path: Path, certificates: TestCertificates
) -> None:
    config_path = tmp_path / "ssl.config"
    config_path.write_text(
        ssl_config_text(certificates, client_verify=False) + "client_verify: true\n"
    )
    result = _serve_exit(config_path, saved_models_root / "half_plus_two")
    assert result.returncode == 1
    assert "client_verify is true but custom_ca is empty" in result.stderr


def test_ssl_config_parse_errors_name_the_file() -> None:
    with pytest.raises(ConfigFileError, match=r"SSLConfig from ssl.config: .*server_pem"):
        parse_ssl_config('server_pem: "x"', "ssl.config")
