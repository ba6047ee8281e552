"""tensorflow_model_server's flags and text-format config files, parsed without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.wire import protos
from server.config import (
    DEFAULT_PROMETHEUS_PATH,
    ConfigFileError,
    initial_model_server_config,
    parse_model_server_config,
    parse_monitoring_config,
)
from server.errors import ServingStatus
from server.flags import FlagError, parse_channel_arguments, parse_flags, usage
from server.manager import aspired_versions, validate_model_config_list

BASE = ["--model_base_path=/models/m"]


def test_both_flag_forms_and_boolean_spellings() -> None:
    options = parse_flags(
        [
            "--port",
            "9000",
            "--rest_api_port=9001",
            "--enable_batching",
            "--model_name",
            "chat",
            "--model_base_path=/models/chat",
            "--allow_version_labels_for_unavailable_models=true",
            "--flush_filesystem_caches=false",
        ]
    )
    assert (options.port, options.rest_api_port, options.model_name) == (9000, 9001, "chat")
    assert options.enable_batching is True
    assert options.allow_version_labels_for_unavailable_models is True
    assert options.flush_filesystem_caches is False


def test_defaults_are_tensorflow_model_servers() -> None:
    options = parse_flags(BASE)
    assert (options.port, options.rest_api_port, options.model_name) == (8500, 0, "default")
    assert options.file_system_poll_wait_seconds == 1
    assert options.rest_api_timeout_in_ms == 30000
    assert options.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nonsense=1", *BASE], "unknown flag --nonsense"),
        (["--port=eighty", *BASE], "--port: expected an integer, got 'eighty'"),
        (["--enable_batching=maybe", *BASE], "--enable_batching: expected a boolean"),
        (["--port=70000", *BASE], "--port: expected a port 0-65535, got 70000"),
        (["--model_name"], "--model_name: missing value"),
        (["positional", *BASE], "unexpected argument 'positional'"),
        ([], "Both --model_base_path and --model_config_file are empty"),
    ],
)
def test_bad_command_lines_name_the_flag_and_the_problem(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(argv)
    assert message in str(caught.value)


def test_negated_boolean_and_session_parallelism() -> None:
    options = parse_flags(["--noenable_model_warmup", "--tensorflow_session_parallelism=3", *BASE])
    assert options.enable_model_warmup is False
    assert (options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism) == (
        3,
        3,
    )


def test_usage_lists_public_flags_only() -> None:
    text = usage()
    assert "--model_config_file_poll_wait_seconds" in text
    assert "--parent_pid" not in text


def test_channel_arguments_split_with_ints() -> None:
    assert parse_channel_arguments("grpc.max_concurrent_streams=10, a.b=x") == [
        ("grpc.max_concurrent_streams", 10),
        ("a.b", "x"),
    ]
    with pytest.raises(FlagError, match="expected key=value"):
        parse_channel_arguments("novalue")


def test_model_server_config_text_format() -> None:
    config = parse_model_server_config(
        """
        model_config_list {
          config {
            name: "m" base_path: "/models/m" model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 3 } }
            version_labels { key: "stable" value: 1 }
          }
        }
        """
    )
    model = config.model_config_list.config[0]
    assert (model.name, dict(model.version_labels)) == ("m", {"stable": 1})
    assert aspired_versions(model, {1, 2, 3, 4}) == {1, 3}


def test_bad_model_server_config_reports_the_parser_message() -> None:
    with pytest.raises(ConfigFileError) as caught:
        parse_model_server_config("model_config_list { config { nam: 'x' } }", "models.config")
    text = str(caught.value)
    assert text.startswith(
        "Error parsing text-format tensorflow.serving.ModelServerConfig from models.config: "
    )
    assert "nam" in text


def test_single_model_flags_make_an_absolute_latest_config(tmp_path: Path) -> None:
    options = parse_flags(["--model_name=m", "--model_base_path=relative/m"])
    config = initial_model_server_config(options)
    model = config.model_config_list.config[0]
    assert Path(model.base_path).is_absolute()
    assert model.base_path.endswith("relative/m")
    assert aspired_versions(model, {3, 7, 5}) == {7}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("", {9}), ("latest { num_versions: 2 }", {9, 4}), ("all {}", {1, 4, 9})],
)
def test_version_policies(policy: str, expected: set[int]) -> None:
    config = parse_model_server_config(
        f'model_config_list {{ config {{ name: "m" base_path: "/m" '
        f"model_version_policy {{ {policy} }} }} }}"
        if policy
        else 'model_config_list { config { name: "m" base_path: "/m" } }'
    )
    assert aspired_versions(config.model_config_list.config[0], {1, 4, 9}) == expected


def test_monitoring_config_defaults_the_path() -> None:
    config = parse_monitoring_config("prometheus_config { enable: true }")
    assert config.prometheus_config.path == DEFAULT_PROMETHEUS_PATH
    custom = parse_monitoring_config('prometheus_config { enable: true path: "/metrics" }')
    assert custom.prometheus_config.path == "/metrics"
    with pytest.raises(ConfigFileError, match=r"tensorflow\.serving\.MonitoringConfig"):
        parse_monitoring_config("prometheus_config { enabled: true }")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" }',
            "Illegal to list model m multiple times in config list",
        ),
        (
            'config { name: "m" base_path: "rel" }',
            "Expected model m to have an absolute path or URI; got base_path()=rel",
        ),
        (
            'config { name: "m" base_path: "/a" model_platform: "pytorch" }',
            "Model m requests unsupported platform pytorch",
        ),
    ],
)
def test_model_config_list_validation(text: str, message: str) -> None:
    config = parse_model_server_config(f"model_config_list {{ {text} }}")
    with pytest.raises(ServingStatus) as caught:
        validate_model_config_list(config)
    assert caught.value.message == message
    assert caught.value.code_name == "INVALID_ARGUMENT"


def test_a_config_without_a_model_list_is_refused() -> None:
    with pytest.raises(ServingStatus, match="Only ModelConfigList is currently supported"):
        validate_model_config_list(protos.model_server_config_pb2.ModelServerConfig())
