"""The console's configuration: its pydantic schema and load_config (file, env vars, flags)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.config.keys import key_binding_problems
from core.config.loader import ConfigError, Expect, FieldProblem, Layers, expected, field_type
from core.config.source import ENV_PREFIX, find_config_file
from core.config.trust import may_name_token_variable
from core.identity import DEMO_MODEL_NAME

EMBEDDED = "embedded"
_TARGET = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_GRPC_URI = re.compile(r"^(?:dns|ipv4|ipv6|unix|unix-abstract|vsock|xds):.+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_NAME = re.compile(r"^[^\s,]+$")


class _Section(BaseModel):
    """A config section: unknown keys are errors, field docstrings are the documentation."""

    # The schema is built on first validation, not at import: a start whose config is in the
    # validated-config cache (core.config.cache) never builds it. Field docstrings are read by
    # core.config.reference when it writes the README, not at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_as_numbers(cls, value: object, info: ValidationInfo) -> object:
        # pydantic's lax mode reads `grpc_port: true` as 1; a boolean there is a typo.
        field = cls.model_fields[str(info.field_name)]
        if isinstance(value, bool) and field_type(field)[0] in (int, float):
            raise FieldProblem((), f"expected {expected(field)}, got {str(value).lower()}")
        return value


class TlsConfig(_Section):
    """TLS towards TF Serving; every file is PEM."""

    ca_file: FilePath | None = None
    """CA bundle that signed the server's certificate; null = the system's roots."""
    cert_file: FilePath | None = None
    """Client certificate for mutual TLS; needs key_file."""
    key_file: FilePath | None = None
    """Private key of cert_file."""
    server_name_override: str | None = None
    """Name to check the server's certificate against instead of the target's host."""

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (
                ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            )
            raise FieldProblem(
                (missing,), f"expected cert_file and key_file together, got only {given}"
            )
        return self


class BatchConfig(_Section):
    """Client-side micro-batching: concurrent chat requests share one Predict."""

    enabled: bool = True
    """Merge concurrent requests into batches; false sends each request alone."""
    size: int = Field(default=32, ge=1)
    """Largest batch, in requests."""
    timeout_ms: float = Field(default=5.0, ge=0)
    """Longest time the oldest waiting request waits for company before its batch is sent."""
    max_queue: int = Field(default=10_000, ge=1)
    """Requests that may wait; more are rejected at once so memory stays flat under overload."""


class TensorflowServingConfig(_Section):
    """Where TF Serving is and how to talk to it."""

    enabled: bool = True
    """Connect to TF Serving at all; false keeps the console offline."""
    host: str = Field(default=EMBEDDED, min_length=1)
    """`embedded` starts the bundled server on free loopback ports; otherwise TF Serving's host."""
    grpc_port: int = Field(default=8500, ge=1, le=65535)
    """TF Serving's gRPC port (ignored when host is embedded or targets are given)."""
    rest_port: int = Field(default=8501, ge=0, le=65535)
    """TF Serving's REST port, where its Prometheus metrics are scraped; 0 = none."""
    targets: Annotated[list[str], Expect("a list of 'host:port' strings")] = Field(
        default_factory=list
    )
    """Replicas as `host:port` (or gRPC URIs), balanced round robin; empty = host:grpc_port."""
    timeout: float = Field(default=30.0, gt=0)
    """Deadline of every call, in seconds."""
    max_retries: int = Field(default=3, ge=0, le=4)
    """Retries of calls that fail UNAVAILABLE (gRPC allows at most 5 attempts); 0 also turns off
    gRPC's transparent retries. `deepchat-tfs bench` sends each request once, whatever this says."""
    max_message_mb: int = Field(default=256, ge=1, le=2047)
    """Largest gRPC message sent or received, in MiB (gRPC's 4 MiB default is too small)."""
    keepalive_time_s: float = Field(default=300.0, ge=10)
    """Seconds between keepalive pings; servers answer pings more often than every 5 minutes
    with a too_many_pings GOAWAY by default."""
    tls: TlsConfig | None = None
    """TLS settings; null = plaintext, `{}` = TLS with the system's roots."""
    bearer_token_env: Annotated[str | None, Expect("an environment variable name")] = None
    """Name of the environment variable that holds a bearer token (never the token itself)."""
    metrics_path: str = "/monitoring/prometheus/metrics"
    """Path of the Prometheus metrics on the REST port (TF Serving's monitoring config)."""
    metrics_urls: Annotated[list[str], Expect("a list of 'http://host:port/path' URLs")] = Field(
        default_factory=list
    )
    """Each target's Prometheus metrics URL, in the order of targets; empty = each replica's
    host, rest_port and metrics_path."""
    max_batch_sizes: Annotated[list[int], Expect("a list of integers >= 1")] = Field(
        default_factory=list
    )
    """Each target's server-side max_batch_size, in the order of targets, for batch fill;
    empty = inferred from the server's processed_batch_size histogram (shown as inferred)."""
    prometheus_url: str | None = None
    """An existing Prometheus server (`http://host:9090`) that scrapes the replicas; fleet figures
    then come from PromQL over its HTTP API; null = scrape each replica directly."""
    batch: BatchConfig = Field(default_factory=BatchConfig)
    """Client-side micro-batching."""

    @field_validator("targets")
    @classmethod
    def _targets_are_host_port(cls, targets: list[str]) -> list[str]:
        for index, target in enumerate(targets):
            match = _TARGET.match(target)
            port_ok = match is not None and 1 <= int(match.group(1)) <= 65535
            if not (port_ok or _GRPC_URI.match(target)):
                raise FieldProblem(
                    (index,),
                    "expected 'host:port' (port 1-65535) or a gRPC target URI such as "
                    f"'dns:///host:port', got {target!r}",
                )
        return targets

    @field_validator("bearer_token_env")
    @classmethod
    def _names_a_variable(cls, name: str | None) -> str | None:
        # The value is not echoed: someone may have pasted the token itself here.
        if name is not None and not _ENV_NAME.match(name):
            raise FieldProblem(
                (),
                "expected the name of an environment variable (letters, digits, _) that holds "
                "the token, got something else (the token itself never goes in the file)",
            )
        return name

    @field_validator("metrics_path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise FieldProblem((), f"expected a URL path starting with '/', got {path!r}")
        return path

    @field_validator("metrics_urls")
    @classmethod
    def _metrics_urls_are_http(cls, urls: list[str]) -> list[str]:
        for index, url in enumerate(urls):
            if not re.match(r"^https?://[^/\s]+", url):
                raise FieldProblem((index,), f"expected 'http://host:port/path', got {url!r}")
        return urls

    @field_validator("max_batch_sizes")
    @classmethod
    def _positive_batch_sizes(cls, sizes: list[int]) -> list[int]:
        for index, size in enumerate(sizes):
            if size < 1:
                raise FieldProblem((index,), f"expected an integer >= 1, got {size}")
        return sizes

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_is_http(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise FieldProblem((), f"expected 'http://host:port', got {url!r}")
        return url

    @model_validator(mode="after")
    def _one_per_target(self) -> TensorflowServingConfig:
        for key in ("metrics_urls", "max_batch_sizes"):
            values = getattr(self, key)
            if values and len(values) != len(self.targets):
                raise FieldProblem(
                    (key,),
                    f"expected one entry per target ({len(self.targets)}, in the order of "
                    f"targets), got {len(values)}",
                )
        return self

    @model_validator(mode="after")
    def _embedded_has_no_targets(self) -> TensorflowServingConfig:
        if self.host == EMBEDDED and self.targets:
            raise FieldProblem(
                ("targets",),
                "expected no targets when host is 'embedded' (the embedded server picks its own "
                f"ports; set host to a host name to use targets), got {self.targets}",
            )
        return self


class ModelServingConfig(_Section):
    """The serving back ends."""

    tensorflow_serving: TensorflowServingConfig = Field(default_factory=TensorflowServingConfig)
    """TensorFlow Serving (or the embedded server that speaks its protocol)."""


class AdapterConfig(_Section):
    """How chat text becomes a model's inputs and its outputs become a reply."""

    kind: Literal["text", "classify", "tokens"] = "text"
    """`text`: string in, string out; `classify`: top-k labels; `tokens`: int token ids in."""
    input_key: str | None = None
    """Signature input alias fed the message; null = guessed from the signature."""
    output_key: str | None = None
    """Signature output alias shown as the reply; null = guessed from the signature."""
    labels_file: FilePath | None = None
    """Class labels, one per line (`classify`); null = the model's class outputs."""
    tokenizer_file: FilePath | None = None
    """A Hugging Face tokenizer.json (`tokens`, required there)."""
    top_k: int = Field(default=5, ge=1)
    """Labels shown per reply (`classify`)."""
    max_length: int = Field(default=128, ge=1)
    """Token ids per message, truncated or padded (`tokens`)."""

    @model_validator(mode="after")
    def _tokens_need_a_tokenizer(self) -> AdapterConfig:
        if self.kind == "tokens" and self.tokenizer_file is None:
            raise FieldProblem(
                ("tokenizer_file",), "expected a tokenizer.json path for kind 'tokens', got nothing"
            )
        return self


class ModelConfig(_Section):
    """A model the console talks to."""

    name: str = Field(min_length=1)
    """Name shown in the console and used by /model."""
    serving_type: Literal["tensorflow_serving"] = "tensorflow_serving"
    """Back end that serves it."""
    model_name: str = Field(min_length=1)
    """The model's name on the server (ModelSpec.name)."""
    version: int | None = Field(default=None, ge=0)
    """Pin this version; null = the latest the server has."""
    version_label: str | None = Field(default=None, min_length=1)
    """Pin the version with this label (e.g. `stable`) instead of a number."""
    signature_name: str = Field(default="serving_default", min_length=1)
    """Signature to call."""
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    """The chat adapter."""

    @model_validator(mode="after")
    def _one_version_pin(self) -> ModelConfig:
        if self.version is not None and self.version_label is not None:
            raise FieldProblem(
                ("version_label",),
                "expected version or version_label, not both, got version "
                f"{self.version} and version_label {self.version_label!r}",
            )
        return self


def _default_models() -> list[ModelConfig]:
    adapter = AdapterConfig(kind="text", input_key="text", output_key="reply")
    return [ModelConfig(name="chat_model", model_name=DEMO_MODEL_NAME, adapter=adapter)]


class EmbeddedConfig(_Section):
    """The bundled TF-Serving-compatible server, started when host is `embedded`."""

    model_name: str = Field(default=DEMO_MODEL_NAME, min_length=1)
    """Name it serves the model under."""
    model_base_path: Path | None = None
    """SavedModel base directory (numbered versions inside); null = the demo model, exported on
    first run into the user data dir."""
    all_versions: bool = True
    """Load every version under the base path (`model_version_policy { all {} }`), so /version
    and /compare reach them all; false = TF Serving's default, the latest only."""
    enable_batching: bool = True
    """Server-side batching (`--enable_batching`)."""
    max_batch_size: int = Field(default=32, ge=1)
    """Server batching: largest batch."""
    batch_timeout_micros: int = Field(default=2000, ge=0)
    """Server batching: longest wait for a batch to fill, in microseconds."""
    num_batch_threads: int = Field(default=2, ge=1)
    """Server batching: batches run in parallel."""


class UiConfig(_Section):
    """The console's look and keys."""

    refresh_hz: float = Field(default=4.0, gt=0, le=30)
    """Live panel refreshes per second."""
    latency_warn_ms: float = Field(default=100.0, gt=0)
    """Latencies from here are yellow."""
    latency_crit_ms: float = Field(default=500.0, gt=0)
    """Latencies from here are red."""
    key_bindings: Annotated[dict[str, str], Expect("a mapping of action to keys")] = Field(
        default_factory=dict
    )
    """Keys that replace an action's defaults: action -> Textual key names, comma-separated
    alternatives (`help: f9,question_mark`). The actions and their default keys are the README's
    key table and the help screen (F1); unnamed actions keep their defaults. An unknown action,
    or a key that would run two actions, is an error."""

    @field_validator("key_bindings")
    @classmethod
    def _key_names(cls, bindings: dict[str, str]) -> dict[str, str]:
        for action, keys in bindings.items():
            if not all(_KEY_NAME.match(key) for key in keys.split(",")):
                raise FieldProblem(
                    (action,), f"expected Textual key names separated by ',', got {keys!r}"
                )
        return bindings

    @model_validator(mode="after")
    def _crit_above_warn(self) -> UiConfig:
        if self.latency_crit_ms <= self.latency_warn_ms:
            raise FieldProblem(
                ("latency_crit_ms",),
                f"expected more than latency_warn_ms ({self.latency_warn_ms:g}), "
                f"got {self.latency_crit_ms:g}",
            )
        return self


class Config(_Section):
    """The whole configuration; the defaults are the shipped config.yaml."""

    model_serving: ModelServingConfig = Field(default_factory=ModelServingConfig)
    """Serving back ends."""
    models: Annotated[list[ModelConfig], Expect("a list of model sections")] = Field(
        default_factory=_default_models, min_length=1
    )
    """Models to chat with; the first is selected at start."""
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    """The bundled server."""
    ui: UiConfig = Field(default_factory=UiConfig)
    """The console."""

    @model_validator(mode="after")
    def _models_fit_the_server(self) -> Config:
        seen: set[str] = set()
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise FieldProblem(
                    ("models", index, "name"), f"expected a unique name, got {model.name!r} again"
                )
            seen.add(model.name)
            if self.uses_embedded_server() and model.model_name != self.embedded.model_name:
                raise FieldProblem(
                    ("models", index, "model_name"),
                    f"expected {self.embedded.model_name!r} (embedded.model_name: the embedded "
                    f"server serves only that model), got {model.model_name!r}",
                )
        return self

    def uses_embedded_server(self) -> bool:
        """Whether the console should start the bundled server rather than connect to one."""
        tfs = self.model_serving.tensorflow_serving
        return tfs.enabled and tfs.host == EMBEDDED

    def resolved_targets(self) -> list[str]:
        """The gRPC targets to connect to; empty for the embedded server (its port comes later)."""
        tfs = self.model_serving.tensorflow_serving
        if tfs.targets:
            return list(tfs.targets)
        if tfs.host == EMBEDDED:
            return []
        host = f"[{tfs.host}]" if ":" in tfs.host and not tfs.host.startswith("[") else tfs.host
        return [f"{host}:{tfs.grpc_port}"]

    def bearer_token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The bearer token from the variable bearer_token_env names; None when none is named."""
        name = self.model_serving.tensorflow_serving.bearer_token_env
        if name is None:
            return None
        token = (os.environ if env is None else env).get(name, "")
        if not token:
            raise ConfigError(
                [
                    f"{name}: model_serving.tensorflow_serving.bearer_token_env: expected the "
                    "bearer token in this environment variable, got it unset or empty"
                ]
            )
        return token


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the file it was read from (None = built-in defaults)."""

    config: Config
    source: Path | None


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    allow_plaintext_token: bool = False,
    key_actions: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> LoadedConfig:
    """The configuration from flags (overrides) > DEEPCHAT_TFS_* env vars > the file > defaults.

    A bearer token goes only over TLS unless allow_plaintext_token (a command-line flag, never
    a file's); a file names a token variable only if it is the user's own or approved.
    key_actions (action -> default keys, the console's) checks ui.key_bindings against them. With
    a cache_dir, a configuration validated before from the same inputs is reused unvalidated.
    """
    env = os.environ if env is None else env
    source = find_config_file(path) if cache_dir is None else None
    key = None
    if cache_dir is not None:
        from core.config import cache

        source, key, entry = cache.lookup(
            path,
            env=env,
            overrides=overrides or {},
            allow_plaintext_token=allow_plaintext_token,
            key_actions=key_actions,
            cache_dir=cache_dir,
        )
        cached = cache.load_cached(entry, Config) if entry is not None else None
        # Only what store() writes is used: never a token variable or a file that must exist.
        if cached is not None and _valid_on_inputs_alone(cached):
            return LoadedConfig(cached, source)
    layers = Layers(Config, Config().model_dump())
    if source is not None:
        layers.add_file(source, str(path) if path is not None else _display_name(source))
    layers.add_env(env, ENV_PREFIX)
    layers.add_overrides(overrides or {})
    _targets_replace_embedded(layers)
    config: Config = layers.validate()
    if key_actions is not None:
        problems = key_binding_problems(config.ui.key_bindings, key_actions, layers)
        if problems:
            raise ConfigError(problems)
    _check_token_policy(config, layers, source, allow_plaintext_token)
    config.bearer_token(env)  # a named but unset variable fails now, not at the first call
    if cache_dir is not None and key is not None and _valid_on_inputs_alone(config):
        from core.config import cache

        cache.store(cache_dir, key, config, cached_facts(config))
    return LoadedConfig(config, source)


def cached_facts(config: Config) -> dict[str, object]:
    """What the console's first frame needs from the models' methods, stored with a cached
    config so that frame needs no models (tui.options.options_from_cache)."""
    return {
        "uses_embedded_server": config.uses_embedded_server(),
        "resolved_targets": config.resolved_targets(),
    }


def _valid_on_inputs_alone(config: Config) -> bool:
    # The models' side of core.config.cache.valid_on_inputs_alone (which reads a JSON dump).
    tfs = config.model_serving.tensorflow_serving
    adapters = [model.adapter for model in config.models]
    return (
        tfs.bearer_token_env is None
        and tfs.tls is None
        and all(a.labels_file is None and a.tokenizer_file is None for a in adapters)
    )


def _check_token_policy(
    config: Config, layers: Layers, source: Path | None, allow_plaintext_token: bool
) -> None:
    serving = config.model_serving.tensorflow_serving
    if serving.bearer_token_env is None:
        return
    key = ("model_serving", "tensorflow_serving", "bearer_token_env")
    where = layers.origin(key).label
    dotted_key = ".".join(key)
    if layers.origin(key).rank == 1 and source is not None and not may_name_token_variable(source):
        raise ConfigError(
            [
                f"{where}: {dotted_key}: expected a config file of your own or one you approved "
                f"to name a token variable, got {serving.bearer_token_env} named in a file "
                f"outside your config dir; read it, then run `deepchat-tfs allow {source}`"
            ]
        )
    if serving.tls is None and not allow_plaintext_token:
        raise ConfigError(
            [
                f"{where}: {dotted_key}: a bearer token is sent only over TLS; expected a "
                "model_serving.tensorflow_serving.tls section, got plaintext (the command-line "
                "flag --allow-plaintext-token permits it)"
            ]
        )


def _display_name(path: Path) -> str:
    # A found ./config.yaml reads as `config.yaml`; a given path is shown as it was given.
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _targets_replace_embedded(layers: Layers) -> None:
    # `chat --target` or DEEPCHAT_TFS_..._TARGETS over a file's `host: embedded` means "connect
    # there", so the higher layer's targets win; host then only names the first target.
    prefix = ("model_serving", "tensorflow_serving")
    tfs = layers.data.get("model_serving", {})
    tfs = tfs.get("tensorflow_serving") if isinstance(tfs, dict) else None
    if not isinstance(tfs, dict) or tfs.get("host") != EMBEDDED:
        return
    targets = tfs.get("targets")
    targets_rank = layers.origin((*prefix, "targets")).rank
    if (
        isinstance(targets, list)
        and targets
        and targets_rank > layers.origin((*prefix, "host")).rank
    ):
        first = str(targets[0])
        tfs["host"] = first.rsplit(":", 1)[0].strip("[]") if _TARGET.match(first) else first
