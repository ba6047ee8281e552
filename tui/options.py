"""What the console runs with: the loaded config plus command-line choices (no Textual here).

Nothing here imports the serving modules (gRPC, numpy, protos) at import time: the console draws
its first frame from these options before it loads them (pydantic and the config models).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.config.schema import Config
from core.identity import data_dir

if TYPE_CHECKING:
    from core.chat.adapters import AdapterSettings
    from core.client.serving import ModelSpec


def default_data_dir() -> Path:
    """The user data dir: transcript, exports, the embedded server's log and demo model."""
    return data_dir()


def wall_clock() -> str:
    """The header clock's text (local time)."""
    return time.strftime("%H:%M:%S")


def describe_model(
    name: str, version: int | None, version_label: str | None, signature_name: str
) -> str:
    """A model as the console shows it: name, pinned version or label, non-default signature."""
    text = name
    if version is not None:
        text += f" v{version}"
    elif version_label is not None:
        text += f" @{version_label}"
    if signature_name != "serving_default":
        text += f" [{signature_name}]"
    return text


def pin_text(version: int | None, version_label: str | None) -> str:
    """What the chat is pinned to: 'v2', 'label stable' or 'latest'."""
    if version is not None:
        return f"v{version}"
    return f"label {version_label}" if version_label else "latest"


@dataclass(frozen=True)
class ModelChoice:
    """A model to chat with as plain config data, enough to draw it before connecting."""

    label: str
    name: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = "serving_default"
    adapter: object | None = None  # the config's AdapterConfig; None = text-chat defaults
    config_path: str = "models[].adapter"

    def describe(self) -> str:
        """The choice as the header shows it."""
        return describe_model(self.name, self.version, self.version_label, self.signature_name)


@dataclass(frozen=True)
class ChatModel:
    """A model the chat talks to: its name in the config, spec and adapter settings."""

    label: str
    spec: ModelSpec
    adapter: AdapterSettings

    @classmethod
    def from_choice(cls, choice: ModelChoice) -> ChatModel:
        """The ChatModel for a choice (loads the serving modules on first use)."""
        from core.chat.adapters import AdapterSettings
        from core.client.serving import ModelSpec

        if choice.adapter is None:
            adapter = AdapterSettings(config_path=choice.config_path)
        else:
            adapter = AdapterSettings.from_config(choice.adapter, choice.config_path)
        spec = ModelSpec(
            choice.name,
            version=choice.version,
            version_label=choice.version_label,
            signature_name=choice.signature_name,
        )
        return cls(label=choice.label, spec=spec, adapter=adapter)


@dataclass(frozen=True)
class ConsoleOptions:
    """The console's settings: config, where to connect, what to chat with, where to store."""

    config: Config
    choices: tuple[ModelChoice, ...]
    targets: tuple[str, ...] = ()
    embedded: bool = True
    data_dir: Path = field(default_factory=default_data_dir)
    rest_url: str | None = None
    # Snapshot tests run the app without a server and with a frozen clock.
    connect: bool = True
    clock: Callable[[], str] = wall_clock
    debug: bool = False

    @functools.cached_property
    def models(self) -> tuple[ChatModel, ...]:
        """The choices as ChatModels, the first one selected at start."""
        return tuple(ChatModel.from_choice(choice) for choice in self.choices)

    @property
    def transcript_path(self) -> Path:
        """The SQLite transcript file."""
        return self.data_dir / "transcript.sqlite3"

    @property
    def target_label(self) -> str:
        """Where the console talks to, for the header: 'embedded' or the targets."""
        return "embedded" if self.embedded else ", ".join(self.targets)

    def model_named(self, name: str) -> ChatModel:
        """The configured model with this config name or model_name, else a text-chat default."""
        return ChatModel.from_choice(choose_model(self.choices, name))


def config_choices(config: Config) -> tuple[ModelChoice, ...]:
    """The config's models as choices, in config order."""
    return tuple(
        ModelChoice(
            label=model.name,
            name=model.model_name,
            version=model.version,
            version_label=model.version_label,
            signature_name=model.signature_name,
            adapter=model.adapter,
            config_path=f"models[{index}].adapter",
        )
        for index, model in enumerate(config.models)
    )


def choose_model(choices: Sequence[ModelChoice], name: str) -> ModelChoice:
    """The choice with this config name or model name, else a new text-chat choice."""
    for choice in choices:
        if name in (choice.label, choice.name):
            return choice
    return ModelChoice(label=name, name=name, signature_name=choices[0].signature_name)


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
    serving = config.model_serving.tensorflow_serving
    embedded = not targets and config.uses_embedded_server()
    chosen_targets = tuple(targets) or tuple(config.resolved_targets())
    if not embedded and not chosen_targets:
        raise ValueError(
            "model_serving.tensorflow_serving: expected a host or targets to connect to "
            "(or host: embedded), got none"
        )
    choices = config_choices(config)
    if model_name is not None or signature_name is not None:
        chosen = choose_model(choices, model_name) if model_name else choices[0]
        if signature_name is not None:
            chosen = dataclasses.replace(chosen, signature_name=signature_name)
        choices = (chosen, *(choice for choice in choices if choice.label != chosen.label))
    return ConsoleOptions(
        config=config,
        choices=choices,
        targets=() if embedded else chosen_targets,
        embedded=embedded,
        data_dir=data_dir or default_data_dir(),
        rest_url=None if embedded else _rest_url(chosen_targets[0], serving.rest_port),
        debug=debug,
    )


def pinned(spec: ModelSpec, *, version: int | None = None, label: str | None = None) -> ModelSpec:
    """The spec pinned to a version or a label (neither: follow the latest version)."""
    return dataclasses.replace(spec, version=version, version_label=label)


def _rest_url(target: str, rest_port: int) -> str | None:
    """The REST base URL beside a gRPC target (same host, the configured REST port)."""
    if not rest_port or ":" not in target:
        return None
    host = target.rsplit(":", 1)[0]
    return f"http://{host}:{rest_port}"
