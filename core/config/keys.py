"""Checks of ui.key_bindings against the console's actions, which the console passes in (core
never imports tui): an unknown action, and a key bound to two actions, are errors with file:line."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from core.config.loader import KeyPath, Layers

SECTION: KeyPath = ("ui", "key_bindings")


def _keys(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


def key_binding_problems(
    bindings: Mapping[str, str], defaults: Mapping[str, str], layers: Layers
) -> list[str]:
    """`WHERE: ui.key_bindings.ACTION: expected ..., got ...` for each bad entry, in file order."""
    found: list[tuple[tuple[int, int, str], str]] = []

    def report(action: str, text: str) -> None:
        origin = layers.origin((*SECTION, action))
        found.append(
            (
                (origin.rank, origin.line, action),
                f"{origin.label}: ui.key_bindings.{action}: {text}",
            )
        )

    known = list(defaults)
    for action in bindings:
        if action not in defaults:
            close = difflib.get_close_matches(action, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            report(action, f"expected one of {', '.join(known)}{hint}, got {action!r}")
    # Every key as it ends up: the config's keys for the actions it names, defaults for the rest.
    owners: dict[str, list[str]] = {}
    for action in known:
        keys = _keys(bindings[action]) if action in bindings else _keys(defaults[action])
        for key in dict.fromkeys(keys):
            owners.setdefault(key, []).append(action)
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if action in bindings and repeated:
            report(action, f"expected each key once, got {', '.join(map(repr, repeated))} twice")
    for key, actions in owners.items():
        remapped = [action for action in actions if action in bindings]
        if len(actions) < 2 or not remapped:
            continue
        # Reported at the config entry written last: the one that took a key already in use.
        culprit = max(remapped, key=lambda action: layers.origin((*SECTION, action)).line)
        others = []
        for other in actions:
            if other == culprit:
                continue
            if other in bindings:
                others.append(f"{other} ({layers.origin((*SECTION, other)).label})")
            else:
                others.append(f"{other} (its default key)")
        report(
            culprit,
            f"expected a key no other action uses, got {key!r}, also bound to {', '.join(others)}",
        )
    return [message for _, message in sorted(found)]
