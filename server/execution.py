"""Runs signatures of loaded models off the event loop: a thread pool, or batch schedulers."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from server import errors
from server.errors import ServingStatus
from server.run_placement import RunPlacement
from server.shedding import InflightLimit, default_max_inflight

log = logging.getLogger("deepchat_tfs.server.execution")


def _run_tensors(
    servable: Any, feeds: Mapping[str, np.ndarray], fetches: Sequence[str], timeout_ms: int | None
) -> list[np.ndarray]:
    try:
        return list(servable.run(feeds, fetches, timeout_ms=timeout_ms))
    except ServingStatus:
        raise
    except Exception as error:
        raise errors.status_from_tf_error(error) from None


def _status_code(code_name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code_name, grpc.StatusCode.UNKNOWN)


class SignatureRunner:
    """Runs one signature of one servable from arrays by alias (what a batch scheduler calls)."""

    def __init__(
        self,
        servable: Any,
        signature: Any,
        output_aliases: Sequence[str],
        metrics: Any = None,
        api: str = "Predict",
    ) -> None:
        self.servable = servable
        self.signature = signature
        self.output_aliases = tuple(output_aliases)
        self._fetches = [signature.outputs[alias].name for alias in self.output_aliases]
        # Feed tensor names by input alias, read once instead of from the SignatureDef per run.
        self._feed_names = {alias: info.name for alias, info in signature.inputs.items()}
        self._metrics = metrics
        self._api = api

    def __call__(
        self, inputs: Mapping[str, np.ndarray], timeout_ms: int | None = None
    ) -> dict[str, np.ndarray]:
        """Run on inputs by alias; outputs by alias. Blocks; call from a worker thread."""
        return self.timed(inputs, timeout_ms)[0]

    def timed(
        self, inputs: Mapping[str, np.ndarray], timeout_ms: int | None = None
    ) -> tuple[dict[str, np.ndarray], float]:
        """__call__, and the run's wall time in seconds (one clock for the metric and the
        executor's placement)."""
        feed_names = self._feed_names
        feeds = {feed_names[alias]: array for alias, array in inputs.items()}
        started = time.perf_counter()
        outputs = _run_tensors(self.servable, feeds, self._fetches, timeout_ms)
        run_s = time.perf_counter() - started
        if self._metrics is not None:
            # "TF1": a session run, the runtime label TF Serving uses for SavedModel bundles.
            self._metrics.record_runtime(self.servable.name, self._api, "TF1", run_s * 1e6)
        return dict(zip(self.output_aliases, outputs, strict=True)), run_s


class Executor:
    """Where session runs happen: a bounded thread pool, and batch schedulers when enabled."""

    def __init__(
        self,
        *,
        max_threads: int,
        batching_parameters: Any = None,
        metrics: Any = None,
        max_inflight: int = 0,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="session-run")
        # Unbatched runs beyond this many (running or queued) are shed with UNAVAILABLE.
        self.inflight = InflightLimit(max_inflight or default_max_inflight(max_threads))
        self._batching_parameters = batching_parameters
        self._metrics = metrics
        # One scheduler per (servable, signature, outputs), like TF Serving's batching session.
        self._schedulers: dict[tuple[int, str, tuple[str, ...]], Any] = {}
        self._runners: dict[tuple[int, str, tuple[str, ...]], SignatureRunner] = {}
        self._placement = RunPlacement()

    @property
    def batching(self) -> bool:
        """Whether requests are merged by batch schedulers."""
        return self._batching_parameters is not None

    async def run(
        self,
        servable: Any,
        signature_name: str,
        signature: Any,
        inputs: Mapping[str, np.ndarray],
        output_aliases: Sequence[str],
        *,
        deadline: float | None,
        api: str,
    ) -> dict[str, np.ndarray]:
        """Run a signature on inputs by alias; outputs by alias. deadline is time.monotonic()."""
        aliases = tuple(output_aliases)
        inline = self.run_inline(servable, signature_name, inputs, aliases, deadline)
        if inline is not None:
            return inline
        return await self.run_queued(
            servable, signature_name, signature, inputs, aliases, deadline=deadline, api=api
        )

    async def run_queued(
        self,
        servable: Any,
        signature_name: str,
        signature: Any,
        inputs: Mapping[str, np.ndarray],
        output_aliases: Sequence[str],
        *,
        deadline: float | None,
        api: str,
    ) -> dict[str, np.ndarray]:
        """run() for a run that run_inline() declined: through the batch scheduler, or in a
        thread of the pool."""
        if self._batching_parameters is not None:
            from server.batching import BatchingError

            scheduler = self._scheduler(servable, signature_name, signature, output_aliases, api)
            try:
                outputs: dict[str, np.ndarray] = await scheduler.submit(dict(inputs), deadline)
            except BatchingError as error:
                raise ServingStatus(_status_code(error.code), error.message) from None
            return outputs
        aliases = tuple(output_aliases)
        key = (id(servable), signature_name, aliases)
        runner = self._runners.get(key)
        if runner is None or runner.servable is not servable:
            runner = SignatureRunner(servable, signature, aliases, self._metrics, api)
            self._runners[key] = runner
        timeout_ms = self._timeout_ms(deadline)
        call = functools.partial(runner.timed, inputs, timeout_ms)
        outputs, run_s = await self._in_pool(call, deadline)
        self._placement.record(key, run_s)
        return outputs  # type: ignore[no-any-return]

    def run_inline(
        self,
        servable: Any,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_aliases: tuple[str, ...],
        deadline: float | None,
    ) -> dict[str, np.ndarray] | None:
        """run()'s answer without a coroutine when the run is known short (unbatched, inline
        placement); None when the caller must await run_queued()."""
        if self._batching_parameters is not None:
            return None
        key = (id(servable), signature_name, output_aliases)
        runner = self._runners.get(key)
        if runner is None or runner.servable is not servable:
            return None
        if not self._placement.inline(key, inputs):
            return None
        if deadline is not None and deadline <= time.monotonic():
            raise errors.deadline_exceeded("Deadline Exceeded")
        # No session timeout for a run expected to last well under a millisecond: arming
        # TensorFlow's timer costs more than the run; the deadline was checked just above.
        outputs, run_s = runner.timed(inputs, None)
        self._placement.record(key, run_s)
        return outputs

    async def run_tensors(
        self,
        servable: Any,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        *,
        deadline: float | None,
    ) -> list[np.ndarray]:
        """Run on tensor names directly (MultiInference); never batched, as in TF Serving."""
        call = functools.partial(
            _run_tensors, servable, feeds, list(fetches), self._timeout_ms(deadline)
        )
        return await self._in_pool(call, deadline)

    @staticmethod
    def _timeout_ms(deadline: float | None) -> int | None:
        if deadline is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.deadline_exceeded("Deadline Exceeded")
        return max(1, int(remaining * 1000))

    async def _in_pool(self, call: Any, deadline: float | None) -> Any:
        with self.inflight.admit():
            future = asyncio.get_running_loop().run_in_executor(self._pool, call)
            if deadline is None:
                return await future
            try:
                return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise errors.deadline_exceeded("Deadline Exceeded") from None

    def _scheduler(
        self,
        servable: Any,
        signature_name: str,
        signature: Any,
        output_aliases: Sequence[str],
        api: str,
    ) -> Any:
        key = (id(servable), signature_name, tuple(output_aliases))
        scheduler = self._schedulers.get(key)
        if scheduler is None:
            from server.batching import BatchScheduler

            runner = SignatureRunner(servable, signature, output_aliases, self._metrics, api)
            scheduler = BatchScheduler(
                runner, self._batching_parameters, model_name=servable.name, metrics=self._metrics
            )
            self._schedulers[key] = scheduler
        return scheduler

    async def forget(self, servable: Any) -> None:
        """Close the batch schedulers of a servable that is being unloaded."""
        for key in [key for key in self._runners if key[0] == id(servable)]:
            del self._runners[key]
        self._placement.forget(id(servable))
        for key in [key for key in self._schedulers if key[0] == id(servable)]:
            scheduler = self._schedulers.pop(key)
            await scheduler.close()

    async def close(self) -> None:
        """Close every scheduler and stop the thread pool."""
        for scheduler in list(self._schedulers.values()):
            await scheduler.close()
        self._schedulers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
