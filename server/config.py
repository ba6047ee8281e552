"""TF Serving's text-format config files: ModelServerConfig and MonitoringConfig."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from core.wire.protos import model_server_config_pb2
from server.flags import ServerOptions

# TF Serving's default Prometheus path (PrometheusExporter::kPrometheusPath).
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigFileError(ValueError):
    """A config file that cannot be read or parsed; the text says which file and why."""


def _build_monitoring_messages() -> tuple[Any, Any]:
    """MonitoringConfig and PrometheusConfig classes (not in the serving-api wheel)."""
    field = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=field.LABEL_OPTIONAL,
    )
    # A private pool: a real monitoring_config.proto loaded elsewhere can never clash with ours.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    monitoring_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )
    prometheus_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.PrometheusConfig")
    )
    return monitoring_class, prometheus_class


MonitoringConfig, PrometheusConfig = _build_monitoring_messages()


def read_config_file(path: str, what: str) -> str:
    """A config file's text; an unreadable file is a ConfigFileError naming the flag and path."""
    try:
        return Path(path).read_text()
    except OSError as error:
        raise ConfigFileError(f"cannot read {what} {path!r}: {error.strerror or error}") from None


def parse_text_format(text: str, message: Any, source: str) -> Any:
    """Parse text into message; errors name the message type, the source and the parser's text."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigFileError(
            f"Error parsing text-format {message.DESCRIPTOR.full_name} from {source}: {error}"
        ) from None
    return message


def parse_model_server_config(text: str, source: str = "<text>") -> Any:
    """Parse a text-format ModelServerConfig; errors name the file and the parser's message."""
    return parse_text_format(text, model_server_config_pb2.ModelServerConfig(), source)


def load_model_server_config(path: str) -> Any:
    """Read and parse the --model_config_file."""
    return parse_model_server_config(read_config_file(path, "--model_config_file"), path)


def parse_monitoring_config(text: str, source: str = "<text>") -> Any:
    """Parse a text-format MonitoringConfig; an enabled empty path gets TF Serving's default."""
    config = parse_text_format(text, MonitoringConfig(), source)
    if config.prometheus_config.enable and not config.prometheus_config.path:
        config.prometheus_config.path = DEFAULT_PROMETHEUS_PATH
    return config


def load_monitoring_config(path: str) -> Any:
    """Read and parse the --monitoring_config_file."""
    return parse_monitoring_config(read_config_file(path, "--monitoring_config_file"), path)


def single_model_config(name: str, base_path: str) -> Any:
    """The ModelServerConfig for --model_name / --model_base_path (latest version)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    # TF Serving wants absolute base paths; a relative one on the command line means "from here".
    model.base_path = os.path.abspath(base_path)
    model.model_platform = "tensorflow"
    return config


def initial_model_server_config(options: ServerOptions) -> Any:
    """The ModelServerConfig the flags ask for: the config file, or the single model flags."""
    if options.model_config_file:
        return load_model_server_config(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path)
