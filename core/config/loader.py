"""Layered loading of a pydantic config model (defaults, YAML file, env vars, flags) whose
errors name the file and line, env var or flag each bad value came from."""

from __future__ import annotations

import copy
import difflib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from core.config.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["ConfigError"]  # re-exported: it lived here first

KeyPath = tuple[str | int, ...]

# Keys that look like a secret; the config file must never hold one, only the name of an env var.
_SECRET_KEY = re.compile(r"token|secret|password|api_?key", re.IGNORECASE)
# A config file is a few KiB; these bound what a hostile one (huge, or an alias bomb) can cost.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 100_000


class FieldProblem(ValueError):
    """A validator's complaint about the key `key` below the value being validated."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key = key


class Expect:
    """Annotated metadata: how a field's expected value reads in errors and the README."""

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(frozen=True)
class Origin:
    """Where a value came from: `config.yaml:8`, an env var's name, or `command line`."""

    label: str
    rank: int  # 0 defaults, 1 file, 2 env, 3 command line: a higher rank wins
    line: int = 0


def dotted(path: KeyPath) -> str:
    """A key path as people write it: `models[0].adapter.kind`."""
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}" if text else segment
    return text


def shown(value: object) -> str:
    """A found value as an error shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(str(value)) if isinstance(value, str | Path) else repr(value)
    # Long enough for any real file path (a cut path is useless); a pasted blob is cut.
    return text if len(text) <= 300 else text[:297] + "..."


def is_model(annotation: object) -> bool:
    """Whether an annotation is a pydantic model class (a config section)."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def field_type(field: FieldInfo) -> tuple[Any, list[Any], bool]:
    """A field's type without Optional and Annotated, its constraints, whether null is allowed."""
    annotation, metadata, optional = field.annotation, list(field.metadata), False
    if get_origin(annotation) in (Union, types.UnionType):
        members = get_args(annotation)
        annotation = next(member for member in members if member is not type(None))
        optional = type(None) in members
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += extra
    return annotation, metadata, optional


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(annotation: Any, metadata: list[Any]) -> str:
    for item in metadata:
        if isinstance(item, Expect):
            return item.text
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        noun = "an integer" if annotation is int else "a number"
        bounds = {
            name: getattr(item, name)
            for item in metadata
            for name in ("ge", "gt", "le", "lt")
            if getattr(item, name, None) is not None
        }
        if "ge" in bounds and "le" in bounds:
            return f"{noun} {_number(bounds['ge'])}-{_number(bounds['le'])}"
        symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        limits = " and ".join(f"{symbols[name]} {_number(value)}" for name, value in bounds.items())
        return f"{noun} {limits}".rstrip()
    if annotation is str:
        short = any(getattr(item, "min_length", 0) for item in metadata)
        return "a non-empty string" if short else "a string"
    if annotation is Path:
        is_file = any(getattr(item, "path_type", None) == "file" for item in metadata)
        return "a path to an existing file" if is_file else "a path"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    if is_model(annotation):
        return "a section of keys"
    if get_origin(annotation) is list:
        return "a list of " + _describe(get_args(annotation)[0], []).split(" ", 1)[1] + "s"
    if get_origin(annotation) is dict:
        return (
            "a mapping of names to " + _describe(get_args(annotation)[1], []).split(" ", 1)[1] + "s"
        )
    return f"a {getattr(annotation, '__name__', annotation)}"


def expected(field: FieldInfo) -> str:
    """What a field accepts, as errors and the README say it: `an integer 1-65535`."""
    annotation, metadata, optional = field_type(field)
    text = _describe(annotation, metadata)
    return f"{text} or null" if optional else text


def unknown_key_text(key: object, allowed: Sequence[str]) -> str:
    """The problem text for a key that is not in the schema."""
    if isinstance(key, str) and _SECRET_KEY.search(key) and key not in allowed:
        return (
            f"expected no secrets in the config, got a {key!r} key: put the token in an "
            "environment variable and set bearer_token_env to that variable's name"
        )
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "one of " + ", ".join(allowed)
    return f"expected a known key ({hint}), got {str(key)!r}"


def walk(root: type[BaseModel], path: KeyPath) -> tuple[FieldInfo | None, str | None]:
    """The field a key path leads to in the schema, or the problem with the path."""
    current: Any = root
    field: FieldInfo | None = None
    for depth, segment in enumerate(path):
        if is_model(current):
            if segment not in current.model_fields:
                return None, unknown_key_text(segment, list(current.model_fields))
            field = current.model_fields[segment]
            current = field_type(field)[0]
        elif get_origin(current) in (list, dict):
            if get_origin(current) is list and not isinstance(segment, int):
                return None, f"expected a list index such as 0, got {segment!r}"
            current = get_args(current)[-1]
            field = FieldInfo.from_annotation(current)
        else:
            return None, f"expected no keys below {dotted(path[:depth])}, got {segment!r}"
    return field, None


def problem_text(root: type[BaseModel], error: Mapping[str, Any]) -> tuple[KeyPath, str]:
    """A pydantic error as the key path it concerns and `expected ..., got ...`."""
    path: KeyPath = tuple(error["loc"])
    kind, found = error["type"], error.get("input")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):
        return path + cause.key, str(cause)
    if kind == "extra_forbidden":
        parent, _ = walk(root, path[:-1])
        parent_type = field_type(parent)[0] if parent else root
        allowed = list(parent_type.model_fields) if is_model(parent_type) else []
        return path, unknown_key_text(path[-1], allowed)
    field, _ = walk(root, path)
    wanted = expected(field) if field is not None else "something else"
    if kind == "missing":
        return path, f"expected {wanted}, got nothing (the key is required)"
    if kind in ("too_short", "too_long") and isinstance(found, list | dict | str):
        limit = error.get("ctx", {}).get("min_length" if kind == "too_short" else "max_length")
        bound = "at least" if kind == "too_short" else "at most"
        size = f"{len(found)} item{'s' if len(found) != 1 else ''}" if found else "an empty one"
        return path, f"expected {wanted} with {bound} {limit}, got {size}"
    text = f"expected {wanted}, got {shown(found)}"
    if kind == "literal_error" and field is not None and isinstance(found, str):
        close = difflib.get_close_matches(found, get_args(field_type(field)[0]), n=1)
        text += f" (did you mean {close[0]!r}?)" if close else ""
    return path, text


def read_yaml(path: Path, label: str) -> tuple[Any, dict[KeyPath, int], list[KeyPath]]:
    """A YAML file's data, the line of every key path, and the key paths written twice."""
    import yaml  # only when a file is read: a cached config needs no YAML parser

    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                [f"{label}: expected a config file of at most {MAX_CONFIG_BYTES // 1024} KiB, "
                 "got a larger file"]
            )  # fmt: skip
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{label}: expected a readable UTF-8 YAML file, got {exc}"]) from None
    if "\x00" in text:
        raise ConfigError([f"{label}: expected a YAML text file, got binary data (NUL bytes)"])
    lines: dict[KeyPath, int] = {}
    repeated: list[KeyPath] = []
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is not None:
            # Walked before construction: aliases that expand past the budget never get built.
            _map_lines(node, (), lines, repeated, [MAX_CONFIG_NODES])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}{context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{label}: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(
            [f"{label}: expected a config file, got YAML nested too deeply"]
        ) from None
    except _TooManyNodes:
        raise ConfigError(
            [f"{label}: expected a config file, got YAML whose aliases expand to more than "
             f"{MAX_CONFIG_NODES:,} values"]
        ) from None  # fmt: skip
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines, repeated


class _TooManyNodes(Exception):
    """The YAML document expands (through aliases) to more values than a config can hold."""


def _map_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    repeated: list[KeyPath],
    budget: list[int],
) -> None:
    import yaml

    # Every visit counts, so an alias bomb (anchors repeated level on level) stops early.
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooManyNodes
    # A key's own line wins over its value's, so `grpc_port:` errors point at the key.
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            if key_path in lines:
                repeated.append(key_path)
            lines[key_path] = key_node.start_mark.line + 1
            _map_lines(value_node, key_path, lines, repeated, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, (*path, index), lines, repeated, budget)


def _resolve_paths(model: type[BaseModel], data: Any, base_dir: Path) -> None:
    # Relative paths in a file mean relative to that file, wherever the console is started.
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        annotation = field_type(field)[0] if field is not None else None
        if annotation is Path and isinstance(value, str):
            data[key] = str(base_dir / Path(value).expanduser())
        elif annotation is not None and is_model(annotation):
            _resolve_paths(annotation, value, base_dir)
        elif get_origin(annotation) is list and is_model(get_args(annotation)[0]):
            for item in value if isinstance(value, list) else []:
                _resolve_paths(get_args(annotation)[0], item, base_dir)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    # Sections merge key by key; lists and values are replaced whole.
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


class Layers:
    """Raw config values merged layer by layer, remembering where each one came from."""

    def __init__(self, root: type[BaseModel], defaults: Mapping[str, Any]) -> None:
        self.root = root
        self.data: dict[str, Any] = copy.deepcopy(dict(defaults))
        self.origins: dict[KeyPath, Origin] = {(): Origin("built-in defaults", 0)}
        self.problems: list[tuple[Origin, KeyPath, str]] = []

    def origin(self, path: KeyPath) -> Origin:
        """Where the value at path (or its nearest set ancestor) came from."""
        while path not in self.origins:
            path = path[:-1]
        return self.origins[path]

    def add_file(self, path: Path, label: str) -> None:
        """Merge a YAML file over what is there."""
        data, lines, repeated = read_yaml(path, label)
        origins = {key: Origin(f"{label}:{line}", 1, line) for key, line in lines.items()}
        origins.setdefault((), Origin(f"{label}:1", 1, 1))
        self.origins.update(origins)
        for key_path in repeated:
            text = f"expected each key once, got {key_path[-1]!r} again (only the last counts)"
            self.problems.append((origins[key_path], key_path, text))
        if data is None:
            return
        if not isinstance(data, dict):
            wanted = ", ".join(self.root.model_fields)
            text = f"expected a mapping with the sections {wanted}, got {shown(data)}"
            self.problems.append((origins[()], (), text))
            return
        _resolve_paths(self.root, data, path.resolve().parent)
        _merge(self.data, data)

    def add_env(self, env: Mapping[str, str], prefix: str) -> None:
        """Set every PREFIX_SECTION__KEY variable (`__` between levels, list items by index)."""
        for name in sorted(env):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :].lower()
            path = tuple(int(part) if part.isdigit() else part for part in rest.split("__"))
            # Other PREFIX_* variables (no `__`, not a section) are not config keys.
            if "__" in rest or path[0] in self.root.model_fields:
                self.put(path, env[name], Origin(name, 2))

    def add_overrides(self, overrides: Mapping[str, object]) -> None:
        """Set dotted key paths (`models[0].version`, `models.0.version`) from the command line."""
        for key, value in overrides.items():
            parts = re.sub(r"\[(\d+)\]", r".\1", key).split(".")
            path = tuple(int(part) if part.isdigit() else part for part in parts)
            self.put(path, value, Origin("command line", 3))

    def put(self, path: KeyPath, value: object, origin: Origin) -> None:
        """Set one value, given as text or a Python value; a bad key path becomes a problem."""
        field, problem = walk(self.root, path)
        if field is None:
            self.problems.append((origin, path, problem or "expected a key"))
            return
        annotation, _, optional = field_type(field)
        if isinstance(value, str):
            if optional and value.strip().lower() in ("", "null", "none", "~"):
                value = None
            elif get_origin(annotation) is list:
                value = [item.strip() for item in value.split(",") if item.strip()]
            elif annotation is Path:
                value = str(Path.cwd() / Path(value).expanduser())
        if not self._place(path, value):
            text = "expected a list index at most the list's length"
            self.problems.append((origin, path, text))
            return
        self.origins = {key: o for key, o in self.origins.items() if key[: len(path)] != path}
        self.origins[path] = origin

    def _place(self, path: KeyPath, value: object) -> bool:
        # Missing sections and list items on the way are created; an index may append one item.
        node: Any = self.data
        for depth, segment in enumerate(path[:-1]):
            child = _get(node, segment)
            if not isinstance(child, dict | list):
                child = [] if isinstance(path[depth + 1], int) else {}
                if not _set(node, segment, child):
                    return False
            node = child
        return _set(node, path[-1], value)

    def validate(self) -> Any:
        """The validated root model; ConfigError lists every problem, in file order."""
        found: list[tuple[Origin, KeyPath, str]] = list(self.problems)
        instance = None
        try:
            instance = self.root.model_validate(self.data)
        except ValidationError as exc:
            for error in exc.errors():
                path, text = problem_text(self.root, error)
                found.append((self.origin(path), path, text))
        if found:
            ordered = sorted(found, key=lambda item: (item[0].rank, item[0].line, item[0].label))
            messages = dict.fromkeys(
                f"{o.label}: {dotted(path)}: {text}" if path else f"{o.label}: {text}"
                for o, path, text in ordered
            )
            raise ConfigError(list(messages))
        return instance


def _get(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _set(node: Any, key: str | int, value: Any) -> bool:
    if isinstance(node, dict):
        node[key] = value
    elif isinstance(node, list) and isinstance(key, int) and key <= len(node):
        node[key : key + 1] = [value]
    else:
        return False
    return True
