"""gRPC targets: host and port, and the REST URL beside a gRPC target."""

from __future__ import annotations

import pytest

from core.client.targets import rest_url_for, split_host_port


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("10.0.0.5:8500", "http://10.0.0.5:8501"),
        ("tfs.example:8500", "http://tfs.example:8501"),
        ("[::1]:8500", "http://[::1]:8501"),
        ("dns:///svc:8500", "http://svc:8501"),
        ("dns:svc:8500", "http://svc:8501"),
        ("dns://8.8.8.8/svc.example:8500", "http://svc.example:8501"),
        ("dns:///[::1]:8500", "http://[::1]:8501"),
        ("ipv4:10.0.0.1:8500,10.0.0.2:8500", "http://10.0.0.1:8501"),
        ("ipv6:[::1]:8500", "http://[::1]:8501"),
        ("unix:/tmp/tfs.sock", None),
        ("unix-abstract:tfs", None),
        ("xds:///svc", None),
        ("dns:///svc", None),
        ("no-port-here", None),
    ],
)
def test_rest_url_is_the_grpc_host_on_the_rest_port(target: str, url: str | None) -> None:
    assert rest_url_for(target, 8501) == url


def test_no_rest_port_means_no_rest_url() -> None:
    assert rest_url_for("10.0.0.5:8500", 0) is None


def test_split_host_port_reads_dns_targets_with_an_authority() -> None:
    assert split_host_port("dns:///svc:8500") == ("svc", 8500)
    assert split_host_port("dns://8.8.8.8/svc:8500") == ("svc", 8500)
    assert split_host_port("[::1]:8500") == ("::1", 8500)
    with pytest.raises(ValueError, match="expected 'HOST:PORT'"):
        split_host_port("svc")
