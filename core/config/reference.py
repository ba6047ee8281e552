"""The README's configuration reference, generated from core.config.schema so it cannot drift.

`python -m core.config.reference README.md` rewrites the section between the markers;
`--check` only reports whether it is current.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from core.config.loader import expected, field_type, is_model
from core.config.schema import Config
from core.config.source import ENV_PREFIX

START_MARKER = "<!-- config-reference:start -->"
END_MARKER = "<!-- config-reference:end -->"

_INTRO = f"""\
## Configuration reference

<!-- Generated from core/config/schema.py by `python -m core.config.reference README.md`. -->

One YAML file, with single keys overridden by environment variables and command-line flags.
Highest precedence first:

1. command-line flags (`deepchat-tfs chat --target HOST:PORT --model NAME`, ...);
2. environment variables `{ENV_PREFIX}<KEY PATH>` (below);
3. the config file: the `--config FILE` path (it must exist), else `./config.yaml`, else
   `config.yaml` in the user config dir (platformdirs: `~/.config/deepchat-tfs/` on Linux,
   `~/Library/Application Support/deepchat-tfs/` on macOS);
4. the built-in defaults, which are exactly the shipped [config.yaml](config.yaml).

**Environment variables**: `{ENV_PREFIX}` and the key path in capitals, `__` between levels,
list items by index. Values are read as the key's type; lists are comma-separated; an empty
value or `null` clears an optional key. `{ENV_PREFIX}*` variables with no `__` that name no
section are not config keys and are left alone.

```sh
{ENV_PREFIX}MODEL_SERVING__TENSORFLOW_SERVING__HOST=tfs.internal
{ENV_PREFIX}MODEL_SERVING__TENSORFLOW_SERVING__TARGETS=tfs-a:8500,tfs-b:8500
{ENV_PREFIX}MODELS__0__VERSION_LABEL=canary
{ENV_PREFIX}UI__KEY_BINDINGS__QUIT=ctrl+x
```

Targets given by a flag or an environment variable replace a file's `host: embedded`. Relative
paths in the file are relative to the file; in variables and flags, to the working directory.
The bearer token never lives in the file: `bearer_token_env` names the variable that holds it.
Only a file in your own config dir may name it as it stands; any other file (`./config.yaml`,
`--config` from elsewhere) needs `deepchat-tfs allow FILE` once, which remembers the file's
SHA-256 (an edit revokes it). The token is sent only over TLS (a `tls` section); plaintext only
with the command-line flag `--allow-plaintext-token`, which no file can set.

**Errors** are all reported at once, before the console draws, one per line: where the value
came from (file and line, variable, or `command line`), the key path, what was expected and
what was found.

```text
config.yaml:8: model_serving.tensorflow_serving.grpc_port: expected an integer 1-65535, got '85OO'
config.yaml:9: ui.refresh: expected a known key (did you mean 'refresh_hz'?), got 'refresh'
```
"""


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, dict) and value:
        return "below"
    if isinstance(value, dict):
        return "`{}`"
    if isinstance(value, list):
        names = [getattr(item, "name", item) for item in value]
        return "`[" + ", ".join(str(name) for name in names) + "]`"
    if value is None or isinstance(value, bool):
        return "`" + str(value).lower().replace("none", "null") + "`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's attribute docstring (the string right below it in the class), by name."""
    body = ast.parse(textwrap.dedent(inspect.getsource(model))).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for node, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _rows(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    docs = field_docs(model)
    for name, field in model.model_fields.items():
        key = prefix + name
        meaning = " ".join(docs.get(name, "").split()).replace("|", "\\|")
        yield f"| `{key}` | {expected(field)} | {_default_text(field)} | {meaning} |"
        annotation = field_type(field)[0]
        if is_model(annotation):
            yield from _rows(annotation, key + ".")
        elif get_origin(annotation) is list and is_model(get_args(annotation)[0]):
            yield from _rows(get_args(annotation)[0], key + "[].")


def reference_markdown() -> str:
    """The configuration reference as Markdown: what README.md holds between the markers."""
    lines = [
        _INTRO,
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(Config),
    ]
    return "\n".join(lines) + "\n"


def replace_reference(readme_text: str) -> str:
    """readme_text with the section between the markers replaced by reference_markdown()."""
    start = readme_text.index(START_MARKER) + len(START_MARKER)
    end = readme_text.index(END_MARKER)
    return readme_text[:start] + "\n" + reference_markdown() + readme_text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or with --check, verify) the reference section of the given README."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    readme = Path(next((arg for arg in args if arg != "--check"), "README.md"))
    text = readme.read_text(encoding="utf-8")
    if START_MARKER not in text or END_MARKER not in text:
        print(f"{readme}: expected the markers {START_MARKER} and {END_MARKER}", file=sys.stderr)
        return 2
    updated = replace_reference(text)
    if check:
        if updated != text:
            print(
                f"{readme}: configuration reference is out of date; run "
                f"`python -m core.config.reference {readme}`",
                file=sys.stderr,
            )
            return 1
        return 0
    readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
