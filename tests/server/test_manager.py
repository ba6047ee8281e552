"""ModelManager with a stand-in loader: policies, ordering of loads and unloads, errors."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from core.wire import protos
from server.errors import ServingStatus
from server.manager import ModelManager


class FakeServable:
    """A loaded version that records when it was closed."""

    def __init__(self, name: str, version: int, events: list[str]) -> None:
        self.name = name
        self.version = version
        self.signature_defs: dict[str, Any] = {}
        self._events = events

    def close(self) -> None:
        self._events.append(f"close {self.name}:{self.version}")


class FakeLoader:
    """Loads instantly, except versions told to fail or to wait for a gate."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.failing: set[int] = set()
        self.gates: dict[int, threading.Event] = {}

    def __call__(self, name: str, version: int, path: Path) -> FakeServable:
        gate = self.gates.get(version)
        if gate is not None:
            assert gate.wait(10), "test gate never opened"
        if version in self.failing:
            raise OSError(f"cannot read {path}")
        self.events.append(f"load {name}:{version}")
        return FakeServable(name, version, self.events)


def _spec(name: str, version: int | None = None, label: str | None = None) -> Any:
    spec = protos.model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def _config(*models: tuple[str, Path, str], labels: dict[str, int] | None = None) -> Any:
    config = protos.model_server_config_pb2.ModelServerConfig()
    for name, base_path, policy in models:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(base_path)
        if policy == "all":
            entry.model_version_policy.all.SetInParent()
        for label, version in (labels or {}).items():
            entry.version_labels[label] = version
    return config


def _versions(base_path: Path, *versions: int | str) -> Path:
    for version in versions:
        (base_path / str(version)).mkdir(parents=True, exist_ok=True)
    return base_path


async def test_latest_policy_serves_the_highest_version(tmp_path: Path) -> None:
    loader = FakeLoader()
    manager = ModelManager(loader)
    base = _versions(tmp_path / "m", 1, "00000007", "not-a-version")
    await manager.reload_config(_config(("m", base, "")))
    assert manager.resolve(_spec("m")).version == 7
    assert loader.events == ["load m:7"]
    assert [s.version for s in manager.version_states("m")] == [7]


async def test_new_version_loads_before_the_old_one_unloads(tmp_path: Path) -> None:
    loader = FakeLoader()
    manager = ModelManager(loader)
    base = _versions(tmp_path / "m", 1)
    await manager.reload_config(_config(("m", base, "")))
    gate = loader.gates[2] = threading.Event()
    _versions(base, 2)
    poll = asyncio.create_task(manager.poll_file_system())
    await asyncio.sleep(0.05)
    # While version 2 loads, version 1 keeps serving.
    assert manager.resolve(_spec("m")).version == 1
    assert [(s.version, s.state) for s in manager.version_states("m")] == [
        (2, "LOADING"),
        (1, "AVAILABLE"),
    ]
    gate.set()
    await poll
    assert manager.resolve(_spec("m")).version == 2
    assert loader.events == ["load m:1", "load m:2", "close m:1"]
    assert [(s.version, s.state) for s in manager.version_states("m")] == [
        (2, "AVAILABLE"),
        (1, "END"),
    ]


async def test_unload_waits_for_requests_in_flight(tmp_path: Path) -> None:
    loader = FakeLoader()
    manager = ModelManager(loader)
    base = _versions(tmp_path / "m", 1)
    await manager.reload_config(_config(("m", base, "")))
    with manager.acquire(_spec("m")) as servable:
        _versions(base, 2)
        poll = asyncio.create_task(manager.poll_file_system())
        await asyncio.sleep(0.05)
        assert servable.version == 1
        assert "close m:1" not in loader.events
        assert [s.state for s in manager.version_states("m")] == ["AVAILABLE", "UNLOADING"]
    await poll
    assert loader.events[-1] == "close m:1"


async def test_failed_version_is_end_with_its_error_and_requests_see_it(tmp_path: Path) -> None:
    loader = FakeLoader()
    loader.failing.add(2)
    manager = ModelManager(loader)
    base = _versions(tmp_path / "m", 1, 2)
    await manager.reload_config(_config(("m", base, "all")))
    failed, healthy = manager.version_states("m")
    assert (failed.version, failed.state, failed.error_code) == (2, "END", "INTERNAL")
    assert "cannot read" in failed.error_message
    assert (healthy.state, healthy.error_code, healthy.error_message) == ("AVAILABLE", "OK", "")
    assert manager.resolve(_spec("m")).version == 1
    with pytest.raises(ServingStatus) as caught:
        manager.resolve(_spec("m", 2))
    assert caught.value.code_name == "FAILED_PRECONDITION"
    assert caught.value.message.startswith("Servable {name: m version: 2} failed to load: ")


async def test_a_model_that_cannot_load_at_all_fails_the_config(tmp_path: Path) -> None:
    loader = FakeLoader()
    loader.failing.add(1)
    manager = ModelManager(loader)
    with pytest.raises(ServingStatus) as caught:
        await manager.reload_config(_config(("m", _versions(tmp_path / "m", 1), "")))
    assert caught.value.message.startswith(
        "1 model(s) did not become available: {{name: m version: 1} due to error: "
    )


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (_spec(""), "INVALID_ARGUMENT", "ModelSpec has no name specified."),
        (_spec("x"), "NOT_FOUND", "Servable not found for request: Latest(x)"),
        (_spec("m", 9), "NOT_FOUND", "Servable not found for request: Specific(m, 9)"),
        (_spec("m", label="nope"), "INVALID_ARGUMENT", "Unrecognized servable version label: nope"),
    ],
)
async def test_request_errors(tmp_path: Path, spec: Any, code: str, message: str) -> None:
    manager = ModelManager(FakeLoader())
    await manager.reload_config(_config(("m", _versions(tmp_path / "m", 1), "")))
    with pytest.raises(ServingStatus) as caught:
        manager.resolve(spec)
    assert (caught.value.code_name, caught.value.message) == (code, message)


async def test_labels_point_at_versions(tmp_path: Path) -> None:
    manager = ModelManager(FakeLoader())
    base = _versions(tmp_path / "m", 1, 2)
    await manager.reload_config(_config(("m", base, "all"), labels={"stable": 1, "canary": 2}))
    assert manager.resolve(_spec("m", label="stable")).version == 1
    assert manager.resolve(_spec("m", label="canary")).version == 2
    with pytest.raises(ServingStatus, match="not currently available for inference"):
        await manager.reload_config(_config(("m", base, "all"), labels={"stable": 5}))
    # The refused labels left the old ones in place.
    assert manager.resolve(_spec("m", label="stable")).version == 1


async def test_labels_for_unavailable_versions_when_allowed(tmp_path: Path) -> None:
    manager = ModelManager(FakeLoader(), allow_labels_for_unavailable=True)
    base = _versions(tmp_path / "m", 1)
    await manager.reload_config(_config(("m", base, ""), labels={"next": 2}))
    with pytest.raises(ServingStatus, match=r"Specific\(m, 2\)"):
        manager.resolve(_spec("m", label="next"))


async def test_reload_drops_models_left_out_and_keeps_their_history(tmp_path: Path) -> None:
    loader = FakeLoader()
    manager = ModelManager(loader)
    first = _versions(tmp_path / "a", 1)
    second = _versions(tmp_path / "b", 3)
    await manager.reload_config(_config(("a", first, ""), ("b", second, "")))
    await manager.reload_config(_config(("b", second, "")))
    assert manager.model_names == ["b"]
    assert "close a:1" in loader.events
    assert [(s.version, s.state) for s in manager.version_states("a")] == [(1, "END")]
    with pytest.raises(ServingStatus, match=r"Latest\(a\)"):
        manager.resolve(_spec("a"))
    with pytest.raises(ServingStatus, match="Could not find any versions of model zzz"):
        manager.version_states("zzz")


async def test_unload_hook_runs_before_the_session_closes(tmp_path: Path) -> None:
    loader = FakeLoader()
    hooked: list[str] = []

    async def on_unload(servable: Any) -> None:
        hooked.append(f"hook {servable.name}:{servable.version}")
        loader.events.append(hooked[-1])

    manager = ModelManager(loader, on_unload=on_unload)
    base = _versions(tmp_path / "m", 1)
    await manager.reload_config(_config(("m", base, "")))
    await manager.close()
    assert loader.events[-2:] == ["hook m:1", "close m:1"]
