"""TF Serving's --ssl_config_file: an SSLConfig text proto that puts gRPC behind TLS or mTLS.

The fields hold PEM text itself, not file names (tensorflow_serving/config/ssl_config.proto):
server_key, server_cert, custom_ca (the CA that signs client certificates) and client_verify
(require and verify a client certificate). As in TF Serving, only gRPC on TCP uses it.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from server.config import ConfigFileError, parse_text_format, read_config_file


def _build_ssl_config_message() -> Any:
    """The SSLConfig class (its proto is not in the serving-api wheel)."""
    field = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    message = file_proto.message_type.add(name="SSLConfig")
    for number, name in enumerate(("server_key", "server_cert", "custom_ca"), start=1):
        message.field.add(
            name=name, number=number, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL
        )
    message.field.add(
        name="client_verify", number=4, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL
    )
    # A private pool, as for MonitoringConfig: a real ssl_config.proto elsewhere cannot clash.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")
    )


SSLConfig = _build_ssl_config_message()


def parse_ssl_config(text: str, source: str = "<text>") -> Any:
    """Parse a text-format SSLConfig; errors name the source and the parser's message."""
    return parse_text_format(text, SSLConfig(), source)


def load_ssl_config(path: str) -> Any:
    """Read, parse and check the --ssl_config_file."""
    config = parse_ssl_config(read_config_file(path, "--ssl_config_file"), path)
    check_ssl_config(config, path)
    return config


def _ssl_reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


def check_ssl_config(config: Any, source: str) -> None:
    """Refuse a config whose key, certificate or CA would only fail at the first handshake."""
    where = f"--ssl_config_file {source}"
    for name in ("server_key", "server_cert"):
        if not getattr(config, name).strip():
            raise ConfigFileError(f"{where}: {name} is empty; expected PEM text")
    if config.client_verify and not config.custom_ca.strip():
        raise ConfigFileError(
            f"{where}: client_verify is true but custom_ca is empty; expected the PEM of the CA "
            "that signs client certificates"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if config.custom_ca.strip():
        try:
            context.load_verify_locations(cadata=config.custom_ca)
        except (ssl.SSLError, ValueError) as error:
            reason = _ssl_reason(error) if isinstance(error, ssl.SSLError) else str(error)
            raise ConfigFileError(
                f"{where}: custom_ca is not a PEM CA certificate ({reason})"
            ) from None
    # load_cert_chain reads files only: a private directory holds them for the check.
    with tempfile.TemporaryDirectory(prefix="deepchat-tfs-tls-") as directory:
        key_path = os.path.join(directory, "server.key")
        cert_path = os.path.join(directory, "server.crt")
        for path, text in ((key_path, config.server_key), (cert_path, config.server_cert)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as error:
            raise ConfigFileError(
                f"{where}: server_cert and server_key do not form a usable pair "
                f"({_ssl_reason(error)}); expected the PEM certificate and its private key"
            ) from None


def server_credentials(config: Any) -> grpc.ServerCredentials:
    """gRPC server credentials as TF Serving builds them from an SSLConfig."""
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca else None,
        require_client_auth=bool(config.client_verify),
    )
