"""What a load run sends: prompts for a text model, or a TF Serving REST body for any model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from core.client.serving import ClientSettings, ModelSpec, ServingClient, ServingError
from core.wire import protos
from core.wire.metadata import SignatureInfo

# Questions a user of the console would ask the demo model; varied lengths so the model's
# per-item work varies a little, as real traffic does.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "how does server side batching work?",
    "what is a version label?",
    "how do I roll back to the previous model version?",
    "why is my p99 latency so much higher than p50?",
    "what does max_batch_size do?",
    "how do I serve two models from one server?",
    "what is the difference between the gRPC and the REST API?",
    "why does my request fail with Servable not found?",
    "how do I change batch_timeout_micros?",
    "what is coordinated omission?",
    "how can I see which version served my request?",
    "what does the model_config_file look like?",
    "how do I send binary data in the REST API?",
    "what are signatures in a SavedModel?",
    "how large may a gRPC message be?",
    "hello",
)

# The demo model's input when the server cannot describe the model (no metadata).
DEFAULT_TEXT_INPUT = "text"

InputRows = dict[str, np.ndarray]


def read_body(data: str) -> str:
    """--data's text: inline JSON, or the contents of the file named after '@'."""
    if not data.startswith("@"):
        return data
    path = Path(data[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"--data {data}: cannot read {path}: {error.strerror}") from None


def data_inputs(data: str, signature: SignatureInfo | None = None) -> InputRows:
    """The inputs of a TF Serving REST predict body (`instances` or `inputs`, inline or @file)."""
    from core.wire.rest_json import (
        decode_predict_request,  # only runs that are given --data need it
    )

    input_specs: dict[str, int] | None = None
    if signature is not None:
        input_specs = {
            alias: protos.types_pb2.DataType.Value(info.dtype)
            for alias, info in signature.inputs.items()
            if info.dtype in protos.types_pb2.DataType.keys()
        }
    try:
        request = decode_predict_request(read_body(data), input_specs)
    except ValueError as error:
        raise ValueError(f"--data: {error}") from None
    return dict(request.inputs)


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file, one per line; blank lines are skipped."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"--prompts {file}: cannot read it: {error.strerror}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts {file}: no prompts found; expected one prompt per line")
    return prompts


def text_input_alias(signature: SignatureInfo | None) -> str:
    """The signature's single DT_STRING input, which prompts are fed to."""
    if signature is None:
        return DEFAULT_TEXT_INPUT
    string_inputs = [alias for alias, info in signature.inputs.items() if info.dtype == "DT_STRING"]
    if len(signature.inputs) == 1 and len(string_inputs) == 1:
        return string_inputs[0]
    described = ", ".join(
        f"{alias} ({info.dtype}, {list(info.shape) if info.shape is not None else 'unknown rank'})"
        for alias, info in signature.inputs.items()
    )
    raise ValueError(
        f"signature {signature.key!r} takes {described}; prompts need a single DT_STRING input, "
        "so give --data with a TF Serving REST request body (inline JSON or @file)"
    )


def prompt_inputs(alias: str, prompts: Sequence[str]) -> list[InputRows]:
    """One single-row request per prompt, fed to the given string input."""
    return [{alias: np.array([prompt.encode("utf-8")], dtype=object)} for prompt in prompts]


def choose_inputs(
    signature: SignatureInfo | None,
    *,
    data: str | None = None,
    prompts: Sequence[str] | None = None,
) -> list[InputRows]:
    """The request bodies a run cycles through: --data if given, otherwise prompts."""
    if data is not None:
        return [data_inputs(data, signature)]
    return prompt_inputs(text_input_alias(signature), prompts or BUILTIN_PROMPTS)


def rows_of(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows along dim 0 of a request (1 for scalars)."""
    first = next(iter(inputs.values()), None)
    if first is None or first.ndim == 0:
        return 1
    return int(first.shape[0])


async def fetch_signature(settings: ClientSettings, model: ModelSpec) -> SignatureInfo | None:
    """The model's signature from GetModelMetadata; None when the server gives no metadata.

    ServingError (e.g. NOT_FOUND for a model the server does not have) propagates; ValueError
    when the model has no such signature, naming the ones it has.
    """
    async with ServingClient(settings) as client:
        try:
            metadata = await client.get_model_metadata(model)
        except ServingError as error:
            if error.code in ("UNIMPLEMENTED", "INVALID_ARGUMENT"):
                return None
            raise
    signature = metadata.signatures.get(model.signature_name)
    if signature is None:
        known = ", ".join(sorted(metadata.signatures)) or "none"
        raise ValueError(
            f"signature {model.signature_name!r}: model {model.name} has no such signature; "
            f"it has {known}"
        )
    return signature
