"""The serving API behind both gRPC and REST: one method per TF Serving RPC, on request protos."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.wire.protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)
from server import errors, inference
from server.errors import ServingStatus
from server.execution import Executor
from server.limits import RequestLimits
from server.manager import ModelManager

log = logging.getLogger("deepchat_tfs.server.service")

SIGNATURE_DEF_FIELD = "signature_def"
T = TypeVar("T")


def _serving_status(api: str, error: Exception) -> ServingStatus:
    """The status a failed call answers with: its own, or a plain one for anything else."""
    if isinstance(error, ServingStatus):
        return error
    if isinstance(error, (MemoryError, RecursionError)):
        # Plain answers for a request too large or too deep to build, no Python internals.
        return errors.for_resource_error(error)
    log.exception("%s failed unexpectedly", api)
    return errors.internal(f"{api} failed: {type(error).__name__}: {error}")


class InferenceService:
    """TF Serving's PredictionService and ModelService logic, shared by gRPC and REST."""

    def __init__(
        self,
        manager: ModelManager,
        executor: Executor,
        metrics: Any = None,
        limits: RequestLimits | None = None,
        *,
        method_name_check: bool = False,
        tensor_content: bool = False,
    ) -> None:
        self.manager = manager
        self.executor = executor
        self.metrics = metrics
        # Size checks on a Predict's TensorProtos before any array is built.
        self.limits = limits or RequestLimits()
        # --enable_signature_method_name_check and --enable_serialization_as_tensor_content.
        self.method_name_check = method_name_check
        self.tensor_content = tensor_content

    async def measured(
        self,
        api: str,
        entrypoint: str,
        model_name: str,
        handler: Callable[[], Awaitable[T]],
    ) -> T:
        """Run a handler, recording TF Serving's request_count and request_latency for it."""
        started = time.perf_counter()
        status = "OK"
        try:
            return await handler()
        except Exception as error:
            failure = _serving_status(api, error)
            status = failure.code_name
            if failure is error:
                raise
            raise failure from None
        finally:
            if self.metrics is not None:
                self.metrics.record_request(
                    model_name, api, entrypoint, status, (time.perf_counter() - started) * 1e6
                )

    # ---- PredictionService ----------------------------------------------------------------

    async def predict(
        self, request: Any, *, deadline: float | None = None, entrypoint: str = "GRPC"
    ) -> Any:
        """Predict: run a signature on named input tensors.

        measured() written out: the path every Predict takes, one coroutine instead of three.
        """
        started = time.perf_counter()
        status = "OK"
        try:
            signature_name, version, outputs = await self.run_predict_arrays(request, deadline)
            response = predict_pb2.PredictResponse()
            inference.fill_predict_response(
                response,
                request.model_spec.name,
                signature_name,
                version,
                outputs,
                tensor_content=self.tensor_content,
            )
            return response
        except Exception as error:
            failure = _serving_status("Predict", error)
            status = failure.code_name
            if failure is error:
                raise
            raise failure from None
        finally:
            if self.metrics is not None:
                self.metrics.record_request(
                    request.model_spec.name,
                    "Predict",
                    entrypoint,
                    status,
                    (time.perf_counter() - started) * 1e6,
                )

    async def run_predict_arrays(
        self, request: Any, deadline: float | None
    ) -> tuple[str, int, dict[str, Any]]:
        """Predict to arrays: (signature name, version that served, outputs by alias)."""
        with self.manager.acquire(request.model_spec) as servable:
            signature_name, signature = inference.find_predict_signature(
                servable.signature_defs, request.model_spec.signature_name
            )
            self.limits.check(request.inputs)
            plans = getattr(servable, "predict_plans", None)
            prepared = (
                inference.prepare_predict(signature_name, signature, request)
                if plans is None
                else inference.prepare_predict_cached(signature_name, signature, request, plans)
            )
            # A short run answers right here; the others (first runs, long ones, batching)
            # await the executor.
            outputs = self.executor.run_inline(
                servable, signature_name, prepared.inputs, prepared.output_aliases, deadline
            )
            if outputs is None:
                outputs = await self.executor.run_queued(
                    servable,
                    signature_name,
                    signature,
                    prepared.inputs,
                    prepared.output_aliases,
                    deadline=deadline,
                    api="Predict",
                )
            return signature_name, servable.version, outputs

    async def _examples_call(
        self,
        request: Any,
        api: str,
        find: Callable[..., tuple[str, Any]],
        check: Callable[..., tuple[str, ...]],
        deadline: float | None,
    ) -> tuple[str, int, int, dict[str, Any]]:
        """Run tf.Examples through a classify/regress signature: (signature, version, count,
        outputs by alias)."""
        with self.manager.acquire(request.model_spec) as servable:
            signature_name, signature = find(
                servable.signature_defs,
                request.model_spec.signature_name,
                method_name_check=self.method_name_check,
            )
            aliases = check(signature)
            examples = inference.serialized_examples(request.input)
            input_alias = next(iter(signature.inputs))
            outputs = await self.executor.run(
                servable,
                signature_name,
                signature,
                {input_alias: examples},
                aliases,
                deadline=deadline,
                api=api,
            )
            return signature_name, servable.version, len(examples), outputs

    async def classify(
        self, request: Any, *, deadline: float | None = None, entrypoint: str = "GRPC"
    ) -> Any:
        """Classify: tf.Examples through a classification signature."""
        return await self.measured(
            "Classify",
            entrypoint,
            request.model_spec.name,
            lambda: self.run_classify(request, deadline),
        )

    async def run_classify(self, request: Any, deadline: float | None) -> Any:
        """Classify without recording metrics."""
        signature_name, version, count, outputs = await self._examples_call(
            request,
            "Classify",
            inference.find_classify_signature,
            inference.classify_outputs,
            deadline,
        )
        response = classification_pb2.ClassificationResponse()
        inference.fill_classification_result(response.result, count, outputs)
        inference.set_model_spec(
            response.model_spec, request.model_spec.name, signature_name, version
        )
        return response

    async def regress(
        self, request: Any, *, deadline: float | None = None, entrypoint: str = "GRPC"
    ) -> Any:
        """Regress: tf.Examples through a regression signature."""
        return await self.measured(
            "Regress",
            entrypoint,
            request.model_spec.name,
            lambda: self.run_regress(request, deadline),
        )

    async def run_regress(self, request: Any, deadline: float | None) -> Any:
        """Regress without recording metrics."""
        signature_name, version, count, outputs = await self._examples_call(
            request,
            "Regress",
            inference.find_regress_signature,
            inference.regress_outputs,
            deadline,
        )
        response = regression_pb2.RegressionResponse()
        inference.fill_regression_result(response.result, count, outputs)
        inference.set_model_spec(
            response.model_spec, request.model_spec.name, signature_name, version
        )
        return response

    async def multi_inference(
        self, request: Any, *, deadline: float | None = None, entrypoint: str = "GRPC"
    ) -> Any:
        """MultiInference: several classify/regress signatures on one set of examples, one run."""
        model_name = request.tasks[0].model_spec.name if request.tasks else ""

        async def handle() -> Any:
            if not request.tasks:
                raise errors.invalid_argument(
                    "MultiInferenceRequest must specify at least one task."
                )
            with self.manager.acquire(request.tasks[0].model_spec) as servable:
                plans = self._plan_multi_inference(
                    request, servable.signature_defs, self.method_name_check
                )
                # As TF Serving: one examples tensor fed to every signature's input tensor
                # (TF2 exports give each signature its own placeholder).
                input_names = sorted({plan[3] for plan in plans})
                fetches = sorted({name for plan in plans for name in plan[4].values()})
                examples = inference.serialized_examples(request.input)
                results = await self.executor.run_tensors(
                    servable, dict.fromkeys(input_names, examples), fetches, deadline=deadline
                )
                by_name = dict(zip(fetches, results, strict=True))
                response = inference_pb2.MultiInferenceResponse()
                for task, signature_name, method, _, alias_to_name in plans:
                    outputs = {alias: by_name[name] for alias, name in alias_to_name.items()}
                    result = response.results.add()
                    if method == inference.CLASSIFY_METHOD:
                        inference.fill_classification_result(
                            result.classification_result, len(examples), outputs
                        )
                    else:
                        inference.fill_regression_result(
                            result.regression_result, len(examples), outputs
                        )
                    inference.set_model_spec(
                        result.model_spec, task.model_spec.name, signature_name, servable.version
                    )
                return response

        return await self.measured("MultiInference", entrypoint, model_name, handle)

    @staticmethod
    def _plan_multi_inference(
        request: Any, signature_defs: Any, method_name_check: bool
    ) -> list[tuple[Any, str, str, str, dict[str, str]]]:
        plans = []
        model_name = ""
        seen: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise errors.invalid_argument("Found ModelSpec with an empty model name.")
            if model_name and task.model_spec.name != model_name:
                raise errors.invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            model_name = task.model_spec.name
            signature_name = inference.signature_key(task.model_spec.signature_name)
            if signature_name in seen:
                raise errors.invalid_argument(
                    f"Duplicate evaluation of signature: {signature_name}"
                )
            seen.add(signature_name)
            signature = signature_defs.get(signature_name)
            if signature is None:
                raise errors.invalid_argument(
                    f"Requested signature not found in model graph: {signature_name}"
                )
            if task.method_name == inference.CLASSIFY_METHOD:
                aliases = inference.classify_outputs(signature, method_name_check=method_name_check)
            elif task.method_name == inference.REGRESS_METHOD:
                aliases = inference.regress_outputs(signature, method_name_check=method_name_check)
            else:
                raise errors.unimplemented(f"Unsupported signature method_name: {task.method_name}")
            input_name = signature.inputs[inference.CLASSIFY_INPUTS].name
            alias_to_name = {alias: signature.outputs[alias].name for alias in aliases}
            plans.append((task, signature_name, task.method_name, input_name, alias_to_name))
        return plans

    async def get_model_metadata(self, request: Any, *, entrypoint: str = "GRPC") -> Any:
        """GetModelMetadata: the SavedModel's SignatureDefs packed in an Any."""
        return await self.measured(
            "GetModelMetadata",
            entrypoint,
            request.model_spec.name,
            lambda: self._get_model_metadata(request),
        )

    async def _get_model_metadata(self, request: Any) -> Any:
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise errors.invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for metadata_field in request.metadata_field:
            if metadata_field != SIGNATURE_DEF_FIELD:
                raise errors.invalid_argument(f"Metadata field {metadata_field} is not supported")
        with self.manager.acquire(request.model_spec) as servable:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
            return response

    # ---- ModelService -----------------------------------------------------------------------

    async def get_model_status(self, request: Any) -> Any:
        """GetModelStatus: every version's state, newest first (or the one asked for)."""
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        # As in TF Serving, a version label does not narrow the answer: only a version number does.
        version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self.manager.version_states(spec.name, version):
            item = response.model_version_status.add()
            item.version = state.version
            item.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            item.status.SetInParent()  # TF Serving always writes the status, OK included
            item.status.error_code = _error_code_value(state.error_code)
            item.status.error_message = state.error_message
        return response

    async def reload_config(self, request: Any) -> Any:
        """HandleReloadConfigRequest: replace the model list; the status goes in the reply too."""
        response = model_management_pb2.ReloadConfigResponse()
        try:
            await self.manager.reload_config(request.config)
        except ServingStatus as error:
            log.error("ReloadConfig failed: %s", error.message)
            response.status.error_code = _error_code_value(error.code_name)
            response.status.error_message = error.message
            raise
        return response


def _error_code_value(code_name: str) -> int:
    from core.wire.protos import error_codes_pb2

    return int(error_codes_pb2.Code.Value(code_name))
