"""TF Serving's protobuf messages and gRPC stubs, loaded without the TensorFlow runtime.

The generated modules live inside the ``tensorflow`` package, so a plain
``from tensorflow_serving.apis import predict_pb2`` runs ``tensorflow/__init__.py``: 2.4 s,
590 MB RSS and C++ log lines on stderr. Here a bare module object stands in for ``tensorflow``
while the _pb2 modules import, then is removed again. The _pb2 modules stay registered under
their real names, so a later real ``import tensorflow`` reuses the very same message classes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

_import_lock = threading.Lock()


def _import_without_tf_runtime(names: list[str]) -> list[types.ModuleType]:
    """Import the given modules with a stand-in ``tensorflow`` package object."""
    with _import_lock:
        if "tensorflow" in sys.modules:
            # TensorFlow (or our stand-in) is already there: a plain import is correct.
            return [importlib.import_module(name) for name in names]
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "the 'tensorflow' package is not installed; deepchat-tfs needs it for "
                "TF Serving's message definitions (pip install tensorflow-serving-api)"
            )
        stand_in = types.ModuleType("tensorflow")
        stand_in.__path__ = list(spec.submodule_search_locations)
        stand_in.__file__ = None
        sys.modules["tensorflow"] = stand_in
        try:
            return [importlib.import_module(name) for name in names]
        finally:
            if sys.modules.get("tensorflow") is stand_in:
                del sys.modules["tensorflow"]


def tensorflow_package_dir() -> Path:
    """Directory of the installed ``tensorflow`` package (without importing it)."""
    spec = importlib.util.find_spec("tensorflow")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


(
    types_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    meta_graph_pb2,
    example_pb2,
    feature_pb2,
    error_codes_pb2,
    model_pb2,
    predict_pb2,
    classification_pb2,
    regression_pb2,
    inference_pb2,
    input_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    status_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    model_server_config_pb2,
    file_system_storage_path_source_pb2,
) = _import_without_tf_runtime(
    [
        "tensorflow.core.framework.types_pb2",
        "tensorflow.core.framework.tensor_pb2",
        "tensorflow.core.framework.tensor_shape_pb2",
        "tensorflow.core.protobuf.meta_graph_pb2",
        "tensorflow.core.example.example_pb2",
        "tensorflow.core.example.feature_pb2",
        "tensorflow.core.protobuf.error_codes_pb2",
        "tensorflow_serving.apis.model_pb2",
        "tensorflow_serving.apis.predict_pb2",
        "tensorflow_serving.apis.classification_pb2",
        "tensorflow_serving.apis.regression_pb2",
        "tensorflow_serving.apis.inference_pb2",
        "tensorflow_serving.apis.input_pb2",
        "tensorflow_serving.apis.get_model_metadata_pb2",
        "tensorflow_serving.apis.get_model_status_pb2",
        "tensorflow_serving.apis.model_management_pb2",
        "tensorflow_serving.apis.status_pb2",
        "tensorflow_serving.apis.model_service_pb2",
        "tensorflow_serving.apis.model_service_pb2_grpc",
        "tensorflow_serving.apis.prediction_service_pb2",
        "tensorflow_serving.apis.prediction_service_pb2_grpc",
        "tensorflow_serving.config.model_server_config_pb2",
        "tensorflow_serving.config.file_system_storage_path_source_pb2",
    ]
)

# TensorFlow's DataType enum values by name, e.g. DT_FLOAT -> 1.
DataType: Any = types_pb2.DataType

__all__ = [
    "DataType",
    "classification_pb2",
    "error_codes_pb2",
    "example_pb2",
    "feature_pb2",
    "file_system_storage_path_source_pb2",
    "get_model_metadata_pb2",
    "get_model_status_pb2",
    "inference_pb2",
    "input_pb2",
    "meta_graph_pb2",
    "model_management_pb2",
    "model_pb2",
    "model_server_config_pb2",
    "model_service_pb2",
    "model_service_pb2_grpc",
    "predict_pb2",
    "prediction_service_pb2",
    "prediction_service_pb2_grpc",
    "regression_pb2",
    "status_pb2",
    "tensor_pb2",
    "tensor_shape_pb2",
    "tensorflow_package_dir",
    "types_pb2",
]
