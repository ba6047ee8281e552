"""SavedModel warmup: replay assets.extra/tf_serving_warmup_requests before a version serves.

As TF Serving's saved_model_warmup: a TFRecord file of PredictionLog protos; each logged
Predict/Classify/Regress/MultiInference request runs once; any failure fails the load.
"""

from __future__ import annotations

import logging
from typing import Any

from server import errors, inference
from server.models import SavedModelServable, import_tensorflow

log = logging.getLogger("deepchat_tfs.server.warmup")

WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


def _run_aliases(
    servable: SavedModelServable, signature: Any, inputs: dict[str, Any], aliases: tuple[str, ...]
) -> None:
    feeds = {signature.inputs[alias].name: array for alias, array in inputs.items()}
    servable.run(feeds, [signature.outputs[alias].name for alias in aliases])


def _replay(servable: SavedModelServable, record: Any, method_name_check: bool) -> None:
    kind = record.WhichOneof("log_type")
    signatures = servable.signature_defs
    if kind == "predict_log":
        request = record.predict_log.request
        name, signature = inference.find_predict_signature(
            signatures, request.model_spec.signature_name
        )
        prepared = inference.prepare_predict(name, signature, request)
        _run_aliases(servable, signature, prepared.inputs, prepared.output_aliases)
    elif kind in ("classify_log", "regress_log"):
        request = getattr(record, kind).request
        if kind == "classify_log":
            _, signature = inference.find_classify_signature(
                signatures, request.model_spec.signature_name, method_name_check=method_name_check
            )
            aliases = inference.classify_outputs(signature)
        else:
            _, signature = inference.find_regress_signature(
                signatures, request.model_spec.signature_name, method_name_check=method_name_check
            )
            aliases = inference.regress_outputs(signature)
        examples = inference.serialized_examples(request.input)
        _run_aliases(servable, signature, {next(iter(signature.inputs)): examples}, aliases)
    elif kind == "multi_inference_log":
        request = record.multi_inference_log.request
        for task in request.tasks:
            signature = signatures[inference.signature_key(task.model_spec.signature_name)]
            check = (
                inference.classify_outputs
                if task.method_name == inference.CLASSIFY_METHOD
                else inference.regress_outputs
            )
            examples = inference.serialized_examples(request.input)
            aliases = check(signature, method_name_check=method_name_check)
            _run_aliases(servable, signature, {next(iter(signature.inputs)): examples}, aliases)
    else:
        raise errors.unimplemented(f"Unsupported log_type for warmup: {kind}")


def warm_up(
    servable: SavedModelServable, *, iterations: int = 1, method_name_check: bool = False
) -> int:
    """Replay the version's warmup requests (each `iterations` times), if it has any; the
    number of records read. Blocks."""
    path = servable.path.joinpath(*WARMUP_FILE)
    if not path.is_file():
        return 0
    tf = import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise errors.invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        record = prediction_log_pb2.PredictionLog.FromString(raw)
        for _ in range(iterations):
            _replay(servable, record, method_name_check)
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d.",
        path,
        count,
    )
    return count
