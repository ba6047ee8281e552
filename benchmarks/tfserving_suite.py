"""TF Serving's own integration tests, run unchanged against `deepchat-tfs serve`.

`python -m benchmarks.tfserving_suite SERVING_CHECKOUT` takes a clone of
https://github.com/tensorflow/serving and runs its
`tensorflow_serving/model_servers/tensorflow_model_server_test.py` the way Bazel would, with
`deepchat-tfs serve` standing in for the `tensorflow_model_server` binary: TEST_SRCDIR points at
a temporary tree holding the checkout's test data and a two-line wrapper in place of the binary.
The only edit to the test file is the import of its base module, which Bazel would put on the
path. Prints each test's outcome and a tally; the figures in docs/TFSERVING_DIFFERENCES.md come
from this script. portpicker and six, which the test imports, are installed into the temporary
tree when this venv lacks them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEST_FILE = "tensorflow_serving/model_servers/tensorflow_model_server_test.py"
BASE_FILE = "tensorflow_serving/model_servers/test_util/tensorflow_model_server_test_base.py"
TEST_DATA = "tensorflow_serving/servables/tensorflow/testdata"
BASE_IMPORT = (
    "from tensorflow_serving.model_servers.test_util import tensorflow_model_server_test_base"
)
# Tests that need what `deepchat-tfs serve` does not offer: TFLite models, TF's profiler
# service, TF Text ops. Listed in docs/TFSERVING_DIFFERENCES.md.
OUT_OF_SCOPE = ("TfLite", "profiler", "tf_text")
# Export a Sequential model with tf.keras and send it `x`: under Keras 3 (tf.keras since TF 2.16)
# the export's signature names its input `inputs` and its output `output_0`, so any server,
# TF Serving's included, answers INVALID_ARGUMENT. Counted apart when Keras 3 is installed.
KERAS2_ONLY = (
    "test_sequential_keras_saved_model_save",
    "test_distrat_sequential_keras_saved_model_save",
)
# absltest's own placeholder test in every tf.test.TestCase, not one of TF Serving's.
NOT_A_TEST = ("test_session",)
OUTCOME = re.compile(r"^\[\s+(OK|FAILED|SKIPPED)\s+\] \w+\.(\w+)$|^(ERROR|FAIL): (\w+) ", re.M)


def prepare(checkout: Path, work: Path, server: list[str]) -> Path:
    """The TEST_SRCDIR tree and the edited test file under work; returns the test file."""
    for relative in (TEST_FILE, BASE_FILE, TEST_DATA):
        if not (checkout / relative).exists():
            raise SystemExit(f"{checkout}: no {relative}; expected a tensorflow/serving checkout")
    package = work / "srcdir" / "tf_serving" / "tensorflow_serving"
    (package / "servables" / "tensorflow").mkdir(parents=True)
    (package / "servables" / "tensorflow" / "testdata").symlink_to(checkout / TEST_DATA)
    wrapper = package / "model_servers" / "tensorflow_model_server"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(server) + ' "$@"\n')
    wrapper.chmod(0o755)
    shutil.copy(checkout / BASE_FILE, work / "tensorflow_model_server_test_base.py")
    source = (checkout / TEST_FILE).read_text()
    if BASE_IMPORT not in source:
        raise SystemExit(f"{TEST_FILE}: its base-module import changed; expected {BASE_IMPORT!r}")
    test = work / "tensorflow_model_server_test.py"
    test.write_text(source.replace(BASE_IMPORT, "import tensorflow_model_server_test_base"))
    missing = [name for name in ("portpicker", "six") if importlib.util.find_spec(name) is None]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(work), *missing],
            check=True,
        )
    return test


def outcomes(log: str) -> dict[str, str]:
    """Each test's outcome (OK, ERROR, FAIL, SKIPPED) from absltest's output."""
    found: dict[str, str] = {}
    for match in OUTCOME.finditer(log):
        ok_name, error_kind, error_name = match.group(2), match.group(3), match.group(4)
        if ok_name:
            found.setdefault(ok_name, match.group(1))
        if error_name:
            found[error_name] = error_kind
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a clone of github.com/tensorflow/serving")
    parser.add_argument(
        "--server",
        default=f"{Path(sys.executable).parent / 'deepchat-tfs'} serve",
        help="the command that stands in for tensorflow_model_server (default: %(default)s)",
    )
    parser.add_argument("--log", type=Path, help="also write the tests' whole output here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfserving-suite-") as tmp:
        work = Path(tmp)
        test = prepare(args.checkout.resolve(), work, args.server.split())
        env = dict(os.environ, TEST_SRCDIR=str(work / "srcdir"), TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work), env.get("PYTHONPATH")]))
        run = subprocess.run(
            [sys.executable, str(test)], cwd=work, env=env, capture_output=True, text=True
        )
    log = run.stdout + run.stderr
    if args.log:
        args.log.write_text(log)
    found = outcomes(log)
    if not found:
        print(log[-3000:])
        raise SystemExit("no test outcomes in the output; see above")
    for name in NOT_A_TEST:
        found.pop(name, None)
    keras3 = int(importlib.metadata.version("keras").split(".")[0]) >= 3
    aside = {
        name: "out of scope: TFLite, profiler or TF Text"
        for name in found
        if any(part in name for part in OUT_OF_SCOPE)
    }
    # Set aside only if the server's answer says so (TF Serving's own message for this case).
    if keras3 and "Signature input alias: inputs(feed name: serving_default_inputs:0)" in log:
        aside.update(
            (name, "Keras 3 exports name the input `inputs`; fails on any server")
            for name in KERAS2_ONLY
            if name in found
        )
    for name, outcome in sorted(found.items()):
        print(f"{outcome:8} {name}" + (f"  ({aside[name]})" if name in aside else ""))
    in_scope = {name: outcome for name, outcome in found.items() if name not in aside}
    passed = sum(outcome == "OK" for outcome in in_scope.values())
    print(f"\n{passed} of {len(in_scope)} in-scope tests pass", end="")
    print(f" ({len(found)} ran, {len(aside)} set aside).")
    return 0 if passed == len(in_scope) else 1


if __name__ == "__main__":
    sys.exit(main())
