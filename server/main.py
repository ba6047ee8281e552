"""`deepchat-tfs serve`: a TF-Serving-compatible model server on the real TensorFlow runtime."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from core import event_loop
from core.embedded.protocol import ready_line
from server import heap, lifecycle
from server.config import ConfigFileError, initial_model_server_config, load_monitoring_config
from server.errors import ServingStatus
from server.flags import FlagError, ServerOptions, parse_flags, usage
from server.limits import RequestLimits, limit_tensorflow_cpu_memory, raise_open_file_limit
from server.log_limits import RepeatedLineFilter

log = logging.getLogger("deepchat_tfs.server")


# Set to "asyncio" to serve on asyncio's own event loop even where uvloop is installed.
SERVER_LOOP_ENV = "DEEPCHAT_TFS_SERVER_LOOP"


class StartupError(Exception):
    """The server cannot start; the text says why, for the person who started it."""


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s", "%H:%M:%S"
        )
    )
    # A flood of equal lines (one per refused connection, say) is cut to a few per window.
    handler.addFilter(RepeatedLineFilter())
    root = logging.getLogger("deepchat_tfs")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    for name in ("asyncio", "aiohttp", "grpc"):
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT (or the parent's exit); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help", "-help", "--helpfull") for arg in args):
        print(usage(), end="")
        return 0
    try:
        options = parse_flags(args)
    except FlagError as error:
        print(f"deepchat-tfs serve: {error}", file=sys.stderr)
        return 2
    if options.version:
        print(_version_text(), end="")
        return 0
    _configure_logging()
    limit_tensorflow_cpu_memory(options.tensorflow_cpu_memory_limit_in_mb)
    soft_before, soft_after = raise_open_file_limit()
    if soft_after != soft_before:
        log.info("raised the open file limit from %d to %d", soft_before, soft_after)
    if options.parent_pid:
        lifecycle.die_with_parent(options.parent_pid)
    # Only the ready line may reach stdout: the launcher reads it, and a console may own the tty.
    ready_stream = sys.stdout
    sys.stdout = sys.stderr
    try:
        # uvloop where installed (SERVER_LOOP_ENV=asyncio keeps asyncio's): less CPU per request.
        return event_loop.run(_serve(options, ready_stream), SERVER_LOOP_ENV)
    except StartupError as error:
        print(f"deepchat-tfs serve: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout = ready_stream


def _version_text() -> str:
    """What tensorflow_model_server --version prints, naming this server and its TensorFlow."""
    from importlib import metadata

    from server.models import import_tensorflow

    try:
        served_by = metadata.version("deepchat-tfs")
    except metadata.PackageNotFoundError:
        served_by = "unknown"
    tf = import_tensorflow()
    return (
        f"TensorFlow ModelServer: deepchat-tfs {served_by}\nTensorFlow Library: {tf.__version__}\n"
    )


def _read_batching_parameters(options: ServerOptions) -> Any:
    if not options.enable_batching:
        return None
    from server.batching import BatchingConfigError, BatchingParameters, load_batching_parameters

    if not options.batching_parameters_file:
        return BatchingParameters()
    try:
        return load_batching_parameters(options.batching_parameters_file)
    except BatchingConfigError as error:
        raise StartupError(f"--batching_parameters_file: {error}") from None


def _make_metrics() -> Any:
    from server.metrics import ServerMetrics

    return ServerMetrics()


def _grpc_credentials(options: ServerOptions) -> Any:
    """TLS credentials from --ssl_config_file, or None for plaintext gRPC."""
    if not options.ssl_config_file:
        return None
    from server.tls import load_ssl_config, server_credentials

    ssl_config = load_ssl_config(options.ssl_config_file)
    log.info(
        "gRPC uses TLS from --ssl_config_file %s%s",
        options.ssl_config_file,
        " and requires verified client certificates" if ssl_config.client_verify else "",
    )
    return server_credentials(ssl_config)


def _check_base_paths(config: Any) -> None:
    for model in config.model_config_list.config:
        base_path = Path(model.base_path)
        if "://" not in model.base_path and not base_path.is_dir():
            raise StartupError(
                f"model {model.name!r}: base path {model.base_path!r} is not a directory; "
                "expected a directory holding numbered SavedModel versions (e.g. BASE/1/)"
            )


def request_limits(options: ServerOptions, batching_parameters: Any) -> RequestLimits:
    """The size checks the flags ask for (batching's task size when tasks are never split)."""
    max_batch_size = 0
    if batching_parameters is not None and not batching_parameters.enable_large_batch_splitting:
        max_batch_size = batching_parameters.max_batch_size
    return RequestLimits(options.max_request_tensor_bytes, max_batch_size)


def _build_service(options: ServerOptions, batching_parameters: Any, metrics: Any) -> Any:
    """The request-serving core: executor, model manager and the shared RPC logic."""
    from server.execution import Executor
    from server.manager import ModelManager
    from server.service import InferenceService

    executor = Executor(
        max_threads=options.grpc_max_threads or max(4, 2 * (os.cpu_count() or 1)),
        batching_parameters=batching_parameters,
        metrics=metrics,
        max_inflight=options.max_inflight_requests,
    )
    load = partial(
        _load_servable,
        warm_up=options.enable_model_warmup,
        warmup_iterations=max(1, options.num_request_iterations_for_warmup),
        method_name_check=options.enable_signature_method_name_check,
        # Batched Predict runs without a timeout; only unbatched runs use Session::Run's.
        deadline_runs=batching_parameters is None,
        tags=[tag.strip() for tag in options.saved_model_tags.split(",") if tag.strip()],
        **session_threads(options),
    )
    manager = ModelManager(
        load,
        on_unload=executor.forget,
        allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
    )
    return InferenceService(
        manager,
        executor,
        metrics,
        request_limits(options, batching_parameters),
        method_name_check=options.enable_signature_method_name_check,
        tensor_content=options.enable_serialization_as_tensor_content,
    )


def session_threads(options: ServerOptions) -> dict[str, int]:
    """TensorFlow's thread pools: the flags when set, else sized for a small machine.

    0 means auto-configured, as in TF Serving. Auto runs each op in the thread that called the
    session (inter-op -1: no handoff to a pool whose threads spin while waiting for work) and
    gives single ops all cores but one, which stays for the gRPC and event-loop threads.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "intra_op_threads": options.tensorflow_intra_op_parallelism or max(1, (cpus or 1) - 1),
        "inter_op_threads": options.tensorflow_inter_op_parallelism or -1,
    }


def _load_servable(
    name: str,
    version: int,
    path: Path,
    *,
    warm_up: bool,
    warmup_iterations: int,
    method_name_check: bool,
    deadline_runs: bool,
    **load: Any,
) -> Any:
    """Load one version, build its signatures' executors and replay its warmup requests
    (blocks; runs in a worker thread). deadline_runs: unbatched runs with a timeout happen."""
    from server.models import SavedModelServable
    from server.warmup import warm_up as replay_warmup

    servable = SavedModelServable.load(name, version, path, **load)
    try:
        servable.prepare_runs(deadline_runs=deadline_runs)
        if warm_up:
            replay_warmup(
                servable, iterations=warmup_iterations, method_name_check=method_name_check
            )
    except BaseException:
        servable.close()
        raise
    return servable


def _background_tasks(options: ServerOptions, manager: Any, stop: asyncio.Event) -> list[Any]:
    """Base-path polling, config-file polling and the parent watch, as the flags ask."""
    tasks = []
    if options.file_system_poll_wait_seconds > 0:
        tasks.append(
            asyncio.create_task(manager.poll_forever(options.file_system_poll_wait_seconds))
        )
    if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
        tasks.append(
            asyncio.create_task(
                lifecycle.poll_config_file(
                    options.model_config_file, options.model_config_file_poll_wait_seconds, manager
                )
            )
        )
    if options.parent_pid:
        tasks.append(asyncio.create_task(lifecycle.watch_parent(options.parent_pid, stop)))
    return tasks


async def _start_rest(
    options: ServerOptions, service: Any, metrics: Any, monitoring: Any
) -> tuple[Any, int]:
    """Start the REST API when --rest_api_port is set; (runner or None, bound port or 0)."""
    if not options.rest_api_port:
        if monitoring is not None and monitoring.prometheus_config.enable:
            log.warning("--monitoring_config_file enables Prometheus, but --rest_api_port is 0")
        return None, 0
    from server.rest_api import start_rest_server

    try:
        return await start_rest_server(
            service,
            options.host,
            options.rest_api_port,
            timeout_ms=options.rest_api_timeout_in_ms,
            metrics=metrics,
            monitoring=monitoring,
            max_body_bytes=options.rest_api_max_body_bytes,
            max_connections=options.rest_api_max_connections,
            idle_timeout_s=options.rest_api_idle_timeout_in_ms / 1000,
            cors=options.rest_api_enable_cors_support,
        )
    except OSError as error:
        raise StartupError(
            f"cannot listen on {options.host}:{options.rest_api_port} (REST, --rest_api_port): "
            f"{error.strerror or error}"
        ) from None


async def _serve(options: ServerOptions, ready_stream: TextIO) -> int:
    from server.grpc_api import BindError, GrpcEndpoint
    from server.models import import_tensorflow

    try:
        model_config = initial_model_server_config(options)
        monitoring = (
            load_monitoring_config(options.monitoring_config_file)
            if options.monitoring_config_file
            else None
        )
        credentials = _grpc_credentials(options)
    except ConfigFileError as error:
        raise StartupError(str(error)) from None
    batching_parameters = _read_batching_parameters(options)
    _check_base_paths(model_config)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    metrics = _make_metrics()
    service = _build_service(options, batching_parameters, metrics)
    addresses = [f"{_host_for_grpc(options.host)}:{options.port}"]
    if options.grpc_socket_path:
        addresses.append(f"unix:{options.grpc_socket_path}")
    try:
        # Bind before loading models: a taken port fails in a second, not after the loads.
        grpc_endpoint = GrpcEndpoint(
            service,
            addresses,
            channel_arguments=options.grpc_channel_arguments,
            max_threads=options.grpc_max_threads,
            credentials=credentials,
        )
    except BindError as error:
        raise StartupError(f"{error} (gRPC, --port={options.port})") from None
    if options.rest_api_port:
        _check_port_free(options.host, options.rest_api_port, "REST, --rest_api_port")
    await asyncio.to_thread(import_tensorflow)
    if model_config.WhichOneof("config") is None:
        # TF Serving's ServerCore starts with no models and waits for a config to arrive.
        log.info("Taking no action for empty config.")
    else:
        try:
            await service.manager.reload_config(model_config)
        except ServingStatus as error:
            raise StartupError(error.message) from None
    if stop.is_set():
        # Asked to stop while the models loaded: leave without ever reporting ready.
        await service.manager.close()
        await service.executor.close()
        return 0
    await grpc_endpoint.start()
    rest_runner, rest_port = await _start_rest(options, service, metrics, monitoring)
    background = _background_tasks(options, service.manager, stop)

    # Pay the collector's first full pass over TensorFlow's objects now, not during requests.
    heap.settle()
    grpc_port = grpc_endpoint.ports[0]
    log.info("Running gRPC ModelServer at %s:%d ...", options.host, grpc_port)
    line = ready_line(
        f"{options.host}:{grpc_port}",
        f"{options.host}:{rest_port}" if rest_port else None,
        list(service.manager.model_names),
        options.grpc_socket_path or None,
    )
    print(line, file=ready_stream, flush=True)

    await stop.wait()
    log.info("shutting down")
    for task in background:
        task.cancel()
    await grpc_endpoint.stop(1.0)
    if rest_runner is not None:
        await rest_runner.cleanup()
    await service.manager.close()
    await service.executor.close()
    if options.grpc_socket_path and os.path.exists(options.grpc_socket_path):
        os.unlink(options.grpc_socket_path)
    return 0


def _check_port_free(host: str, port: int, what: str) -> None:
    """Fail before the (slow) model loads when a port is taken; the real bind comes later."""
    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as error:
        raise StartupError(
            f"cannot listen on {host}:{port} ({what}): {error.strerror or error}"
        ) from None


def _host_for_grpc(host: str) -> str:
    # An IPv6 literal needs brackets in a gRPC target.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
