"""ConfigError: what every config problem raises (no pydantic here: the console's fast start
reads a cached configuration without importing it)."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(Exception):
    """An unusable configuration: one `WHERE: key.path: expected ..., got ...` per line."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))
