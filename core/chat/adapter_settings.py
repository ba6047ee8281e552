"""What the config says about a model's chat adapter, as plain data (no numpy).

The console builds these before the serving modules load; core.chat.adapters fits them to a
signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AdapterSettings:
    """What the config says about the chat adapter (``models[].adapter``)."""

    kind: str = "text"
    input_key: str | None = None
    output_key: str | None = None
    labels_file: Path | None = None
    tokenizer_file: Path | None = None
    top_k: int = 5
    max_length: int = 128
    config_path: str = "models[0].adapter"

    @classmethod
    def from_config(
        cls, adapter: object, config_path: str = "models[0].adapter"
    ) -> AdapterSettings:
        """Settings from the config's adapter model (any object with the adapter's fields)."""
        defaults = cls()

        def field(name: str) -> Any:
            value = getattr(adapter, name, None)
            return getattr(defaults, name) if value is None else value

        labels_file = getattr(adapter, "labels_file", None)
        tokenizer_file = getattr(adapter, "tokenizer_file", None)
        return cls(
            kind=str(field("kind")),
            input_key=getattr(adapter, "input_key", None),
            output_key=getattr(adapter, "output_key", None),
            labels_file=Path(labels_file) if labels_file else None,
            tokenizer_file=Path(tokenizer_file) if tokenizer_file else None,
            top_k=int(field("top_k")),
            max_length=int(field("max_length")),
            config_path=config_path,
        )
