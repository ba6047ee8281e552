"""core.client.channel through a ServingClient: retries, limits, metadata, TLS/mTLS, round robin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.client.channel import channel_options, resolve_target, service_config
from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError, TlsSettings
from core.config.schema import load_config
from core.config.trust import approve
from tests.fixtures.fault_servicer import (
    Behaviour,
    FaultServer,
    fault_server_fixture,  # noqa: F401 (provides the fault_server fixture)
)
from tests.fixtures.tls_certificates import TestCertificates, make_test_certificates

MODEL = ModelSpec("deepchat_model")
ONE = {"x": np.ones(1, np.float32)}


def test_service_config_retries_unavailable_and_balances_round_robin() -> None:
    config = service_config(max_retries=3)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = config["methodConfig"]
    assert {"service": "tensorflow.serving.PredictionService"} in method_config["name"]
    assert method_config["retryPolicy"]["maxAttempts"] == 4
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert service_config(max_retries=10)["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 5
    assert "methodConfig" not in service_config(max_retries=0)


def test_channel_options_carry_limits_keepalive_and_service_config() -> None:
    settings = ClientSettings(targets=("localhost:8500",), max_message_bytes=123, max_retries=2)
    options = dict(channel_options(settings))
    assert options["grpc.max_send_message_length"] == 123
    assert options["grpc.max_receive_message_length"] == 123
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert json.loads(str(options["grpc.service_config"])) == service_config(2)
    assert "grpc.ssl_target_name_override" not in options
    assert options["grpc.max_reconnect_backoff_ms"] == 10_000


async def test_resolve_target_joins_replicas_into_one_address_list() -> None:
    single = await resolve_target(["tfs.example:8500"])
    assert (single.target, single.authority) == ("tfs.example:8500", None)
    v4 = await resolve_target(["127.0.0.1:8500", "127.0.0.2:8501"])
    assert (v4.target, v4.authority) == ("ipv4:127.0.0.1:8500,127.0.0.2:8501", "127.0.0.1:8500")
    v6 = await resolve_target(["[::1]:8500", "[::1]:8501"])
    assert v6.target == "ipv6:[::1]:8500,[::1]:8501"
    by_name = await resolve_target(["localhost:8500", "127.0.0.1:8501"])
    assert by_name.target == "ipv4:127.0.0.1:8500,127.0.0.1:8501"
    assert by_name.authority == "localhost:8500"
    with pytest.raises(ValueError, match="one IP family"):
        await resolve_target(["127.0.0.1:8500", "[::1]:8501"])
    with pytest.raises(ValueError, match=r"target 'nohost': expected 'HOST:PORT'"):
        await resolve_target(["nohost", "127.0.0.1:8501"])
    with pytest.raises(ValueError, match="port 1-65535, got '99999'"):
        await resolve_target(["127.0.0.1:99999", "127.0.0.1:8501"])


async def test_unavailable_is_retried_up_to_max_retries(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(fail_first=2)
    settings = ClientSettings(targets=(fault_server.target,), max_retries=3)
    async with ServingClient(settings) as client:
        result = await client.predict(MODEL, ONE)
        assert result.model_version == 1
        assert len(fault_server.calls_to("Predict")) == 3
        fault_server.reset(Behaviour(fail_first=5))
        with pytest.raises(ServingError) as error:
            await client.predict(MODEL, ONE)
    assert (error.value.code, error.value.message) == ("UNAVAILABLE", "injected failure 4 of 5")
    assert len(fault_server.calls_to("Predict")) == 4


async def test_no_retry_when_max_retries_is_zero(fault_server: FaultServer) -> None:
    fault_server.behaviour = Behaviour(fail_first=1)
    settings = ClientSettings(targets=(fault_server.target,), max_retries=0)
    async with ServingClient(settings) as client:
        with pytest.raises(ServingError) as error:
            await client.predict(MODEL, ONE)
    assert error.value.code == "UNAVAILABLE"
    assert len(fault_server.calls) == 1


async def test_bearer_token_and_user_agent_travel_as_metadata(fault_server: FaultServer) -> None:
    with_token = ClientSettings(targets=(fault_server.target,), bearer_token="s3cret")
    async with ServingClient(with_token) as client:
        await client.predict(MODEL, ONE)
        await client.get_model_status("deepchat_model")
    async with ServingClient(ClientSettings(targets=(fault_server.target,))) as client:
        await client.health()
    predict_call, status_call, anonymous_call = fault_server.calls
    assert predict_call.metadata["authorization"] == "Bearer s3cret"
    assert status_call.metadata["authorization"] == "Bearer s3cret"
    assert "authorization" not in anonymous_call.metadata
    assert predict_call.metadata["user-agent"].startswith("deepchat-tfs")


async def test_ten_megabyte_tensor_passes_and_the_limit_is_applied(
    fault_server: FaultServer,
) -> None:
    big = np.arange(10 * 2**20 // 4, dtype=np.float32)  # 10 MiB each way
    async with ServingClient(ClientSettings(targets=(fault_server.target,))) as client:
        result = await client.predict(MODEL, {"x": big})
    np.testing.assert_array_equal(result.outputs["x"], big)
    small = ClientSettings(targets=(fault_server.target,), max_message_bytes=2**20)
    async with ServingClient(small) as client:
        with pytest.raises(ServingError) as error:
            await client.predict(MODEL, {"x": big})
    assert error.value.code == "RESOURCE_EXHAUSTED"
    assert len(fault_server.calls) == 1  # the oversized request never left the client


async def test_round_robin_spreads_calls_over_two_servers() -> None:
    async with FaultServer() as first, FaultServer() as second:
        settings = ClientSettings(targets=(first.target, second.target))
        async with ServingClient(settings) as client:
            # round_robin starts with whichever replica connects first; wait for both.
            for _ in range(200):
                if first.calls and second.calls:
                    break
                await client.predict(MODEL, ONE)
            assert first.calls and second.calls
            first.reset()
            second.reset()
            for _ in range(10):
                await client.predict(MODEL, ONE)
    assert (len(first.calls), len(second.calls)) == (5, 5)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


def tls_settings(certificates: TestCertificates, *targets: str, **tls: object) -> ClientSettings:
    return ClientSettings(
        targets=targets,
        max_retries=0,
        timeout_s=5.0,
        tls=TlsSettings(ca_file=certificates.ca_file, **tls),  # type: ignore[arg-type]
    )


async def test_tls_verifies_the_server_name(certificates: TestCertificates) -> None:
    async with FaultServer(server_credentials=certificates.server_credentials()) as server:
        port = server.port
        by_name = tls_settings(certificates, f"localhost:{port}")
        overridden = tls_settings(certificates, server.target, server_name_override="tfs.test")
        for settings in (by_name, overridden):
            async with ServingClient(settings) as client:
                assert await client.health() == "SERVING"
        # The certificate names no IP address: reaching 127.0.0.1 without an override fails.
        async with ServingClient(tls_settings(certificates, server.target)) as client:
            with pytest.raises(ServingError) as error:
                await client.health()
    assert error.value.code == "UNAVAILABLE"


async def test_mtls_needs_the_client_certificate(certificates: TestCertificates) -> None:
    credentials = certificates.server_credentials(require_client_cert=True)
    async with FaultServer(server_credentials=credentials) as server:
        target = f"localhost:{server.port}"
        with_cert = tls_settings(
            certificates,
            target,
            cert_file=certificates.client_cert,
            key_file=certificates.client_key,
        )
        async with ServingClient(with_cert) as client:
            assert (await client.predict(MODEL, ONE)).model_version == 1
        async with ServingClient(tls_settings(certificates, target)) as client:
            with pytest.raises(ServingError) as error:
                await client.predict(MODEL, ONE)
    assert error.value.code == "UNAVAILABLE"
    assert len(server.calls) == 1


async def test_tls_round_robin_over_replicas_by_name(certificates: TestCertificates) -> None:
    credentials = certificates.server_credentials()
    async with (
        FaultServer(server_credentials=credentials) as first,
        FaultServer(server_credentials=credentials) as second,
    ):
        settings = tls_settings(certificates, f"localhost:{first.port}", f"localhost:{second.port}")
        async with ServingClient(settings) as client:
            for _ in range(200):
                if first.calls and second.calls:
                    break
                await client.predict(MODEL, ONE)
    assert first.calls and second.calls


def test_unreadable_tls_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"tls.ca_file '.*nope.pem': cannot read"):
        ServingClient(ClientSettings(targets=("localhost:1",), tls=TlsSettings(ca_file=missing)))
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        ServingClient(ClientSettings(targets=("localhost:1",), tls=TlsSettings(cert_file=missing)))


def test_settings_from_config_file(
    tmp_path: Path, certificates: TestCertificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"""
model_serving:
  tensorflow_serving:
    host: tfs.example
    targets: ["tfs-a.example:8500", "tfs-b.example:8500"]
    timeout: 7
    max_retries: 2
    max_message_mb: 64
    keepalive_time_s: 120
    bearer_token_env: TFS_TOKEN
    tls:
      ca_file: {certificates.ca_file}
      server_name_override: tfs.test
"""
    )
    approve(config_file)  # a file outside the user's config dir names a token variable
    loaded = load_config(config_file, env={"TFS_TOKEN": "t0ken"})
    settings = ClientSettings.from_config(loaded.config, env={"TFS_TOKEN": "t0ken"})
    assert settings.targets == ("tfs-a.example:8500", "tfs-b.example:8500")
    assert (settings.timeout_s, settings.max_retries, settings.keepalive_time_s) == (7, 2, 120)
    assert settings.max_message_bytes == 64 * 2**20
    assert settings.bearer_token == "t0ken"
    assert settings.tls == TlsSettings(certificates.ca_file, server_name_override="tfs.test")
    embedded_file = tmp_path / "embedded.yaml"
    embedded_file.write_text("model_serving:\n  tensorflow_serving:\n    host: embedded\n")
    embedded = load_config(embedded_file, env={}).config
    with pytest.raises(ValueError, match="no gRPC target"):
        ClientSettings.from_config(embedded, env={})
    assert ClientSettings.from_config(embedded, targets=["127.0.0.1:9"]).targets == ("127.0.0.1:9",)


def test_no_retries_leaves_grpc_s_retry_machinery_out() -> None:
    def enable_retries(max_retries: int) -> object:
        settings = ClientSettings(targets=("localhost:8500",), max_retries=max_retries)
        return dict(channel_options(settings))["grpc.enable_retries"]

    assert enable_retries(0) == 0
    assert enable_retries(2) == 1
