"""What the console runs with: the loaded config plus command-line choices (no Textual here).

Nothing here imports the serving modules (gRPC, numpy, protos) at import time: the console draws
its first frame from these options before it loads them (pydantic and the config models).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from core.chat.adapter_settings import AdapterSettings
from core.client.targets import rest_url_for
from core.identity import data_dir as user_data_dir
from core.wire.model_spec import ModelSpec

if TYPE_CHECKING:
    from core.config.cache import Entry
    from core.config.schema import Config, ModelConfig


def wall_clock() -> str:
    """The header clock's text (local time)."""
    return time.strftime("%H:%M:%S")


@dataclass(frozen=True)
class ChatModel:
    """A model the chat talks to: its name in the config, the spec it calls, its adapter."""

    label: str
    spec: ModelSpec
    adapter: AdapterSettings

    @classmethod
    def from_config(cls, model: ModelConfig | SimpleNamespace, index: int) -> ChatModel:
        """The ChatModel for the config's models[index] (its model or its fields' values)."""
        spec = ModelSpec(
            model.model_name,
            version=model.version,
            version_label=model.version_label,
            signature_name=model.signature_name,
        )
        adapter = AdapterSettings.from_config(model.adapter, f"models[{index}].adapter")
        return cls(label=model.name, spec=spec, adapter=adapter)

    @classmethod
    def text_chat(cls, name: str, signature_name: str) -> ChatModel:
        """A model the config does not name, chatted with by the text adapter's defaults."""
        spec = ModelSpec(name, signature_name=signature_name)
        return cls(label=name, spec=spec, adapter=AdapterSettings(config_path="models[].adapter"))


@dataclass(frozen=True)
class UiOptions:
    """The config's ui section as plain values: what the first frame needs of the config."""

    refresh_hz: float = 4.0
    latency_warn_ms: float = 100.0
    latency_crit_ms: float = 500.0
    key_bindings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, ui: Any) -> UiOptions:
        """From the ui section's model, or its JSON dump read as attributes."""
        return cls(
            refresh_hz=float(ui.refresh_hz),
            latency_warn_ms=float(ui.latency_warn_ms),
            latency_crit_ms=float(ui.latency_crit_ms),
            key_bindings=dict(ui.key_bindings),
        )


class DeferredConfig:
    """A cached configuration whose models are built on first use, after the first frame.

    The console starts from a cached entry with the plain values it needs to draw (ConsoleOptions'
    own fields); the models (and pydantic, ~80 ms of imports) load when resolve() is called, in
    a thread once the first frame is out, or at the first attribute read, whichever comes first.
    """

    def __init__(self, dump: Mapping[str, Any]) -> None:
        self._dump = dump
        self._config: Config | None = None
        self._lock = threading.Lock()

    def resolve(self) -> Config:
        """The configuration's models, built from the entry once (validated when stored)."""
        with self._lock:
            if self._config is None:
                from core.config.cache import construct
                from core.config.schema import Config

                self._config = construct(Config, self._dump)
            return self._config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)


@dataclass(frozen=True)
class ConsoleOptions:
    """The console's settings: config, where to connect, what to chat with, where to store.

    config may be a DeferredConfig until resolve_config() (it reads like the Config it stands
    for); everything the first frame needs is in the other fields.
    """

    config: Config
    # The first model is the one the chat starts with.
    models: tuple[ChatModel, ...]
    ui: UiOptions = field(default_factory=UiOptions)
    targets: tuple[str, ...] = ()
    embedded: bool = True
    data_dir: Path = field(default_factory=user_data_dir)
    rest_url: str | None = None
    # Snapshot tests run the app without a server and with a frozen clock.
    connect: bool = True
    clock: Callable[[], str] = wall_clock
    debug: bool = False
    # The servers' figures: sampled every fleet_interval_s, rates over the last fleet_window_s.
    fleet_interval_s: float = 1.0
    fleet_window_s: float = 5.0

    @property
    def transcript_path(self) -> Path:
        """The SQLite transcript file."""
        return self.data_dir / "transcript.sqlite3"

    @property
    def exports_dir(self) -> Path:
        """Where /export writes unless given a directory."""
        return self.data_dir / "exports"

    @property
    def target_label(self) -> str:
        """Where the console talks to, for the header: 'embedded' or the targets."""
        return "embedded" if self.embedded else ", ".join(self.targets)

    def model_named(self, name: str) -> ChatModel:
        """The configured model with this config name or model_name, else a text-chat default."""
        return choose_model(self.models, name)

    def resolve_config(self) -> ConsoleOptions:
        """These options with the config's models built (they are, unless from the cache)."""
        if isinstance(self.config, DeferredConfig):
            return dataclasses.replace(self, config=self.config.resolve())
        return self


def config_models(config: Config) -> tuple[ChatModel, ...]:
    """The config's models, in config order."""
    return tuple(ChatModel.from_config(model, index) for index, model in enumerate(config.models))


def choose_model(models: Sequence[ChatModel], name: str) -> ChatModel:
    """The model with this config name or model name, else a new text-chat model."""
    for model in models:
        if name in (model.label, model.spec.name):
            return model
    return ChatModel.text_chat(name, models[0].spec.signature_name)


def build_options(
    config: Config,
    *,
    targets: Sequence[str] = (),
    model_name: str | None = None,
    signature_name: str | None = None,
    data_dir: Path | None = None,
    debug: bool = False,
) -> ConsoleOptions:
    """Options from a loaded config and command-line choices; ValueError names a bad choice.

    Targets are validated by load_config (pass them as its overrides); here they only decide
    between the embedded server and a remote one.
    """
    # Resolving the bearer token now makes a missing env var fail before anything is drawn.
    config.bearer_token()
    return _options(
        config,
        config_embedded=config.uses_embedded_server(),
        config_targets=config.resolved_targets(),
        rest_port=config.model_serving.tensorflow_serving.rest_port,
        models=config_models(config),
        ui=UiOptions.from_values(config.ui),
        targets=targets,
        model_name=model_name,
        signature_name=signature_name,
        data_dir=data_dir,
        debug=debug,
    )


def options_from_cache(
    entry: Entry,
    *,
    targets: Sequence[str] = (),
    model_name: str | None = None,
    signature_name: str | None = None,
    data_dir: Path | None = None,
    debug: bool = False,
) -> ConsoleOptions:
    """build_options for a cached config (core.config.cache.lookup), without its models.

    A cached config was validated from the same inputs and names no token variable, so the
    checks build_options makes of the models have passed; what it computes with their methods
    is in the entry's facts (core.config.schema.cached_facts).
    """
    dump = entry.dump
    models = tuple(
        ChatModel.from_config(
            SimpleNamespace(**{**model, "adapter": SimpleNamespace(**model["adapter"])}), index
        )
        for index, model in enumerate(dump["models"])
    )
    return _options(
        cast("Config", DeferredConfig(dump)),
        config_embedded=bool(entry.facts["uses_embedded_server"]),
        config_targets=list(entry.facts["resolved_targets"]),
        rest_port=int(dump["model_serving"]["tensorflow_serving"]["rest_port"]),
        models=models,
        ui=UiOptions.from_values(SimpleNamespace(**dump["ui"])),
        targets=targets,
        model_name=model_name,
        signature_name=signature_name,
        data_dir=data_dir,
        debug=debug,
    )


def _options(
    config: Config,
    *,
    config_embedded: bool,
    config_targets: Sequence[str],
    rest_port: int,
    models: tuple[ChatModel, ...],
    ui: UiOptions,
    targets: Sequence[str],
    model_name: str | None,
    signature_name: str | None,
    data_dir: Path | None,
    debug: bool,
) -> ConsoleOptions:
    embedded = not targets and config_embedded
    chosen_targets = tuple(targets) or tuple(config_targets)
    if not embedded and not chosen_targets:
        raise ValueError(
            "model_serving.tensorflow_serving: expected a host or targets to connect to "
            "(or host: embedded), got none"
        )
    if model_name is not None or signature_name is not None:
        chosen = choose_model(models, model_name) if model_name else models[0]
        if signature_name is not None:
            spec = dataclasses.replace(chosen.spec, signature_name=signature_name)
            chosen = dataclasses.replace(chosen, spec=spec)
        models = (chosen, *(model for model in models if model.label != chosen.label))
    return ConsoleOptions(
        config=config,
        models=models,
        ui=ui,
        targets=() if embedded else chosen_targets,
        embedded=embedded,
        data_dir=data_dir or user_data_dir(),
        rest_url=None if embedded else rest_url_for(chosen_targets[0], rest_port),
        debug=debug,
    )
