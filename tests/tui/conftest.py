"""Console test helpers: a chat-shaped fault server, options, and bounded waits for the app."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from textual.pilot import Pilot

from core.config.schema import Config
from core.metrics.stats import StatsCollector
from core.wire import protos
from core.wire.tensors import make_ndarray, make_tensor_proto
from tests.fixtures.fault_servicer import Behaviour, FaultServer
from tui.app import DeepChatApp
from tui.options import ConsoleOptions, build_options


def chat_signature(
    inputs: dict[str, int] | None = None, outputs: dict[str, int] | None = None
) -> Any:
    """A predict SignatureDef shaped like the demo model: text -> reply, confidence."""
    signature = protos.meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    inputs = inputs or {"text": protos.types_pb2.DT_STRING}
    outputs = outputs or {
        "reply": protos.types_pb2.DT_STRING,
        "confidence": protos.types_pb2.DT_FLOAT,
    }
    for tensors, specs in ((signature.inputs, inputs), (signature.outputs, outputs)):
        for alias, dtype in specs.items():
            tensors[alias].name = f"{alias}:0"
            tensors[alias].dtype = dtype
            tensors[alias].tensor_shape.dim.add(size=-1)
    return signature


def echo_predict(served_version: int = 2, prefix: str = "echo") -> Callable[[Any], Any]:
    """A Predict handler answering each prompt with '<prefix> v<version>: <prompt>'."""

    def predict(request: Any) -> Any:
        prompts = make_ndarray(request.inputs["text"]).reshape(-1)
        version = request.model_spec.version.value if request.model_spec.HasField("version") else 0
        version = version or served_version
        replies = np.array(
            [f"{prefix} v{version}: ".encode() + bytes(prompt) for prompt in prompts], dtype=object
        )
        response = protos.predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = request.model_spec.signature_name
        response.model_spec.version.value = version
        response.outputs["reply"].CopyFrom(make_tensor_proto(replies))
        response.outputs["confidence"].CopyFrom(
            make_tensor_proto(np.full(len(prompts), 0.5, dtype=np.float32))
        )
        return response

    return predict


def chat_behaviour(**changes: Any) -> Behaviour:
    """Fault-server behaviour of a chat model with versions 1 and 2 AVAILABLE."""
    fields: dict[str, Any] = {
        "served_version": 2,
        "predict": echo_predict(),
        "signature_defs": {"serving_default": chat_signature()},
        "version_states": {1: "AVAILABLE", 2: "AVAILABLE"},
    }
    fields.update(changes)
    return Behaviour(**fields)


@pytest_asyncio.fixture
async def chat_server() -> AsyncIterator[FaultServer]:
    """A started FaultServer that behaves like the demo chat model."""
    async with FaultServer(chat_behaviour()) as server:
        yield server


def make_config(**sections: Any) -> Config:
    """A Config from section dicts (defaults elsewhere), e.g. ui={"refresh_hz": 10}."""
    return Config.model_validate(sections)


def remote_options(
    tmp_path: Path, targets: tuple[str, ...], *, config: Config | None = None, **changes: Any
) -> ConsoleOptions:
    """Options for a console talking to given targets, storing under tmp_path."""
    config = config or make_config(
        model_serving={"tensorflow_serving": {"host": "127.0.0.1", "rest_port": 0}},
        models=[{"name": "chat", "model_name": "deepchat_model"}],
    )
    options = build_options(config, targets=targets, data_dir=tmp_path / "data")
    return dataclasses.replace(options, clock=lambda: "12:00:00", **changes)


def offline_options(tmp_path: Path, **changes: Any) -> ConsoleOptions:
    """Options for a console that never connects (deterministic screens)."""
    return remote_options(tmp_path, ("127.0.0.1:1",), connect=False, **changes)


class FrozenClock:
    """A monotonic clock for StatsCollector that only moves when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def frozen_stats() -> tuple[StatsCollector, FrozenClock]:
    """A StatsCollector on a frozen clock, so panels render the same every run."""
    clock = FrozenClock()
    return StatsCollector(clock=clock), clock


async def wait_for(
    pilot: Pilot[Any], condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0
) -> None:
    """Pause the pilot until condition() is true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.02)


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., DeepChatApp]:
    """Build DeepChatApps on tmp_path; call with targets=... (or none for offline)."""

    def make(targets: tuple[str, ...] = (), **changes: Any) -> DeepChatApp:
        stats = changes.pop("stats", None)
        if targets:
            options = remote_options(tmp_path, targets, **changes)
        else:
            options = offline_options(tmp_path, **changes)
        return DeepChatApp(options, stats=stats)

    return make
