"""TF Serving's request semantics for Predict, Classify, Regress and MultiInference.

Validation and result shaping follow predict_util.cc, classifier.cc, regressor.cc and
multi_inference.cc, with their error codes and texts; no TensorFlow here (models.py runs graphs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from core.wire import tensors
from core.wire.protos import types_pb2
from server import errors, tensor_fields

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


def signature_key(requested: str) -> str:
    """The signature a request names; an empty name means serving_default."""
    return requested or DEFAULT_SIGNATURE


def tf_dtype_string(dtype: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> "float", DT_INT32 -> "int32"."""
    try:
        return str(types_pb2.DataType.Name(dtype))[3:].lower()
    except ValueError:
        return f"unknown dtype {dtype}"


class PreparedRun(NamedTuple):
    """What one request runs: input arrays by alias and the output aliases to fetch, in order.

    A NamedTuple, not a frozen dataclass: one is built for every request."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    output_aliases: tuple[str, ...]


def _sorted_join(names: Any) -> str:
    return ",".join(sorted(names))


def find_predict_signature(signature_defs: Mapping[str, Any], requested: str) -> tuple[str, Any]:
    """The signature Predict runs; FAILED_PRECONDITION when the model has no such key."""
    name = signature_key(requested)
    signature = signature_defs.get(name)
    if signature is None:
        raise errors.failed_precondition(f'Serving signature key "{name}" not found.')
    return name, signature


def _feed_array(alias: str, proto: Any) -> np.ndarray:
    try:
        return tensor_fields.to_ndarray(proto)
    except (ValueError, TypeError):
        raise errors.invalid_argument(f"tensor parsing error: {alias}") from None


def _check_dtype(index: int, expected: int, given: int) -> None:
    if expected != types_pb2.DT_INVALID and given != expected:
        # The text C++ Session::Run gives for a fed tensor of the wrong type.
        raise errors.invalid_argument(
            f"Expects arg[{index}] to be {tf_dtype_string(expected)} but "
            f"{tf_dtype_string(given)} is provided"
        )


def prepare_predict(signature_name: str, signature: Any, request: Any) -> PreparedRun:
    """Validate a PredictRequest against its signature (inputs, dtypes, output_filter)."""
    request_inputs = request.inputs
    signature_inputs = signature.inputs
    defaults = getattr(signature, "defaults", {})
    if len(request_inputs) > len(signature_inputs) or (
        len(request_inputs) < len(signature_inputs) and not defaults
    ):
        sent = set(request_inputs.keys())
        expected = set(signature_inputs.keys())
        raise errors.invalid_argument(
            f"input size does not match signature: {len(request_inputs)}!={len(signature_inputs)}"
            f" len({{{_sorted_join(sent)}}}) != len({{{_sorted_join(expected)}}}). "
            f"Sent extra: {{{_sorted_join(sent - expected)}}}. "
            f"Missing but required: {{{_sorted_join(expected - sent)}}}."
        )
    inputs: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    for alias in sorted(signature_inputs.keys()):
        info = signature_inputs[alias]
        if alias in request_inputs:
            proto = request_inputs[alias]
            seen.add(alias)
        elif alias in defaults:
            proto = defaults[alias]
        else:
            raise errors.invalid_argument(
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request "
                f"and no default value provided. Inputs expected to be in the request "
                f"{{{_sorted_join(request_inputs.keys())}}}, or default input alias set: "
                f"{_sorted_join(defaults.keys())}"
            )
        inputs[alias] = _feed_array(alias, proto)
    if request_inputs and len(seen) != len(request_inputs):
        raise errors.invalid_argument(
            f"Inputs contains invalid name. Used request inputs: {_sorted_join(seen)}, "
            f"request input: {_sorted_join(request_inputs.keys())}"
        )
    # As in TF Serving, every tensor parses first; a dtype mismatch shows when the session runs.
    for index, alias in enumerate(sorted(signature_inputs.keys())):
        given = request_inputs[alias].dtype if alias in request_inputs else defaults[alias].dtype
        _check_dtype(index, signature_inputs[alias].dtype, given)
    return PreparedRun(signature_name, inputs, output_aliases(signature, request.output_filter))


@dataclass(frozen=True)
class _PredictPlan:
    """What validating one request shape decided: the aliases fed from the request, the
    defaults fed otherwise, and the outputs to fetch."""

    from_request: tuple[str, ...]
    defaults: tuple[tuple[str, np.ndarray], ...]
    output_aliases: tuple[str, ...]


MAX_PLANS = 256  # request shapes remembered per servable


def prepare_predict_cached(
    signature_name: str, signature: Any, request: Any, plans: dict[Any, Any]
) -> PreparedRun:
    """prepare_predict, remembering what it decided for each request shape (signature, input
    aliases and dtypes, output_filter): a repeated shape only decodes its tensors."""
    request_inputs = request.inputs
    if len(request_inputs) == 1:
        # The usual request: one input, nothing to sort.
        ((alias, proto),) = request_inputs.items()
        input_key: tuple[tuple[str, int], ...] = ((alias, proto.dtype),)
    else:
        input_key = tuple(sorted([(alias, proto.dtype) for alias, proto in request_inputs.items()]))
    output_filter = request.output_filter
    key = (signature_name, input_key, tuple(output_filter) if output_filter else ())
    plan = plans.get(key)
    if plan is None:
        prepared = prepare_predict(signature_name, signature, request)
        if len(plans) < MAX_PLANS:
            plans[key] = _PredictPlan(
                tuple(alias for alias in prepared.inputs if alias in request_inputs),
                tuple(
                    (alias, array)
                    for alias, array in prepared.inputs.items()
                    if alias not in request_inputs
                ),
                prepared.output_aliases,
            )
        return prepared
    inputs = {alias: _feed_array(alias, request_inputs[alias]) for alias in plan.from_request}
    if plan.defaults:
        # Fresh copies: a run may reuse the buffer of a tensor it was fed.
        inputs.update([(alias, array.copy()) for alias, array in plan.defaults])
    return PreparedRun(signature_name, inputs, plan.output_aliases)


def output_aliases(signature: Any, output_filter: Sequence[str]) -> tuple[str, ...]:
    """The outputs to fetch: the filter's aliases in order, or every output of the signature."""
    chosen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise errors.invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{_sorted_join(signature.outputs.keys())}}}."
            )
        if alias in chosen:
            raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
        chosen.append(alias)
    if not chosen:
        chosen = sorted(signature.outputs.keys())
    return tuple(chosen)


def fill_predict_response(
    response: Any,
    model_name: str,
    signature_name: str,
    version: int,
    outputs: Mapping[str, np.ndarray],
    *,
    tensor_content: bool = False,
) -> None:
    """Write the outputs and the model_spec that served them into a PredictResponse.

    Typed *_val fields by default, as TF Serving; tensor_content under
    --enable_serialization_as_tensor_content.
    """
    set_model_spec(response.model_spec, model_name, signature_name, version)
    fill = tensor_fields.fill_tensor_content if tensor_content else tensor_fields.fill_proto_field
    response_outputs = response.outputs
    for alias, array in outputs.items():
        fill(response_outputs[alias], np.asarray(array))


def set_model_spec(model_spec: Any, name: str, signature_name: str | None, version: int) -> None:
    """TF Serving's MakeModelSpec: name, signature (empty -> serving_default) and version."""
    model_spec.Clear()
    model_spec.name = name
    if signature_name is not None:
        model_spec.signature_name = signature_key(signature_name)
    model_spec.version.value = version


# ---- Classify / Regress -------------------------------------------------------------------


def serialized_examples(input_proto: Any) -> np.ndarray:
    """The Input's tf.Examples as a vector of serialized protos (context bytes first)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [example.SerializeToString() for example in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        # Concatenated protos parse as one merged message: context features plus the example's.
        serialized = [context + example.SerializeToString() for example in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise errors.invalid_argument("Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def _find_signature(signature_defs: Mapping[str, Any], requested: str) -> tuple[str, Any]:
    name = signature_key(requested)
    signature = signature_defs.get(name)
    if signature is None:
        raise errors.invalid_argument(f"No signature was found with the name: {name}")
    return name, signature


def _check_method_name(signature: Any, method: str, what: str) -> None:
    # Only under --enable_signature_method_name_check: TF2 exports name every signature
    # tensorflow/serving/predict, so TF Serving checks the signature's shape instead.
    if signature.method_name != method:
        raise errors.invalid_argument(
            f"Expected {what} signature method_name to be {method}. Was: {signature.method_name}"
        )


def find_classify_signature(
    signature_defs: Mapping[str, Any], requested: str, *, method_name_check: bool = False
) -> tuple[str, Any]:
    """The classification signature a ClassificationRequest names, checked as classifier.cc."""
    name, signature = _find_signature(signature_defs, requested)
    classify_outputs(signature, method_name_check=method_name_check)
    return name, signature


def find_regress_signature(
    signature_defs: Mapping[str, Any], requested: str, *, method_name_check: bool = False
) -> tuple[str, Any]:
    """The regression signature a RegressionRequest names, checked as regressor.cc."""
    name, signature = _find_signature(signature_defs, requested)
    regress_outputs(signature, method_name_check=method_name_check)
    return name, signature


def classify_outputs(signature: Any, *, method_name_check: bool = False) -> tuple[str, ...]:
    """Check a classification signature's shape; the output aliases it produces."""
    if method_name_check:
        _check_method_name(signature, CLASSIFY_METHOD, "classification")
    if len(signature.inputs) != 1:
        raise errors.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise errors.invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if CLASSIFY_INPUTS not in signature.inputs:
        raise errors.invalid_argument(
            f"No classification inputs found in SignatureDef: {signature}"
        )
    aliases = tuple(
        alias
        for alias in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES)
        if alias in signature.outputs
    )
    if not aliases:
        raise errors.invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {signature}'
        )
    return aliases


def regress_outputs(signature: Any, *, method_name_check: bool = False) -> tuple[str, ...]:
    """Check a regression signature's shape; the output alias it produces."""
    if method_name_check:
        _check_method_name(signature, REGRESS_METHOD, "regression")
    if len(signature.inputs) != 1:
        raise errors.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise errors.invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise errors.invalid_argument(f"No regression inputs found in SignatureDef: {signature}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise errors.invalid_argument(f"No regression outputs found in SignatureDef: {signature}")
    return (REGRESS_OUTPUTS,)


def _dtype_label(array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "DT_STRING"
    try:
        return tensors.dtype_name(tensors.tf_dtype(array.dtype))
    except ValueError:
        return str(array.dtype)


def _shape_text(array: np.ndarray) -> str:
    return "[" + ",".join(str(dim) for dim in array.shape) + "]"


def fill_classification_result(
    result: Any, num_examples: int, outputs: Mapping[str, np.ndarray]
) -> None:
    """Turn classes/scores tensors into a ClassificationResult, checking their shapes."""
    classes = outputs.get(CLASSIFY_OUTPUT_CLASSES)
    scores = outputs.get(CLASSIFY_OUTPUT_SCORES)
    for alias, array, wanted in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise errors.invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(array)}"
            )
        if _dtype_label(array) != wanted:
            raise errors.invalid_argument(
                f"Expected {alias} Tensor of {wanted}. Got: {_dtype_label(array)}"
            )
        if array.shape[0] != num_examples:
            raise errors.invalid_argument(
                f"Expected {alias} output batch size of {num_examples}. Got: {array.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise errors.invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for row in range(num_examples):
        classifications = result.classifications.add()
        for column in range(num_classes):
            item = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                item.label = (
                    label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
                )
            if scores is not None:
                item.score = float(scores[row, column])


def fill_regression_result(
    result: Any, num_examples: int, outputs: Mapping[str, np.ndarray]
) -> None:
    """Turn the outputs tensor into a RegressionResult, checking its shape."""
    values = outputs[REGRESS_OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise errors.invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape_text(values)}"
        )
    if values.shape[0] != num_examples:
        raise errors.invalid_argument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {values.shape[0]}"
        )
    if values.dtype != np.float32:
        raise errors.invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_label(values)}"
        )
    for value in values.reshape(-1):
        result.regressions.add().value = float(value)
