"""core.wire.protos loads TF Serving's messages without initializing the TensorFlow runtime."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> dict:
    """Run code in a fresh interpreter and return the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


CONSOLE_MODULES = [
    "core.wire.protos",
    "core.wire.dtypes",
    "core.wire.nested",
    "core.wire.tensors",
    "core.wire.rest_json",
    "core.config.schema",
    "core.client.serving",
    "core.client.batcher",
    "core.metrics.latency",
    "core.metrics.stats",
    "core.chat.adapters",
    "core.chat.transcript",
    "core.client.scrape",
    "core.client.monitor",
    "core.embedded.launcher",
    "core.load.burst",
    "core.load.generator",
    "core.report.model",
    "tui.app",
    "tui.main",
    "tui.burst",
    "cli.main",
    "cli.bench",
    "cli.bench_run",
    "cli.bench_files",
    "core.bench.watch",
    "core.load.rest",
]


def test_importing_protos_leaves_tensorflow_runtime_unloaded() -> None:
    report = run_python(
        """
        import json, sys
        import core.wire.protos as p
        request = p.predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["x"].dtype = p.types_pb2.DT_FLOAT
        print(json.dumps({
            "tf_python": sorted(m for m in sys.modules if m.startswith("tensorflow.python")),
            "tensorflow_in_modules": "tensorflow" in sys.modules,
            "size": request.ByteSize(),
        }))
        """
    )
    assert report["tf_python"] == []
    assert report["tensorflow_in_modules"] is False
    assert report["size"] > 0


@pytest.mark.parametrize("module", CONSOLE_MODULES)
def test_console_modules_do_not_initialize_tensorflow(module: str) -> None:
    report = run_python(
        f"""
        import importlib, importlib.util, json, sys
        loaded = importlib.util.find_spec({module!r}) is not None
        if loaded:
            importlib.import_module({module!r})
        print(json.dumps({{
            "found": loaded,
            "tf_python": [m for m in sys.modules if m.startswith("tensorflow.python")][:5],
        }}))
        """
    )
    if not report["found"]:
        pytest.fail(f"{module} does not exist yet")
    assert report["tf_python"] == []


@pytest.mark.slow
def test_real_tensorflow_import_afterwards_shares_message_classes() -> None:
    report = run_python(
        """
        import json
        import core.wire.protos as p
        import tensorflow as tf
        from tensorflow.core.framework import tensor_pb2
        from tensorflow_serving.apis import predict_pb2
        proto = tf.make_tensor_proto([1.0, 2.0])
        print(json.dumps({
            "same_tensor_class": tensor_pb2.TensorProto is p.tensor_pb2.TensorProto,
            "same_module": predict_pb2 is p.predict_pb2,
            "tf_makes_our_class": type(proto) is p.tensor_pb2.TensorProto,
            "roundtrip": tf.make_ndarray(proto).tolist(),
        }))
        """
    )
    assert report == {
        "same_tensor_class": True,
        "same_module": True,
        "tf_makes_our_class": True,
        "roundtrip": [1.0, 2.0],
    }
