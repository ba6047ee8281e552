"""SavedModels loaded into a TensorFlow session and run the way TF Serving's C++ path runs them."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from server import heap

log = logging.getLogger("deepchat_tfs.server.models")

_tf_lock = threading.Lock()
_tf_module: Any = None
_tf_session: Any = None  # tensorflow.python.client.pywrap_tf_session, once imported


def import_tensorflow() -> Any:
    """Import TensorFlow once, its C++ INFO lines filtered (the rest goes to stderr: the log)."""
    global _tf_module
    with _tf_lock:
        if _tf_module is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            _tf_module = tf
    return _tf_module


def _session_api() -> Any:
    """TensorFlow's session C API wrapper (a module attribute lookup after the first call)."""
    global _tf_session
    if _tf_session is None:
        from tensorflow.python.client import pywrap_tf_session

        _tf_session = pywrap_tf_session
    return _tf_session


class SavedModelServable:
    """One loaded version of a SavedModel: its MetaGraphDef and a session to run it in."""

    def __init__(
        self, name: str, version: int, path: Path, session: Any, meta_graph_def: Any
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph_def = meta_graph_def
        # The SavedModel's own SignatureDefs, by key (GetModelMetadata returns these unchanged).
        self.signature_defs: Mapping[str, Any] = dict(meta_graph_def.signature_def)
        self._session = session
        self._graph = session.graph
        self._tf_outputs: dict[str, Any] = {}
        self._closed = False
        # What validation decided per Predict request shape (server.inference fills it).
        self.predict_plans: dict[Any, Any] = {}
        # Session callables by (feed names, fetch names): runs without a timeout use them.
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        self._callables_lock = threading.Lock()
        for signature in self.signature_defs.values():
            for info in list(signature.inputs.values()) + list(signature.outputs.values()):
                # Resolve names up front so runs only read the cache; TF2's
                # __saved_model_init_op names an operation, not a tensor: skip such names.
                if info.name and ":" in info.name:
                    self._tf_output(info.name)

    @classmethod
    def load(
        cls,
        name: str,
        version: int,
        path: Path,
        *,
        tags: Sequence[str] = ("serve",),
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> SavedModelServable:
        """Load the SavedModel at path (TF1 or TF2 export) into a new session; blocks."""
        tf = import_tensorflow()
        session_config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra_op_threads,
            inter_op_parallelism_threads=inter_op_threads,
        )
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=session_config)
        try:
            meta_graph_def = tf.compat.v1.saved_model.loader.load(session, list(tags), str(path))
            # Push the loaded graph to the C++ session now, so runs need no graph lock.
            session._extend_graph()
        except BaseException:
            session.close()
            raise
        return cls(name, version, path, session, meta_graph_def)

    def prepare_runs(self, *, deadline_runs: bool) -> None:
        """Build each signature's executors before the version serves, without running it.

        The first run of a set of feeds and fetches makes TensorFlow prune and optimize the
        graph and build an executor: 20-45 ms for the demo model, 5 ms for half_plus_two, which
        each version's first request used to pay. Built here for what a Predict without
        output_filter runs (every input fed, every output fetched, in alias order):
        - the session callable, used by runs without a timeout (inline and batched runs);
        - with deadline_runs, Session::Run's own executors, used by runs with a timeout.
          Session::Run builds them before it checks the feeds' dtypes, so a feed of the wrong
          dtype builds them and fails with INVALID_ARGUMENT before any op runs.
        A signature that cannot be prepared fails at its first request, as before.
        """
        for signature in self.signature_defs.values():
            inputs = tuple(signature.inputs[alias].name for alias in sorted(signature.inputs))
            fetches = tuple(signature.outputs[alias].name for alias in sorted(signature.outputs))
            if not fetches or any(":" not in name for name in (*inputs, *fetches)):
                continue  # e.g. TF2's __saved_model_init_op: an operation, not tensors
            try:
                self._callable(inputs, fetches)
                # Without inputs there is no feed to get wrong: the run would run the model.
                if deadline_runs and inputs:
                    self._build_run_executors(inputs, fetches)
            except Exception as error:  # the first request that runs it reports it
                log.debug("%s v%d: %s not prepared: %s", self.name, self.version, fetches, error)

    def _build_run_executors(self, inputs: Sequence[str], fetches: Sequence[str]) -> None:
        tf = import_tensorflow()
        mismatched = {}
        for name in inputs:
            # The graph's own dtype: a SignatureDef may leave it unset.
            wrong = tf.int32 if self._graph.get_tensor_by_name(name).dtype == tf.bool else tf.bool
            mismatched[name] = np.zeros(0, wrong.as_numpy_dtype)
        # Fails with "Expects arg[0] to be <dtype> but bool is provided", executors built.
        with contextlib.suppress(Exception):
            self.run(mismatched, fetches, timeout_ms=60_000)

    def _tf_output(self, tensor_name: str) -> Any:
        tf_output = self._tf_outputs.get(tensor_name)
        if tf_output is None:
            tensor = self._graph.get_tensor_by_name(tensor_name)
            tf_output = tensor._as_tf_output()
            self._tf_outputs[tensor_name] = tf_output
        return tf_output

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        *,
        timeout_ms: int | None = None,
    ) -> list[np.ndarray]:
        """Run the graph on tensor names, like C++ Session::Run: no static-shape check on feeds.

        Raises TensorFlow's OpError subclasses on failure (INVALID_ARGUMENT, ...).
        """
        if self._closed:
            raise RuntimeError(f"servable {self.name} version {self.version} is unloaded")
        tf_session = _session_api()
        if not timeout_ms:
            # A prepared callable skips the per-run lookup of feeds and fetches by name; like
            # the raw run path it does not check static shapes.
            handle = self._callable(tuple(feeds), tuple(fetches))
            outputs = tf_session.TF_SessionRunCallable(
                self._session._session, handle, list(feeds.values()), None
            )
            # Arrays already, but for 0-d outputs (numpy scalars).
            return [
                output if type(output) is np.ndarray else np.asarray(output) for output in outputs
            ]
        feed_dict = {self._tf_output(name): value for name, value in feeds.items()}
        fetch_list = [self._tf_output(name) for name in fetches]
        options = None
        if timeout_ms:
            tf = import_tensorflow()
            run_options = tf.compat.v1.RunOptions(timeout_in_ms=int(timeout_ms))
            options = tf_session.TF_NewBufferFromString(run_options.SerializeToString())
        try:
            # The session's raw run path, under Session.run's Python-side checks (FACTS.md).
            outputs = tf_session.TF_SessionRun_wrapper(
                self._session._session, options, feed_dict, fetch_list, [], None
            )
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
        return [np.asarray(output) for output in outputs]

    def _callable(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...]) -> int:
        key = (feed_names, fetch_names)
        handle = self._callables.get(key)
        if handle is None:
            from tensorflow.core.protobuf import config_pb2

            tf_session = _session_api()

            with self._callables_lock:
                handle = self._callables.get(key)
                if handle is None:
                    options = config_pb2.CallableOptions(feed=feed_names, fetch=fetch_names)
                    buffer = tf_session.TF_NewBufferFromString(options.SerializeToString())
                    try:
                        handle = tf_session.TF_SessionMakeCallable(self._session._session, buffer)
                    finally:
                        tf_session.TF_DeleteBuffer(buffer)
                    self._callables[key] = handle
        return handle

    def close(self) -> None:
        """Release the session and the graph; later runs raise."""
        if not self._closed:
            self._closed = True
            from tensorflow.python.client import pywrap_tf_session as tf_session

            with self._callables_lock:
                for handle in self._callables.values():
                    tf_session.TF_SessionReleaseCallable(self._session._session, handle)
                self._callables.clear()
            self._session.close()
            # The graph's Python objects form reference cycles: drop them for the collector.
            self._session = self._graph = None
            self._tf_outputs = {}
            heap.release_unloaded()


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Version directories under base_path: all-digit names (00000123 is 123), others skipped."""
    versions: dict[int, Path] = {}
    for entry in base_path.iterdir():
        if entry.name.isascii() and entry.name.isdigit() and entry.is_dir():
            versions[int(entry.name)] = entry
    return versions
