"""Which model, version (or version label) and signature a call addresses, as people read it.

Pure data: the console draws a ModelSpec before gRPC or numpy are loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class ModelSpec:
    """Which model, version (or version label) and signature a call addresses."""

    name: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = DEFAULT_SIGNATURE

    def __post_init__(self) -> None:
        if self.version is not None and self.version_label is not None:
            raise ValueError(
                f"ModelSpec {self.name!r}: version={self.version} and "
                f"version_label={self.version_label!r} both set; expected at most one"
            )

    def fill(self, spec: Any, *, with_signature: bool = True) -> None:
        """Write this spec into a model_pb2.ModelSpec message."""
        spec.name = self.name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if with_signature:
            spec.signature_name = self.signature_name

    def pinned(self, *, version: int | None = None, label: str | None = None) -> ModelSpec:
        """This spec pinned to a version or a label (neither: follow the latest version)."""
        return dataclasses.replace(self, version=version, version_label=label)

    def describe(self) -> str:
        """The spec as the console shows it: name, pinned version or label, other signature."""
        text = self.name
        if self.version is not None:
            text += f" v{self.version}"
        elif self.version_label is not None:
            text += f" @{self.version_label}"
        if self.signature_name != DEFAULT_SIGNATURE:
            text += f" [{self.signature_name}]"
        return text

    def pin_text(self) -> str:
        """What the spec is pinned to: 'v2', 'label stable' or 'latest'."""
        if self.version is not None:
            return f"v{self.version}"
        return f"label {self.version_label}" if self.version_label else "latest"
