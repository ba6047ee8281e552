"""core.config: the schema, file:line errors, env/flag precedence, file search, README reference."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.config.loader import field_type, is_model
from core.config.reference import END_MARKER, START_MARKER, field_docs, main, reference_markdown
from core.config.schema import Config, ConfigError, LoadedConfig, load_config

REPO = Path(__file__).resolve().parents[2]
TFS = "model_serving.tensorflow_serving"


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    """Write a YAML file with text dedented and without its leading newline."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(path: Path | str | None, **kwargs: object) -> list[str]:
    """The lines of the ConfigError that loading path raises."""
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as raised:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == "\n".join(raised.value.messages)
    return list(raised.value.messages)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and user config dir (XDG_CONFIG_HOME) with no config files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_shipped_config_is_the_built_in_default(isolated: Path) -> None:
    shipped = load_config(REPO / "config.yaml", env={})
    assert shipped.config == Config()
    assert shipped.source == REPO / "config.yaml"
    assert load_config(env={}) == LoadedConfig(Config(), None)
    tfs = Config().model_serving.tensorflow_serving
    assert (tfs.host, tfs.grpc_port, tfs.batch.timeout_ms, Config().ui.refresh_hz) == (
        "embedded",
        8500,
        5.0,
        4.0,
    )
    assert Config().uses_embedded_server() and Config().resolved_targets() == []


def test_bad_port_names_file_line_key_expectation_and_value(isolated: Path) -> None:
    write(
        isolated,
        """
        # deepchat-tfs
        model_serving:
          tensorflow_serving:
            enabled: true
            host: tfs.example
            rest_port: 8501
            timeout: 30
            grpc_port: 85OO
        """,
    )
    assert errors_of("config.yaml") == [
        f"config.yaml:8: {TFS}.grpc_port: expected an integer 1-65535, got '85OO'"
    ]


def test_every_problem_is_reported_in_file_order(isolated: Path) -> None:
    path = write(
        isolated,
        """
        model_serving:
          tensorflow_serving:
            grpc_prot: 8500
            timeout: 30s
            targets: [tfs-a:8500, "tfs b"]
            max_retries: true
        models:
          - name: chat
            model_name: deepchat_model
            adapter: {kind: txt}
        ui:
          refresh_hz: 0
        """,
    )
    assert errors_of(path) == [
        f"{path}:3: {TFS}.grpc_prot: expected a known key (did you mean 'grpc_port'?), "
        "got 'grpc_prot'",
        f"{path}:4: {TFS}.timeout: expected a number > 0, got '30s'",
        f"{path}:5: {TFS}.targets[1]: expected 'host:port' (port 1-65535) or a gRPC target URI "
        "such as 'dns:///host:port', got 'tfs b'",
        f"{path}:6: {TFS}.max_retries: expected an integer 0-4, got true",
        f"{path}:10: models[0].adapter.kind: expected one of 'text', 'classify', 'tokens', "
        "got 'txt' (did you mean 'text'?)",
        f"{path}:12: ui.refresh_hz: expected a number > 0 and <= 30, got 0",
    ]


def test_missing_required_keys_and_unknown_sections(isolated: Path) -> None:
    path = write(
        isolated,
        """
        modles: []
        models:
          - name: chat
        """,
    )
    assert errors_of(path) == [
        f"{path}:1: modles: expected a known key (did you mean 'models'?), got 'modles'",
        f"{path}:3: models[0].model_name: expected a non-empty string, got nothing "
        "(the key is required)",
    ]


def test_yaml_syntax_errors_and_repeated_keys_give_lines(isolated: Path) -> None:
    broken = write(isolated, "ui:\n  refresh_hz: 4\n latency_warn_ms: [1\n", "broken.yaml")
    (message,) = errors_of(broken)
    assert message.startswith(f"{broken}:3: invalid YAML: ")
    repeated = write(isolated, "ui:\n  refresh_hz: 4\n  refresh_hz: 5\n", "repeated.yaml")
    assert errors_of(repeated) == [
        f"{repeated}:3: ui.refresh_hz: expected each key once, got 'refresh_hz' again "
        "(only the last counts)"
    ]
    listed = write(isolated, "- ui\n", "listed.yaml")
    assert errors_of(listed) == [
        f"{listed}:1: expected a mapping with the sections model_serving, models, embedded, ui, "
        "got a list"
    ]
    assert load_config(write(isolated, "", "empty.yaml"), env={}).config == Config()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "models:\n  - {name: a, model_name: deepchat_model,\n"
            "     version: 2, version_label: stable}\n",
            "F:3: models[0].version_label: expected version or version_label, not both, "
            "got version 2 and version_label 'stable'",
        ),
        (
            "model_serving:\n  tensorflow_serving:\n    targets: [tfs:8500]\n",
            f"F:3: {TFS}.targets: expected no targets when host is 'embedded' (the embedded "
            "server picks its own ports; set host to a host name to use targets), got ['tfs:8500']",
        ),
        (
            "models:\n  - {name: a, model_name: other}\n",
            "F:2: models[0].model_name: expected 'deepchat_model' (embedded.model_name: the "
            "embedded server serves only that model), got 'other'",
        ),
        (
            "models:\n  - {name: a, model_name: deepchat_model}\n"
            "  - {name: a, model_name: deepchat_model}\n",
            "F:3: models[1].name: expected a unique name, got 'a' again",
        ),
        (
            "models:\n  - name: a\n    model_name: deepchat_model\n    adapter: {kind: tokens}\n",
            "F:4: models[0].adapter.tokenizer_file: expected a tokenizer.json path for kind "
            "'tokens', got nothing",
        ),
        (
            "ui:\n  latency_warn_ms: 200\n  latency_crit_ms: 150\n",
            "F:3: ui.latency_crit_ms: expected more than latency_warn_ms (200), got 150",
        ),
    ],
)
def test_cross_field_checks(isolated: Path, yaml_text: str, expected: str) -> None:
    path = write(isolated, yaml_text)
    assert errors_of(path) == [expected.replace("F:", f"{path}:")]


def test_tls_paths_are_relative_to_the_file_and_checked(isolated: Path) -> None:
    certs = isolated / "conf" / "certs"
    certs.mkdir(parents=True)
    (certs / "ca.pem").write_text("ca")
    (certs / "client.pem").write_text("cert")
    tls_yaml = """
        model_serving:
          tensorflow_serving:
            host: tfs.example
            tls: {ca_file: certs/ca.pem, cert_file: certs/client.pem}
        """
    path = write(isolated / "conf", tls_yaml)
    assert errors_of(path) == [
        f"{path}:4: {TFS}.tls.key_file: expected cert_file and key_file together, "
        "got only cert_file"
    ]
    (certs / "client.key").write_text("key")
    path.write_text(path.read_text().replace("client.pem}", "client.pem, key_file: certs/x.key}"))
    assert errors_of(path) == [
        f"{path}:4: {TFS}.tls.key_file: expected a path to an existing file or null, "
        f"got '{certs / 'x.key'}'"
    ]
    path.write_text(path.read_text().replace("x.key", "client.key"))
    tls = load_config(path, env={}).config.model_serving.tensorflow_serving.tls
    assert tls is not None
    assert (tls.ca_file, tls.key_file) == (certs / "ca.pem", certs / "client.key")


def test_secrets_never_live_in_the_file_and_are_never_echoed(isolated: Path) -> None:
    path = write(
        isolated,
        """
        model_serving:
          tensorflow_serving:
            host: tfs.example
            bearer_token: s3cr3t-value
            bearer_token_env: "Bearer abc.def-123"
        """,
    )
    messages = errors_of(path)
    assert messages == [
        f"{path}:4: {TFS}.bearer_token: expected no secrets in the config, got a 'bearer_token' "
        "key: put the token in an environment variable and set bearer_token_env to that "
        "variable's name",
        f"{path}:5: {TFS}.bearer_token_env: expected the name of an environment variable "
        "(letters, digits, _) that holds the token, got something else (the token itself never "
        "goes in the file)",
    ]
    assert not any("s3cr3t" in m or "abc.def" in m for m in messages)


def test_bearer_token_comes_from_the_named_variable(isolated: Path) -> None:
    own_dir = isolated / "xdg" / "deepchat-tfs"  # the user's own config dir may name a variable
    own_dir.mkdir(parents=True)
    path = write(
        own_dir,
        "model_serving:\n  tensorflow_serving:\n    bearer_token_env: TFS_TOKEN\n    tls: {}\n",
    )
    loaded = load_config(path, env={"TFS_TOKEN": "t0ken"})
    assert loaded.config.bearer_token({"TFS_TOKEN": "t0ken"}) == "t0ken"
    assert Config().bearer_token({"TFS_TOKEN": "t0ken"}) is None
    expected = (
        f"TFS_TOKEN: {TFS}.bearer_token_env: expected the bearer token in this environment "
        "variable, got it unset or empty"
    )
    assert errors_of(path, env={"TFS_TOKEN": ""}) == [expected]
    with pytest.raises(ConfigError, match="TFS_TOKEN"):
        loaded.config.bearer_token({})


def test_flags_beat_env_beats_file_beats_defaults(isolated: Path) -> None:
    path = write(
        isolated,
        """
        model_serving:
          tensorflow_serving:
            host: tfs.example
            grpc_port: 9000
            rest_port: 9001
            timeout: 5
        """,
    )
    env = {
        f"DEEPCHAT_TFS_{part}": value
        for part, value in [
            ("MODEL_SERVING__TENSORFLOW_SERVING__GRPC_PORT", "9100"),
            ("MODEL_SERVING__TENSORFLOW_SERVING__REST_PORT", "9101"),
        ]
    }
    overrides = {f"{TFS}.grpc_port": 9200}
    tfs = load_config(path, env=env, overrides=overrides).config.model_serving.tensorflow_serving
    assert (tfs.grpc_port, tfs.rest_port, tfs.timeout, tfs.max_retries) == (9200, 9101, 5.0, 3)
    assert load_config(path, env=env).config.resolved_targets() == ["tfs.example:9100"]


def test_env_variables_by_key_path(isolated: Path) -> None:
    env = {
        "DEEPCHAT_TFS_MODELS__0__VERSION_LABEL": "canary",
        "DEEPCHAT_TFS_MODELS__0__ADAPTER__OUTPUT_KEY": "",
        "DEEPCHAT_TFS_UI__KEY_BINDINGS__QUIT": "ctrl+x,f10",
        "DEEPCHAT_TFS_EMBEDDED__ENABLE_BATCHING": "false",
        "DEEPCHAT_TFS_DEBUG": "1",  # not a config key: left alone
        "DEEPCHAT_TFS_CONFIG": "elsewhere.yaml",
    }
    config = load_config(env=env).config
    assert config.models[0].version_label == "canary"
    assert config.models[0].adapter.output_key is None
    # Only the override: the console's BINDINGS keep every other action's default keys.
    assert config.ui.key_bindings == {"quit": "ctrl+x,f10"}
    assert config.embedded.enable_batching is False


def test_env_errors_name_the_variable(isolated: Path) -> None:
    env = {
        "DEEPCHAT_TFS_UI__REFRESH": "2",
        "DEEPCHAT_TFS_MODEL_SERVING__TENSORFLOW_SERVING__GRPC_PORT": "http",
        "DEEPCHAT_TFS_MODELS__3__NAME": "far",
    }
    assert errors_of(None, env=env) == [
        "DEEPCHAT_TFS_MODELS__3__NAME: models[3].name: expected a list index at most the "
        "list's length",
        f"DEEPCHAT_TFS_MODEL_SERVING__TENSORFLOW_SERVING__GRPC_PORT: {TFS}.grpc_port: expected "
        "an integer 1-65535, got 'http'",
        "DEEPCHAT_TFS_UI__REFRESH: ui.refresh: expected a known key (did you mean "
        "'refresh_hz'?), got 'refresh'",
    ]


def test_targets_from_env_or_flags_replace_an_embedded_host(isolated: Path) -> None:
    env = {"DEEPCHAT_TFS_MODEL_SERVING__TENSORFLOW_SERVING__TARGETS": "tfs-a:8500, [::1]:8600"}
    config = load_config(env=env).config
    assert config.resolved_targets() == ["tfs-a:8500", "[::1]:8600"]
    assert not config.uses_embedded_server()
    assert config.model_serving.tensorflow_serving.host == "tfs-a"
    flagged = load_config(env={}, overrides={f"{TFS}.targets": ["dns:///tfs:8500"]}).config
    assert flagged.resolved_targets() == ["dns:///tfs:8500"]


def test_overrides_accept_both_index_spellings_and_check_paths(isolated: Path) -> None:
    overrides = {"models[0].version": 7, "models.0.signature_name": "predict"}
    model = load_config(env={}, overrides=overrides).config.models[0]
    assert (model.version, model.signature_name) == (7, "predict")
    assert errors_of(None, overrides={"models[0].version": True}) == [
        "command line: models[0].version: expected an integer >= 0 or null, got true"
    ]
    assert errors_of(None, overrides={"models[0].versoin": 2, f"{TFS}.host.name": "x"}) == [
        "command line: models[0].versoin: expected a known key (did you mean 'version'?), "
        "got 'versoin'",
        f"command line: {TFS}.host.name: expected no keys below {TFS}.host, got 'name'",
    ]


def test_resolved_targets_from_host_and_port() -> None:
    def with_host(host: str) -> Config:
        return Config.model_validate(
            {"model_serving": {"tensorflow_serving": {"host": host, "grpc_port": 8600}}}
        )

    assert with_host("tfs.example").resolved_targets() == ["tfs.example:8600"]
    assert with_host("::1").resolved_targets() == ["[::1]:8600"]
    assert not with_host("tfs.example").uses_embedded_server()


def test_file_search_order(isolated: Path) -> None:
    assert errors_of("missing.yaml") == [
        "missing.yaml: expected an existing config file, got no such file"
    ]
    user_dir = isolated / "xdg" / "deepchat-tfs"
    user_dir.mkdir(parents=True)
    user_file = write(user_dir, "ui:\n  refresh_hz: 2\n")
    assert load_config(env={}) == LoadedConfig(load_config(user_file, env={}).config, user_file)
    assert load_config(env={}).config.ui.refresh_hz == 2
    local = write(isolated, "ui:\n  refresh_hz: 8\n")
    loaded = load_config(env={})
    assert (loaded.source, loaded.config.ui.refresh_hz) == (local, 8)
    explicit = write(isolated, "ui:\n  refresh_hz: 1\n", "other.yaml")
    assert load_config(explicit, env={}).config.ui.refresh_hz == 1


def test_every_field_is_documented() -> None:
    def undocumented(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        docs = field_docs(model)
        for name, field in model.model_fields.items():
            if not docs.get(name):
                found.append(prefix + name)
            annotation = field_type(field)[0]
            inner = getattr(annotation, "__args__", (annotation,))[0]
            if is_model(annotation) or is_model(inner):
                found += undocumented(
                    annotation if is_model(annotation) else inner, prefix + name + "."
                )
        return found

    assert undocumented(Config, "") == []


def test_readme_holds_the_generated_reference(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]
    assert section == "\n" + reference_markdown(), (
        "README's configuration reference is stale: run `.venv/bin/python -m core.config.reference"
        " README.md`"
    )
    for key in (
        "model_serving.tensorflow_serving.grpc_port",
        "models[].adapter.kind",
        "ui.key_bindings",
    ):
        assert f"| `{key}` |" in section
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{START_MARKER}\nold\n{END_MARKER}\ntail\n", encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8").endswith(f"{END_MARKER}\ntail\n")


def test_a_pasted_blob_is_cut_in_the_error_but_a_long_path_is_not(isolated: Path) -> None:
    blob = "x" * 1000
    path = write(isolated, f"model_serving:\n  tensorflow_serving:\n    grpc_port: '{blob}'\n")
    [message] = errors_of(path)
    assert message.endswith("...") and "x" * 290 in message and "x" * 300 not in message
    deep = isolated.joinpath(*["a-rather-long-directory-name"] * 6)
    deep.mkdir(parents=True)
    path = write(deep, "model_serving:\n  tensorflow_serving:\n    tls: {ca_file: missing.pem}\n")
    [message] = errors_of(path)
    assert message.endswith(f"got '{deep / 'missing.pem'}'")
