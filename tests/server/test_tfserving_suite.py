"""benchmarks.tfserving_suite reads absltest's output the way TF Serving's suite prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import tfserving_suite

LOG = """\
[ RUN      ] TensorflowModelServerTest.testClassify
[       OK ] TensorflowModelServerTest.testClassify
[ RUN      ] TensorflowModelServerTest.testPredictOnTfLite
deepchat-tfs serve: unknown flag --prefer_tflite_model
[  FAILED  ] TensorflowModelServerTest.testPredictOnTfLite
[ RUN      ] TensorflowModelServerTest.testRegress
[  FAILED  ] TensorflowModelServerTest.testRegress
======================================================================
ERROR: testPredictOnTfLite (__main__.TensorflowModelServerTest.testPredictOnTfLite)
FAIL: testRegress (__main__.TensorflowModelServerTest.testRegress)
"""


def test_outcomes_take_the_error_kind_over_the_failed_line() -> None:
    assert tfserving_suite.outcomes(LOG) == {
        "testClassify": "OK",
        "testPredictOnTfLite": "ERROR",
        "testRegress": "FAIL",
    }


def test_a_directory_that_is_not_a_serving_checkout_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected a tensorflow/serving checkout"):
        tfserving_suite.prepare(tmp_path, tmp_path / "work", ["true"])
