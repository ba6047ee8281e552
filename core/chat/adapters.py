"""Chat adapters: turn a typed prompt into a model's input tensors and its outputs into a reply.

Three kinds, chosen by the config's ``models[].adapter.kind``: ``text`` (string in, string out, as
the demo model), ``classify`` (string in, top-k labels with scores out) and ``tokens`` (BERT-style
integer inputs encoded with a local tokenizer.json; outputs decoded back to text or read as
labels). Model output is untrusted: every string that leaves an adapter went through
:func:`sanitize_text`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.chat.adapter_settings import AdapterSettings

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from core.client.serving import SignatureInfo, TensorInfo

ADAPTER_KINDS = ("text", "classify", "tokens")

# ANSI escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL/ST), DCS/SOS/PM/APC strings,
# and two-character escapes. Their 8-bit C1 forms are removed with the other C1 controls.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 and C1 controls except tab and newline, DEL, and the Unicode bidi controls (embeddings,
# overrides, isolates and the invisible marks) that can make displayed text read differently
# from what it is ("trojan source").
_CONTROL_CHARS = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)

# Names that say which role a tensor plays, for guessing keys from a signature.
_TEXT_OUTPUT_NAMES = ("reply", "output", "outputs", "text", "answer", "response", "generated_text")
_SCORE_OUTPUT_NAMES = ("scores", "probabilities", "probs", "predictions", "logits")
_CLASS_OUTPUT_NAMES = ("classes", "labels", "class_names")
_TOKEN_ID_INPUTS = ("input_ids", "input_word_ids", "token_ids", "ids", "inputs")
_TOKEN_MASK_INPUTS = ("attention_mask", "input_mask", "mask")
_TOKEN_TYPE_INPUTS = ("token_type_ids", "input_type_ids", "segment_ids", "type_ids")
_INT_DTYPES: dict[str, type[np.integer[Any]]] = {"DT_INT32": np.int32, "DT_INT64": np.int64}
_FLOAT_DTYPES = ("DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16")


def sanitize_text(text: str) -> str:
    """Return text safe to show in a terminal: escape sequences and control characters removed."""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = _ESCAPE_SEQUENCE.sub("", text)
    return _CONTROL_CHARS.sub("", text)


def decode_untrusted(value: object) -> str:
    """Return a model's string element (bytes or str) as sanitized text; bad UTF-8 is replaced."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = str(value)
    return sanitize_text(text)


def escape_markdown(text: str) -> str:
    """Return text with Markdown's inline syntax characters escaped, to show it literally."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


class AdapterMismatch(ValueError):
    """The model's signature does not fit the configured chat adapter."""


@dataclass(frozen=True)
class ChatReply:
    """One reply as the console shows it: Markdown text (sanitized) plus optional labels."""

    text: str
    labels: tuple[tuple[str, float], ...] = ()
    details: tuple[tuple[str, str], ...] = ()


class ChatAdapter(Protocol):
    """Encodes a prompt into Predict inputs and decodes one row of Predict outputs."""

    kind: str
    input_keys: tuple[str, ...]
    output_keys: tuple[str, ...]

    def encode(self, prompt: str) -> dict[str, np.ndarray]:
        """Input tensors for one prompt (one row along dim 0)."""
        ...

    def decode(self, outputs: Mapping[str, np.ndarray]) -> ChatReply:
        """The reply in the first row of the outputs."""
        ...


def describe_tensor(info: TensorInfo) -> str:
    """One tensor as ``alias (DT_STRING [-1])``."""
    if info.shape is None:
        shape = "unknown rank"
    else:
        shape = "[" + ", ".join(str(dim) for dim in info.shape) + "]"
    return f"{info.alias} ({info.dtype} {shape})"


def describe_signature(signature: SignatureInfo) -> str:
    """The signature's inputs and outputs in one line, for error messages and the model panel."""
    inputs = ", ".join(describe_tensor(info) for info in signature.inputs.values()) or "none"
    outputs = ", ".join(describe_tensor(info) for info in signature.outputs.values()) or "none"
    return f"inputs: {inputs}; outputs: {outputs}"


def _mismatch(
    settings: AdapterSettings, signature: SignatureInfo, problem: str, keys: Sequence[str]
) -> AdapterMismatch:
    settable = " / ".join(f"{settings.config_path}.{key}" for key in keys)
    return AdapterMismatch(
        f"the '{settings.kind}' chat adapter does not fit signature '{signature.key}' "
        f"({describe_signature(signature)}): {problem}; set {settable} in the config"
    )


def _first_row(value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    return np.asarray(array[0]) if array.ndim >= 1 and array.shape[0] >= 1 else array


def _pick(
    candidates: Mapping[str, TensorInfo], preferred_names: Sequence[str]
) -> TensorInfo | None:
    """The only candidate, or the one whose alias is first among the preferred names."""
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    for name in preferred_names:
        if name in candidates:
            return candidates[name]
    return None


def _configured_tensor(
    settings: AdapterSettings,
    signature: SignatureInfo,
    tensors: Mapping[str, TensorInfo],
    key: str | None,
    setting_name: str,
) -> TensorInfo | None:
    if key is None:
        return None
    if key not in tensors:
        side = "inputs" if setting_name == "input_key" else "outputs"
        raise _mismatch(
            settings,
            signature,
            f"{setting_name} '{key}' is not among the signature's {side} "
            f"({', '.join(tensors) or 'none'})",
            [setting_name],
        )
    return tensors[key]


def _string_input(settings: AdapterSettings, signature: SignatureInfo) -> TensorInfo:
    """The one DT_STRING input a prompt goes into."""
    chosen = _configured_tensor(
        settings, signature, signature.inputs, settings.input_key, "input_key"
    )
    if chosen is None:
        strings = {k: v for k, v in signature.inputs.items() if v.dtype == "DT_STRING"}
        chosen = _pick(strings, ("text", "inputs", "input", "prompt", "sentence"))
    if chosen is None or chosen.dtype != "DT_STRING":
        raise _mismatch(
            settings, signature, "expected one DT_STRING input for the prompt", ["input_key"]
        )
    if len(signature.inputs) != 1:
        raise _mismatch(
            settings,
            signature,
            f"it needs exactly one input, the prompt, but the signature has "
            f"{len(signature.inputs)}; use the 'tokens' adapter for several integer inputs",
            ["kind", "input_key"],
        )
    return chosen


def _string_batch(prompt: str, info: TensorInfo) -> np.ndarray:
    """A one-row string tensor shaped for the input: [1] or [1, 1]."""
    row = np.array([prompt.encode("utf-8")], dtype=object)
    if info.shape is not None and len(info.shape) == 2 and info.shape[1] in (1, -1):
        return row.reshape(1, 1)
    return row


def _detail(value: np.ndarray) -> str | None:
    """A one-value numeric output as short text (e.g. a confidence), else None."""
    row = _first_row(value)
    if row.size != 1 or row.dtype.kind not in "fiub":
        return None
    number = row.reshape(()).item()
    return f"{number:.3f}" if isinstance(number, float) else str(number)


def _top_labels(
    scores: np.ndarray, labels: Sequence[str] | None, top_k: int, apply_softmax: bool
) -> tuple[tuple[str, float], ...]:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if apply_softmax and values.size:
        exp = np.exp(values - values.max())
        values = exp / exp.sum()
    order = np.argsort(-values, kind="stable")[: max(top_k, 1)]
    result = []
    for index in order:
        name = labels[index] if labels is not None and index < len(labels) else str(index)
        result.append((sanitize_text(name), float(values[index])))
    return tuple(result)


def _labels_markdown(labels: Sequence[tuple[str, float]]) -> str:
    return "\n".join(f"- {escape_markdown(name)} · {score:.3f}" for name, score in labels)


def read_labels_file(path: Path) -> list[str]:
    """Labels one per line (blank lines kept as empty labels so indexes stay aligned)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(
            f"labels_file {path}: cannot read it ({error.strerror}); expected a text file "
            "with one label per line"
        ) from error
    return [line.strip() for line in text.splitlines()]


class TextAdapter:
    """String in, string out (the demo model: ``text`` -> ``reply``, ``confidence``)."""

    kind = "text"

    def __init__(self, settings: AdapterSettings, signature: SignatureInfo) -> None:
        self._input = _string_input(settings, signature)
        output = _configured_tensor(
            settings, signature, signature.outputs, settings.output_key, "output_key"
        )
        if output is None:
            strings = {k: v for k, v in signature.outputs.items() if v.dtype == "DT_STRING"}
            output = _pick(strings, _TEXT_OUTPUT_NAMES)
        if output is None or output.dtype != "DT_STRING":
            raise _mismatch(
                settings, signature, "expected one DT_STRING output for the reply", ["output_key"]
            )
        self._output = output
        self.input_keys: tuple[str, ...] = (self._input.alias,)
        self.output_keys: tuple[str, ...] = tuple(signature.outputs)

    def encode(self, prompt: str) -> dict[str, np.ndarray]:
        """Input tensors for one prompt (one row along dim 0)."""
        return {self._input.alias: _string_batch(prompt, self._input)}

    def decode(self, outputs: Mapping[str, np.ndarray]) -> ChatReply:
        """The reply in the first row of the outputs."""
        if self._output.alias not in outputs:
            raise ValueError(
                f"the response has no output '{self._output.alias}' (got {', '.join(outputs)})"
            )
        reply = _first_row(outputs[self._output.alias])
        text = decode_untrusted(reply.reshape(-1)[0] if reply.size else b"")
        details = []
        for alias, value in outputs.items():
            if alias != self._output.alias and (shown := _detail(value)) is not None:
                details.append((sanitize_text(alias), shown))
        return ChatReply(text=text, details=tuple(details))


class ClassifyAdapter:
    """String in, top-k labels with scores out (labels from a file or a class-names output)."""

    kind = "classify"

    def __init__(self, settings: AdapterSettings, signature: SignatureInfo) -> None:
        self._input = _string_input(settings, signature)
        scores = _configured_tensor(
            settings, signature, signature.outputs, settings.output_key, "output_key"
        )
        if scores is None:
            floats = {k: v for k, v in signature.outputs.items() if v.dtype in _FLOAT_DTYPES}
            scores = _pick(floats, _SCORE_OUTPUT_NAMES)
        if scores is None or scores.dtype not in _FLOAT_DTYPES:
            raise _mismatch(
                settings, signature, "expected one float output with the scores", ["output_key"]
            )
        self._scores = scores
        strings = {k: v for k, v in signature.outputs.items() if v.dtype == "DT_STRING"}
        self._classes = _pick(strings, _CLASS_OUTPUT_NAMES) if strings else None
        self._labels = read_labels_file(settings.labels_file) if settings.labels_file else None
        self._top_k = settings.top_k
        self.input_keys: tuple[str, ...] = (self._input.alias,)
        self.output_keys: tuple[str, ...] = tuple(signature.outputs)

    def encode(self, prompt: str) -> dict[str, np.ndarray]:
        """Input tensors for one prompt (one row along dim 0)."""
        return {self._input.alias: _string_batch(prompt, self._input)}

    def decode(self, outputs: Mapping[str, np.ndarray]) -> ChatReply:
        """The top-k labels in the first row of the outputs."""
        if self._scores.alias not in outputs:
            raise ValueError(
                f"the response has no output '{self._scores.alias}' (got {', '.join(outputs)})"
            )
        scores = _first_row(outputs[self._scores.alias])
        labels = self._labels
        if labels is None and self._classes is not None and self._classes.alias in outputs:
            row = _first_row(outputs[self._classes.alias]).reshape(-1)
            labels = [decode_untrusted(value) for value in row]
        top = _top_labels(scores, labels, self._top_k, "logit" in self._scores.alias)
        return ChatReply(text=_labels_markdown(top), labels=top)


class TokensAdapter:
    """BERT-style integer inputs from a local tokenizer.json; outputs decoded or read as labels."""

    kind = "tokens"

    def __init__(self, settings: AdapterSettings, signature: SignatureInfo) -> None:
        if settings.tokenizer_file is None:
            raise _mismatch(
                settings, signature, "the tokens adapter needs a tokenizer.json", ["tokenizer_file"]
            )
        self._tokenizer = _load_tokenizer(settings.tokenizer_file)
        self._roles: dict[str, str] = {}
        self._dtypes: dict[str, type[np.integer[Any]]] = {}
        for alias, info in signature.inputs.items():
            role = _token_role(alias, settings.input_key)
            if role is None or info.dtype not in _INT_DTYPES:
                raise _mismatch(
                    settings,
                    signature,
                    f"input '{alias}' is not a token ids / attention mask / token type input "
                    "of DT_INT32 or DT_INT64",
                    ["kind", "input_key"],
                )
            self._roles[alias] = role
            self._dtypes[alias] = _INT_DTYPES[info.dtype]
        if "ids" not in self._roles.values():
            raise _mismatch(settings, signature, "no token ids input", ["input_key"])
        self._length = _fixed_length(signature.inputs.values()) or settings.max_length
        # Truncating in the tokenizer keeps the closing special token ([SEP]) that slicing drops.
        self._tokenizer.enable_truncation(max_length=self._length)
        output = _configured_tensor(
            settings, signature, signature.outputs, settings.output_key, "output_key"
        )
        if output is None:
            output = _pick(
                signature.outputs, (*_SCORE_OUTPUT_NAMES, "output_ids", "token_ids", "outputs")
            )
        if output is None:
            raise _mismatch(settings, signature, "cannot tell which output to show", ["output_key"])
        self._output = output
        self._labels = read_labels_file(settings.labels_file) if settings.labels_file else None
        self._top_k = settings.top_k
        self.input_keys: tuple[str, ...] = tuple(self._roles)
        self.output_keys: tuple[str, ...] = tuple(signature.outputs)

    def encode(self, prompt: str) -> dict[str, np.ndarray]:
        """Token ids, attention mask and token types for one prompt, padded to a fixed length."""
        encoding = self._tokenizer.encode(prompt)
        by_role = {
            "ids": encoding.ids,
            "mask": encoding.attention_mask,
            "types": encoding.type_ids,
        }
        inputs = {}
        for alias, role in self._roles.items():
            values = list(by_role[role])[: self._length]
            values += [0] * (self._length - len(values))
            inputs[alias] = np.array([values], dtype=self._dtypes[alias])
        return inputs

    def decode(self, outputs: Mapping[str, np.ndarray]) -> ChatReply:
        """Decoded token ids, or top-k labels when the output holds scores."""
        if self._output.alias not in outputs:
            raise ValueError(
                f"the response has no output '{self._output.alias}' (got {', '.join(outputs)})"
            )
        row = _first_row(outputs[self._output.alias])
        if row.dtype.kind in "iu":
            text = self._tokenizer.decode(row.reshape(-1).tolist(), skip_special_tokens=True)
            return ChatReply(text=sanitize_text(text))
        if row.dtype.kind == "f" and row.ndim == 2:
            # Per-position scores over the vocabulary: the most likely token at each position.
            ids = np.argmax(row, axis=-1).tolist()
            return ChatReply(text=sanitize_text(self._tokenizer.decode(ids)))
        top = _top_labels(row, self._labels, self._top_k, "logit" in self._output.alias)
        return ChatReply(text=_labels_markdown(top), labels=top)


def _load_tokenizer(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer  # imported here: only the tokens adapter needs it

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises plain Exception for unreadable files
        raise ValueError(
            f"tokenizer_file {path}: cannot load it ({error}); expected a tokenizer.json "
            "saved by the Hugging Face tokenizers library"
        ) from error
    # Padding is done per input by encode(); the tokenizer's own padding would fight it.
    tokenizer.no_padding()
    return tokenizer


def _token_role(alias: str, ids_key: str | None) -> str | None:
    if alias == ids_key or alias in _TOKEN_ID_INPUTS:
        return "ids"
    if alias in _TOKEN_MASK_INPUTS:
        return "mask"
    if alias in _TOKEN_TYPE_INPUTS:
        return "types"
    return None


def _fixed_length(inputs: Iterable[TensorInfo]) -> int | None:
    """The sequence length the signature fixes (shape [-1, L]), if any."""
    for info in inputs:
        if info.shape is not None and len(info.shape) == 2 and info.shape[1] > 0:
            return int(info.shape[1])
    return None


def make_adapter(settings: AdapterSettings, signature: SignatureInfo) -> ChatAdapter:
    """The adapter for the configured kind, fitted to the signature (AdapterMismatch if not)."""
    if settings.kind == "text":
        return TextAdapter(settings, signature)
    if settings.kind == "classify":
        return ClassifyAdapter(settings, signature)
    if settings.kind == "tokens":
        return TokensAdapter(settings, signature)
    raise ValueError(
        f"{settings.config_path}.kind: expected one of {', '.join(ADAPTER_KINDS)}, "
        f"got {settings.kind!r}"
    )
