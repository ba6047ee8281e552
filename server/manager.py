"""Which model versions are loaded: version policies, labels, base-path polling, config reloads.

Mirrors TF Serving's AspiredVersionsManager with its availability-preserving policy: a new
version is loaded before an old one is unloaded, so a version switch never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from server import errors
from server.errors import ServingStatus
from server.models import scan_versions

log = logging.getLogger("deepchat_tfs.server.manager")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class Servable(Protocol):
    """What the manager needs of a loaded model version."""

    name: str
    version: int
    signature_defs: Any

    def close(self) -> None: ...


LoadFunction = Callable[[str, int, Path], Servable]
UnloadHook = Callable[[Servable], Awaitable[None]]


@dataclass
class VersionRecord:
    """One version of one model and where it is in its life."""

    version: int
    path: Path
    state: str = START
    error: ServingStatus | None = None
    servable: Servable | None = None
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class _Hold:
    """A request's hold on a loaded version: counted in flight until the block ends (a class,
    not @contextmanager: this runs on every request)."""

    __slots__ = ("_record",)

    def __init__(self, record: VersionRecord) -> None:
        self._record = record

    def __enter__(self) -> Servable:
        record = self._record
        servable = record.servable
        assert servable is not None
        record.in_flight += 1
        return servable

    def __exit__(self, *exc_info: object) -> None:
        record = self._record
        record.in_flight -= 1
        if record.in_flight == 0:
            record.idle.set()


@dataclass(frozen=True)
class VersionState:
    """A version's state as GetModelStatus reports it."""

    version: int
    state: str
    error_code: str
    error_message: str


@dataclass
class ModelEntry:
    """A configured model: its ModelConfig, versions seen and version labels."""

    config: Any
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    aspired: set[int] = field(default_factory=set)


def aspired_versions(model_config: Any, on_disk: set[int]) -> set[int]:
    """The versions a ModelConfig's version policy wants, out of those on disk."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        return set(policy.specific.versions) & on_disk
    wanted = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(sorted(on_disk, reverse=True)[:wanted])


def validate_model_config_list(config: Any) -> None:
    """TF Serving's checks on a ModelServerConfig: one list, unique names, absolute paths."""
    if config.WhichOneof("config") != "model_config_list":
        raise errors.invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported"
        )
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise errors.invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        names.add(model.name)
        if not model.name:
            raise errors.invalid_argument("A model in the config list has no name")
        if "://" not in model.base_path and not Path(model.base_path).is_absolute():
            raise errors.invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
        platform = model.model_platform or "tensorflow"
        if platform != "tensorflow":
            raise errors.invalid_argument(
                f"Model {model.name} requests unsupported platform {platform}"
            )


class ModelManager:
    """Loads, serves and unloads model versions as the config and the file system say."""

    def __init__(
        self,
        load: LoadFunction,
        *,
        on_unload: UnloadHook | None = None,
        allow_labels_for_unavailable: bool = False,
    ) -> None:
        self._load = load
        self._on_unload = on_unload
        self._allow_labels_for_unavailable = allow_labels_for_unavailable
        self._models: dict[str, ModelEntry] = {}
        # Models dropped by a config reload: GetModelStatus still reports their versions as END.
        self._retired: dict[str, dict[int, VersionRecord]] = {}
        self._sync_lock = asyncio.Lock()
        self.config: Any = None

    # ---- configuration and polling --------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        """Names of the configured models."""
        return list(self._models)

    async def reload_config(self, config: Any) -> None:
        """Replace the model list (models left out are unloaded) and load what it asks for."""
        validate_model_config_list(config)
        async with self._sync_lock:
            new_names = {model.name for model in config.model_config_list.config}
            for name in list(self._models):
                if name not in new_names:
                    entry = self._models.pop(name)
                    log.info("unloading model %s (not in the new config)", name)
                    await asyncio.gather(
                        *(self._unload(record) for record in entry.versions.values())
                    )
                    self._retired[name] = entry.versions
            added: list[str] = []
            for model in config.model_config_list.config:
                existing = self._models.get(model.name)
                if existing is None:
                    retired = self._retired.pop(model.name, {})
                    self._models[model.name] = ModelEntry(config=model, versions=retired)
                    added.append(model.name)
                else:
                    existing.config = model
            self.config = config
            await self._sync_all()
            self._check_added_models(added)
            self._apply_labels(config)

    async def poll_file_system(self) -> None:
        """Look for new or removed version directories once, and act on them."""
        async with self._sync_lock:
            await self._sync_all()

    async def poll_forever(self, interval_s: float) -> None:
        """Poll the base paths every interval_s seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_file_system()
            except Exception:
                log.exception("polling the model base paths failed")

    def _check_added_models(self, added: list[str]) -> None:
        failures = []
        for name in added:
            entry = self._models[name]
            if any(record.state == AVAILABLE for record in entry.versions.values()):
                continue
            failed = [record for record in entry.versions.values() if record.error is not None]
            if failed:
                record = max(failed, key=lambda item: item.version)
                failures.append(
                    f"{{name: {name} version: {record.version}}} due to error: {record.error}"
                )
        if failures:
            raise ServingStatus(
                grpc.StatusCode.UNKNOWN,
                f"{len(failures)} model(s) did not become available: {{"
                + ", ".join(failures)
                + "}",
            )

    def _apply_labels(self, config: Any) -> None:
        labels_by_model: dict[str, dict[str, int]] = {}
        for model in config.model_config_list.config:
            entry = self._models[model.name]
            for version in model.version_labels.values():
                record = entry.versions.get(version)
                available = record is not None and record.state == AVAILABLE
                if not available and not self._allow_labels_for_unavailable:
                    raise errors.failed_precondition(
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference"
                    )
            labels_by_model[model.name] = dict(model.version_labels)
        for name, labels in labels_by_model.items():
            self._models[name].labels = labels

    async def _sync_all(self) -> None:
        await asyncio.gather(*(self._sync_model(entry) for entry in list(self._models.values())))

    async def _sync_model(self, entry: ModelEntry) -> None:
        name = entry.config.name
        base_path = Path(entry.config.base_path)
        try:
            on_disk = await asyncio.to_thread(scan_versions, base_path)
        except OSError as error:
            log.warning("model %s: cannot list base path %s: %s", name, base_path, error)
            on_disk = {}
        aspired = aspired_versions(entry.config, set(on_disk))
        if not on_disk:
            log.warning("No versions of servable %s found under base path %s", name, base_path)
        to_load = []
        for version in sorted(aspired):
            record = entry.versions.get(version)
            newly_aspired = version not in entry.aspired
            if record is None or (record.state == END and (record.error is None or newly_aspired)):
                record = VersionRecord(version=version, path=on_disk[version])
                entry.versions[version] = record
                to_load.append(record)
        entry.aspired = aspired
        if to_load:
            await asyncio.gather(*(self._load_version(name, record) for record in to_load))
        aspired_available = any(
            entry.versions[version].state == AVAILABLE
            for version in aspired
            if version in entry.versions
        )
        # Availability preserving: drop old versions once a wanted one serves (or none is left).
        if aspired_available or not aspired:
            stale = [
                record
                for version, record in entry.versions.items()
                if version not in aspired and record.state == AVAILABLE
            ]
            await asyncio.gather(*(self._unload(record) for record in stale))

    async def _load_version(self, name: str, record: VersionRecord) -> None:
        record.state = LOADING
        log.info(
            "Loading servable: {name: %s version: %d} from %s", name, record.version, record.path
        )
        try:
            servable = await asyncio.to_thread(self._load, name, record.version, record.path)
        except Exception as error:
            status = errors.status_from_tf_error(error)
            record.error = ServingStatus(status.code, status.message)
            record.state = END
            log.error(
                "Loading servable: {name: %s version: %d} failed: %s", name, record.version, status
            )
            return
        record.servable = servable
        record.error = None
        record.state = AVAILABLE
        log.info(
            "Successfully loaded servable version {name: %s version: %d}", name, record.version
        )

    async def _unload(self, record: VersionRecord) -> None:
        if record.state != AVAILABLE or record.servable is None:
            return
        record.state = UNLOADING
        # Requests already running on this version finish first.
        while record.in_flight:
            record.idle.clear()
            await record.idle.wait()
        servable, record.servable = record.servable, None
        if self._on_unload is not None:
            await self._on_unload(servable)
        await asyncio.to_thread(servable.close)
        record.state = END
        log.info("Unloaded servable version {name: %s version: %d}", servable.name, record.version)

    async def close(self) -> None:
        """Unload every version of every model."""
        async with self._sync_lock:
            for entry in self._models.values():
                await asyncio.gather(*(self._unload(record) for record in entry.versions.values()))

    # ---- requests -------------------------------------------------------------------------

    def resolve(self, model_spec: Any) -> VersionRecord:
        """The loaded version a request's ModelSpec asks for, or TF Serving's error for it."""
        name = model_spec.name
        if not name:
            raise errors.invalid_argument("ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        entry = self._models.get(name)
        if choice == "version_label":
            label = model_spec.version_label
            if entry is None or label not in entry.labels:
                raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
            version: int | None = entry.labels[label]
        elif choice == "version":
            version = model_spec.version.value
        else:
            version = None
        if entry is not None:
            if version is None:
                available = [r for r in entry.versions.values() if r.state == AVAILABLE]
                if available:
                    return max(available, key=lambda record: record.version)
                self._raise_if_failed(name, list(entry.versions.values()))
            else:
                record = entry.versions.get(version)
                if record is not None and record.state == AVAILABLE:
                    return record
                if record is not None:
                    self._raise_if_failed(name, [record])
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise errors.not_found(f"Servable not found for request: {request}")

    @staticmethod
    def _raise_if_failed(name: str, records: list[VersionRecord]) -> None:
        failed = [record for record in records if record.state == END and record.error]
        if failed:
            record = max(failed, key=lambda item: item.version)
            raise errors.failed_precondition(
                f"Servable {{name: {name} version: {record.version}}} failed to load: "
                f"{record.error.message if record.error else ''}"
            )

    def acquire(self, model_spec: Any) -> _Hold:
        """Hold the requested version loaded while a request runs on it (a context manager
        whose value is the servable)."""
        return _Hold(self.resolve(model_spec))

    def version_states(self, name: str, version: int | None = None) -> list[VersionState]:
        """GetModelStatus's answer: versions newest first, or TF Serving's NOT_FOUND."""
        entry = self._models.get(name)
        versions = entry.versions if entry is not None else self._retired.get(name, {})
        if version is not None:
            record = versions.get(version)
            if record is None:
                raise errors.not_found(f"Could not find version {version} of model {name}")
            records = [record]
        else:
            records = sorted(versions.values(), key=lambda item: item.version, reverse=True)
            if not records:
                raise errors.not_found(f"Could not find any versions of model {name}")
        return [
            VersionState(
                version=record.version,
                state=record.state,
                error_code=record.error.code_name if record.error else "OK",
                error_message=record.error.message if record.error else "",
            )
            for record in records
        ]

    def available_versions(self, name: str) -> list[int]:
        """Versions of a model that serve requests now, oldest first."""
        entry = self._models.get(name)
        if entry is None:
            return []
        return sorted(v for v, record in entry.versions.items() if record.state == AVAILABLE)
