"""tensorflow_model_server's command-line flags, parsed the way its absl/TF flag parser does."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class FlagError(ValueError):
    """A command line that tensorflow_model_server would reject."""


@dataclass
class ServerOptions:
    """Every flag of `deepchat-tfs serve`, with tensorflow_model_server's defaults."""

    port: int = field(default=8500, metadata={"help": "TCP port to listen on for gRPC/HTTP API"})
    grpc_socket_path: str = field(
        default="", metadata={"help": "also listen for gRPC on this UNIX domain socket path"}
    )
    rest_api_port: int = field(
        default=0, metadata={"help": "port for the HTTP/REST API; 0 = no REST API"}
    )
    rest_api_num_threads: int = field(
        default=0, metadata={"help": "accepted for compatibility; REST runs on the event loop"}
    )
    rest_api_timeout_in_ms: int = field(
        default=30000, metadata={"help": "timeout for HTTP/REST API calls"}
    )
    rest_api_enable_cors_support: bool = field(
        default=False, metadata={"help": "add CORS headers to REST responses"}
    )
    enable_batching: bool = field(default=False, metadata={"help": "enable batching"})
    allow_version_labels_for_unavailable_models: bool = field(
        default=False,
        metadata={"help": "allow assigning a version label to a version that is not yet loaded"},
    )
    batching_parameters_file: str = field(
        default="", metadata={"help": "text-format BatchingParameters file"}
    )
    model_config_file: str = field(
        default="", metadata={"help": "text-format ModelServerConfig file (several models)"}
    )
    model_config_file_poll_wait_seconds: int = field(
        default=0, metadata={"help": "re-read --model_config_file this often; 0 = never"}
    )
    model_name: str = field(default="default", metadata={"help": "name of the model"})
    model_base_path: str = field(
        default="", metadata={"help": "path to export (holds numbered version directories)"}
    )
    max_num_load_retries: int = field(
        default=5, metadata={"help": "accepted for compatibility; a failed load is not retried"}
    )
    file_system_poll_wait_seconds: int = field(
        default=1, metadata={"help": "interval between polls of the base paths for new versions"}
    )
    flush_filesystem_caches: bool = field(
        default=True, metadata={"help": "accepted for compatibility"}
    )
    tensorflow_session_parallelism: int = field(
        default=0, metadata={"help": "threads for TensorFlow ops (sets intra and inter op)"}
    )
    tensorflow_intra_op_parallelism: int = field(
        default=0, metadata={"help": "threads inside one op; 0 = auto (all cores but one)"}
    )
    tensorflow_inter_op_parallelism: int = field(
        default=0,
        metadata={"help": "ops run in parallel; 0 = auto (ops run in the calling thread)"},
    )
    saved_model_tags: str = field(
        default="serve", metadata={"help": "comma-separated tags of the MetaGraphDef to load"}
    )
    monitoring_config_file: str = field(
        default="", metadata={"help": "text-format MonitoringConfig file (Prometheus endpoint)"}
    )
    enable_model_warmup: bool = field(
        default=True,
        metadata={"help": "replay assets.extra/tf_serving_warmup_requests before serving"},
    )
    num_request_iterations_for_warmup: int = field(
        default=0, metadata={"help": "times each warmup request is replayed; used only if > 0"}
    )
    enable_signature_method_name_check: bool = field(
        default=False,
        metadata={
            "help": "check SignatureDef method_name for Classify/Regress/MultiInference; "
            "leave off to serve native TF2 classification/regression models"
        },
    )
    enable_serialization_as_tensor_content: bool = field(
        default=False,
        metadata={"help": "write Predict outputs as tensor_content instead of typed *_val"},
    )
    enable_grpc_healthcheck_service: bool = field(
        default=False,
        metadata={"help": "accepted for compatibility; grpc.health.v1 is always served"},
    )
    num_load_threads: int = field(
        default=0, metadata={"help": "accepted for compatibility; versions load in a thread"}
    )
    num_unload_threads: int = field(default=0, metadata={"help": "accepted for compatibility"})
    load_retry_interval_micros: int = field(
        default=60_000_000,
        metadata={"help": "accepted for compatibility; see max_num_load_retries"},
    )
    remove_unused_fields_from_bundle_metagraph: bool = field(
        default=True, metadata={"help": "accepted for compatibility"}
    )
    xla_cpu_compilation_enabled: bool = field(
        default=False, metadata={"help": "accepted for compatibility (CPU-only TensorFlow)"}
    )
    xla_gpu_compilation_enabled: bool = field(
        default=False, metadata={"help": "accepted for compatibility (CPU-only TensorFlow)"}
    )
    per_process_gpu_memory_fraction: float = field(
        default=0.0, metadata={"help": "accepted for compatibility (no GPU)"}
    )
    skip_initialize_tpu: bool = field(
        default=False, metadata={"help": "accepted for compatibility (no TPU)"}
    )
    version: bool = field(default=False, metadata={"help": "display version and exit"})
    grpc_channel_arguments: str = field(
        default="", metadata={"help": "comma-separated key=value gRPC server channel arguments"}
    )
    grpc_max_threads: int = field(
        default=0, metadata={"help": "max concurrent gRPC calls; 0 = unlimited"}
    )
    ssl_config_file: str = field(
        default="",
        metadata={
            "help": "text-format SSLConfig file: serve gRPC over TLS (mTLS with client_verify)"
        },
    )
    max_request_tensor_bytes: int = field(
        default=256 * 2**20,
        metadata={
            "help": "ceiling on a request's tensor bytes once built, checked before building; "
            "more is RESOURCE_EXHAUSTED; 0 = none (deepchat-tfs addition)"
        },
    )
    tensorflow_cpu_memory_limit_in_mb: int = field(
        default=4096,
        metadata={
            "help": "memory TensorFlow may allocate for tensors on the CPU (its BFC allocator); "
            "a run needing more fails with RESOURCE_EXHAUSTED; 0 = no limit (deepchat-tfs addition)"
        },
    )
    max_inflight_requests: int = field(
        default=0,
        metadata={
            "help": "unbatched requests running or queued for a session run; more are shed at "
            "once with UNAVAILABLE; 0 = 16 per session thread (deepchat-tfs addition)"
        },
    )
    rest_api_max_connections: int = field(
        default=2048,
        metadata={
            "help": "open REST connections; past it the oldest idle one is closed, or the new "
            "one refused with 503 (deepchat-tfs addition)"
        },
    )
    rest_api_idle_timeout_in_ms: int = field(
        default=15000,
        metadata={
            "help": "close a REST connection whose request headers or next keep-alive request "
            "take longer than this (deepchat-tfs addition)"
        },
    )
    rest_api_max_body_bytes: int = field(
        default=16 * 2**20,
        metadata={"help": "largest REST request body; more is refused (deepchat-tfs addition)"},
    )
    host: str = field(
        default="127.0.0.1", metadata={"help": "address to bind (deepchat-tfs addition)"}
    )
    parent_pid: int = field(default=0, metadata={"help": "", "hidden": True})


_FIELDS = {f.name: f for f in dataclasses.fields(ServerOptions)}
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def usage() -> str:
    """The help text listing every flag with its default."""
    lines = ["usage: deepchat-tfs serve [--flag=value ...]", "", "Flags:"]
    for name, spec in _FIELDS.items():
        if spec.metadata.get("hidden"):
            continue
        kind = _kind(spec)
        default = spec.default
        shown = str(default).lower() if kind is bool else repr(default) if kind is str else default
        lines.append(f"  --{name}={shown}  ({kind.__name__})  {spec.metadata['help']}")
    return "\n".join(lines) + "\n"


def _kind(spec: dataclasses.Field[Any]) -> type:
    return type(spec.default)


def _convert(name: str, kind: type, raw: str) -> object:
    if kind is bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise FlagError(f"--{name}: expected a boolean (true/false), got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise FlagError(f"--{name}: expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise FlagError(f"--{name}: expected a number, got {raw!r}") from None
    return raw


def parse_flags(argv: Sequence[str]) -> ServerOptions:
    """Parse `--flag=value`, `--flag value`, `--flag`, `--noflag`; unknown flags are an error."""
    values: dict[str, object] = {}
    index = 0
    args = list(argv)
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected argument {arg!r}; every option is a --flag=value")
        body = arg.lstrip("-")
        name, has_value, raw = body.partition("=")
        spec = _FIELDS.get(name)
        if spec is None and name.startswith("no") and name[2:] in _FIELDS and not has_value:
            # absl's negated boolean form: --noenable_batching.
            negated = _FIELDS[name[2:]]
            if _kind(negated) is bool:
                values[negated.name] = False
                continue
        if spec is None:
            raise FlagError(f"unknown flag --{name}; run `deepchat-tfs serve --help` for the list")
        kind = _kind(spec)
        if not has_value:
            if kind is bool:
                # A bare boolean flag is true, unless the next word is an explicit boolean.
                if index < len(args) and args[index].lower() in _TRUE | _FALSE:
                    raw = args[index]
                    index += 1
                else:
                    raw = "true"
            else:
                if index >= len(args):
                    raise FlagError(f"--{name}: missing value (expected {kind.__name__})")
                raw = args[index]
                index += 1
        values[name] = _convert(name, kind, raw)
    options = ServerOptions(**values)  # type: ignore[arg-type]
    _validate(options)
    return options


def _validate(options: ServerOptions) -> None:
    for name in (
        "max_request_tensor_bytes",
        "max_inflight_requests",
        "rest_api_max_body_bytes",
        "tensorflow_cpu_memory_limit_in_mb",
    ):
        if getattr(options, name) < 0:
            raise FlagError(f"--{name}: expected 0 or more, got {getattr(options, name)}")
    for name in ("rest_api_max_connections", "rest_api_idle_timeout_in_ms"):
        if getattr(options, name) < 1:
            raise FlagError(f"--{name}: expected 1 or more, got {getattr(options, name)}")
    for name in ("port", "rest_api_port"):
        port = getattr(options, name)
        if not 0 <= port <= 65535:
            raise FlagError(f"--{name}: expected a port 0-65535, got {port}")
    if not options.model_config_file and not options.model_base_path and not options.version:
        raise FlagError(
            "Both --model_base_path and --model_config_file are empty; "
            "expected one of them (a SavedModel base path, or a ModelServerConfig file)"
        )
    if options.tensorflow_session_parallelism and not (
        options.tensorflow_intra_op_parallelism or options.tensorflow_inter_op_parallelism
    ):
        options.tensorflow_intra_op_parallelism = options.tensorflow_session_parallelism
        options.tensorflow_inter_op_parallelism = options.tensorflow_session_parallelism


def parse_channel_arguments(text: str) -> list[tuple[str, str | int]]:
    """Split --grpc_channel_arguments ("k=v,k2=v2") into (key, value) pairs, ints as ints."""
    pairs: list[tuple[str, str | int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, has_value, raw = item.partition("=")
        if not has_value or not key:
            raise FlagError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        try:
            pairs.append((key.strip(), int(raw)))
        except ValueError:
            pairs.append((key.strip(), raw.strip()))
    return pairs
