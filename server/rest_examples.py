"""TF Serving's REST JSON for Classify and Regress: examples in, results out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from server import errors


def _feature_values(name: str, value: Any) -> tuple[str, list[Any]]:
    """A JSON feature value as (kind, values): kind is int64_list, float_list or bytes_list."""
    items = value if isinstance(value, list) else [value]
    kinds = set()
    values: list[Any] = []
    for item in items:
        if isinstance(item, bool):
            raise errors.invalid_argument(
                f"feature {name!r}: booleans are not a tf.Example type; expected numbers or strings"
            )
        if isinstance(item, int):
            kinds.add("int64_list")
            values.append(item)
        elif isinstance(item, float):
            kinds.add("float_list")
            values.append(item)
        elif isinstance(item, str):
            kinds.add("bytes_list")
            values.append(item.encode("utf-8"))
        elif isinstance(item, Mapping) and set(item) == {"b64"} and isinstance(item["b64"], str):
            kinds.add("bytes_list")
            try:
                values.append(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise errors.invalid_argument(
                    f"feature {name!r}: 'b64' value is not valid base64"
                ) from None
        else:
            raise errors.invalid_argument(
                f'feature {name!r}: expected a number, a string, {{"b64": ...}} or a list of '
                f"them; got {type(item).__name__}"
            )
    if kinds == {"int64_list", "float_list"}:
        # A list mixing 1 and 1.5 is a list of floats, as JSON does not tell 1 from 1.0.
        return "float_list", [float(item) for item in values]
    if len(kinds) > 1:
        raise errors.invalid_argument(
            f"feature {name!r}: a list mixes strings and numbers; expected one type"
        )
    return (kinds.pop() if kinds else "float_list"), values


def _fill_example(example: Any, features: Any, where: str) -> None:
    if not isinstance(features, Mapping):
        raise errors.invalid_argument(
            f"{where}: expected a JSON object of feature name -> value, "
            f"got {type(features).__name__}"
        )
    for name, value in features.items():
        kind, values = _feature_values(name, value)
        getattr(example.features.feature[name], kind).value.extend(values)


def fill_input_from_json(body: Any, request: Any) -> None:
    """Fill a Classification/RegressionRequest from {"signature_name", "context", "examples"}."""
    if not isinstance(body, Mapping):
        raise errors.invalid_argument("Request body must be a JSON object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise errors.invalid_argument("'signature_name' key must be a string value.")
    request.model_spec.signature_name = signature_name
    examples = body.get("examples")
    if examples is None:
        raise errors.invalid_argument("Missing 'examples' key in the request JSON object")
    if not isinstance(examples, list):
        raise errors.invalid_argument("'examples' key must be a JSON list of objects")
    if "context" in body:
        target = request.input.example_list_with_context
        _fill_example(target.context, body["context"], "'context'")
    else:
        target = request.input.example_list
    for index, features in enumerate(examples):
        _fill_example(target.examples.add(), features, f"examples[{index}]")


def classification_result_json(result: Any) -> dict[str, Any]:
    """{"results": [[[label, score], ...], ...]} as TF Serving writes it."""
    return {
        "results": [
            [[item.label, float(item.score)] for item in classifications.classes]
            for classifications in result.classifications
        ]
    }


def regression_result_json(result: Any) -> dict[str, Any]:
    """{"results": [value, ...]} as TF Serving writes it."""
    return {"results": [float(item.value) for item in result.regressions]}
