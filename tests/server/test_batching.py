"""server.batching: TF Serving's batching parameters and batch scheduling, with numpy models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.batching import (
    QUEUE_FULL_MESSAGE,
    BatchingConfigError,
    BatchingError,
    BatchingParameters,
    BatchScheduler,
    load_batching_parameters,
    parse_batching_parameters,
)
from server.metrics import ServerMetrics
from server.run_placement import INLINE_BUDGET_S, MIN_SAMPLES, RunPlacement

BRIEF_EXAMPLE = """
max_batch_size { value: 128 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 8 }
allowed_batch_sizes: 32
allowed_batch_sizes: 64
allowed_batch_sizes: 128
pad_variable_length_inputs: true
"""


class RecordingModel:
    """A numpy "model": doubles x and sums its rows; records each batch; can hold its first run."""

    def __init__(self, hold_first_run: bool = False) -> None:
        self.batches: list[dict[str, np.ndarray]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first_run:
            self.release.set()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append({name: value.copy() for name, value in inputs.items()})
        self.started.set()
        assert self.release.wait(10), "the test never released the held batch"
        x = inputs["x"]
        if np.any(x < 0):
            raise ValueError("negative input")
        return {"doubled": x * 2, "row_sum": x.sum(axis=tuple(range(1, x.ndim)))}

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch["x"]) for batch in self.batches]


def rows(*values: float, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.array([[value] * width for value in values], dtype=np.float32)}


def params(**overrides: object) -> BatchingParameters:
    values: dict[str, object] = {
        "max_batch_size": 8,
        "batch_timeout_micros": 0,
        "max_enqueued_batches": 100,
        "num_batch_threads": 1,
        "thread_pool_name": "test_batch_threads",
    }
    values.update(overrides)
    return BatchingParameters(**values)  # type: ignore[arg-type]


@pytest.fixture
def held_model() -> Iterator[RecordingModel]:
    model = RecordingModel(hold_first_run=True)
    yield model
    model.release.set()  # never leave a batch thread blocked


async def start_held_batch(scheduler: BatchScheduler, model: RecordingModel) -> asyncio.Task:
    """Submit one row and wait until its batch holds the only batch thread."""
    running = asyncio.ensure_future(scheduler.submit(rows(100)))
    assert await asyncio.to_thread(model.started.wait, 10)
    return running


class FixedPlacement(RunPlacement):
    """Calls every batch short (or long) from the first one on; keeps the recorded run times."""

    def __init__(self, short: bool) -> None:
        super().__init__()
        self.is_short = short
        self.recorded: list[float] = []

    def short(self, key: Hashable) -> bool:
        return self.is_short

    def record(self, key: Hashable, run_s: float) -> None:
        self.recorded.append(run_s)


class ThreadRecordingModel(RecordingModel):
    """A RecordingModel that also notes the thread of each run, and can take its time."""

    def __init__(self, run_s: float = 0.0, hold_first_run: bool = False) -> None:
        super().__init__(hold_first_run)
        self.run_s = run_s
        self.threads: list[threading.Thread] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.append(threading.current_thread())
        if self.run_s:
            time.sleep(self.run_s)
        return super().__call__(inputs)


# --- the parameters file ---------------------------------------------------------------------


def test_parses_tf_serving_text_format() -> None:
    parsed = parse_batching_parameters(BRIEF_EXAMPLE)
    assert parsed.max_batch_size == 128
    assert parsed.batch_timeout_micros == 0
    assert parsed.max_enqueued_batches == 1_000_000
    assert parsed.num_batch_threads == 8
    assert parsed.allowed_batch_sizes == (32, 64, 128)
    assert parsed.pad_variable_length_inputs is True
    assert parsed.enable_large_batch_splitting is False


def test_unset_fields_take_tf_serving_defaults() -> None:
    parsed = parse_batching_parameters("max_batch_size { value: 16 }")
    assert parsed.max_batch_size == 16
    assert parsed.batch_timeout_micros == 0
    assert parsed.max_enqueued_batches == 10
    assert parsed.num_batch_threads >= 1
    assert parsed.thread_pool_name == "batch_threads"
    # No file at all: tensorflow_model_server names its pool itself.
    assert BatchingParameters().thread_pool_name == "model_server_batch_threads"
    assert BatchingParameters().max_batch_size == 1000


def test_loads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "batching.txt"
    path.write_text(
        'thread_pool_name { value: "pool" } enable_large_batch_splitting { value: true }\n'
        "max_batch_size { value: 64 } max_execution_batch_size { value: 16 }\n"
    )
    loaded = load_batching_parameters(path)
    assert loaded.thread_pool_name == "pool"
    assert loaded.enable_large_batch_splitting is True
    assert loaded.execution_batch_size == 16


def test_syntax_error_names_the_file_and_the_parser_message(tmp_path: Path) -> None:
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 32 }\nmax_batch_sise { value: 8 }\n")
    with pytest.raises(BatchingConfigError) as raised:
        load_batching_parameters(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: Error parsing text-format tensorflow.serving.")
    assert "2:" in message and "max_batch_sise" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(BatchingConfigError, match=r"nope\.txt: cannot read"):
        load_batching_parameters(missing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "max_batch_size { value: 64 } allowed_batch_sizes: 32 allowed_batch_sizes: 16 "
            "allowed_batch_sizes: 64",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        (
            "max_batch_size { value: 64 } allowed_batch_sizes: 16 allowed_batch_sizes: 32",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 32; "
            "expected 64",
        ),
        (
            "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 16 } allowed_batch_sizes: 8",
            "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last "
            "entry was 8; expected 16",
        ),
        ("max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"),
        ("num_batch_threads { value: -1 }", "num_batch_threads must be positive; was -1"),
    ],
)
def test_tf_serving_checks(text: str, expected: str) -> None:
    with pytest.raises(BatchingConfigError) as raised:
        parse_batching_parameters(text, "batching.txt")
    assert str(raised.value) == f"batching.txt: {expected}"


# --- scheduling --------------------------------------------------------------------------------


async def test_concurrent_callers_are_merged_and_split_back() -> None:
    model = RecordingModel()
    async with BatchScheduler(model, params(max_batch_size=32), model_name="m") as scheduler:
        requests = [rows(float(index), width=3) for index in range(200)]
        results = await asyncio.gather(*(scheduler.submit(request) for request in requests))
    assert max(model.batch_sizes) > 1
    assert sum(model.batch_sizes) == 200
    assert max(model.batch_sizes) <= 32
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["doubled"], request["x"] * 2)
        np.testing.assert_array_equal(result["row_sum"], request["x"].sum(axis=1))


async def test_tasks_of_different_sizes_split_correctly(held_model: RecordingModel) -> None:
    async with BatchScheduler(held_model, params(), model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        waiting = [
            asyncio.ensure_future(scheduler.submit(rows(*values)))
            for values in [(1.0,), (2.0, 3.0, 4.0), (5.0, 6.0)]
        ]
        await asyncio.sleep(0)  # let the three submits reach the queue
        assert scheduler.num_enqueued_batches == 1
        held_model.release.set()
        results = await asyncio.gather(*waiting)
        await held
    assert held_model.batch_sizes == [1, 6]
    assert [result["row_sum"].tolist() for result in results] == [[2], [4, 6, 8], [10, 12]]


async def test_pads_to_the_next_allowed_batch_size_and_drops_the_padding() -> None:
    model = RecordingModel()
    metrics = ServerMetrics()
    settings = params(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    async with BatchScheduler(model, settings, model_name="m", metrics=metrics) as scheduler:
        result = await scheduler.submit(rows(1.0, 2.0, 3.0))
    assert model.batch_sizes == [4]
    # The padding row repeats the (last) task's first row.
    np.testing.assert_array_equal(model.batches[0]["x"][3], [1.0, 1.0])
    assert result["row_sum"].tolist() == [2.0, 4.0, 6.0]
    body, _ = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    padding = families[":tensorflow:serving:batching_session:padding_size"]
    sums = {s.labels["execution_batch_size"]: s.value for s in padding.samples if "_sum" in s.name}
    assert sums == {"4": 1.0}


async def test_pad_variable_length_inputs(held_model: RecordingModel) -> None:
    settings = params(pad_variable_length_inputs=True)
    async with BatchScheduler(held_model, settings, model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        short = asyncio.ensure_future(scheduler.submit({"x": np.array([[7.0, 1.0]])}))
        long = asyncio.ensure_future(scheduler.submit({"x": np.array([[1.0, 2.0, 3.0]])}))
        await asyncio.sleep(0)
        held_model.release.set()
        short_result, long_result = await asyncio.gather(short, long)
        await held
    merged = held_model.batches[1]["x"]
    # Padded in dim 1 with the short tensor's own first element, as TF Serving does.
    np.testing.assert_array_equal(merged, [[7.0, 1.0, 7.0], [1.0, 2.0, 3.0]])
    assert short_result["doubled"].shape == (1, 3)
    assert long_result["row_sum"].tolist() == [6.0]


async def test_pad_variable_length_string_inputs() -> None:
    seen: list[np.ndarray] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(inputs["tokens"])
        return {"first": inputs["tokens"][:, 0]}

    settings = params(pad_variable_length_inputs=True, num_batch_threads=1)
    blocker = threading.Event()
    started = threading.Event()

    def held_run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not started.is_set():
            started.set()
            assert blocker.wait(10)
        return run(inputs)

    try:
        async with BatchScheduler(held_run, settings, model_name="m") as scheduler:
            held = asyncio.ensure_future(scheduler.submit({"tokens": np.array([[b"x"]], object)}))
            assert await asyncio.to_thread(started.wait, 10)
            first = scheduler.submit({"tokens": np.array([[b"a", b"b", b"c"]], dtype=object)})
            second = scheduler.submit({"tokens": np.array([[b"d"]], dtype=object)})
            pending = asyncio.gather(first, second)
            await asyncio.sleep(0)
            blocker.set()
            results = await pending
            await held
    finally:
        blocker.set()
    assert seen[1].tolist() == [[b"a", b"b", b"c"], [b"d", b"d", b"d"]]
    assert [result["first"].tolist() for result in results] == [[b"a"], [b"d"]]


async def test_mismatched_shapes_without_padding_run_apart(held_model: RecordingModel) -> None:
    async with BatchScheduler(held_model, params(), model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        narrow = asyncio.ensure_future(scheduler.submit(rows(1.0, width=2)))
        wide = asyncio.ensure_future(scheduler.submit(rows(1.0, width=5)))
        await asyncio.sleep(0)
        held_model.release.set()
        narrow_result, wide_result = await asyncio.gather(narrow, wide)
        await held
    # One batch from the queue, run as two merges: neither caller fails because of the other.
    assert sorted(held_model.batch_sizes[1:]) == [1, 1]
    assert narrow_result["row_sum"].tolist() == [2.0]
    assert wide_result["row_sum"].tolist() == [5.0]


async def test_queued_request_past_its_deadline_is_dropped(held_model: RecordingModel) -> None:
    async with BatchScheduler(held_model, params(), model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(42.0), deadline=time.monotonic() + 0.05)
        assert raised.value.code == "DEADLINE_EXCEEDED"
        assert "waiting in batching queue" in raised.value.message
        survivor = asyncio.ensure_future(scheduler.submit(rows(1.0)))
        await asyncio.sleep(0)
        held_model.release.set()
        await held
        assert (await survivor)["row_sum"].tolist() == [2.0]
    # The expired rows never reached the model.
    assert all(42.0 not in batch["x"] for batch in held_model.batches)


async def test_deadline_already_passed_fails_at_once() -> None:
    model = RecordingModel()
    async with BatchScheduler(model, params(), model_name="m") as scheduler:
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(1.0), deadline=time.monotonic() - 1)
    assert raised.value.code == "DEADLINE_EXCEEDED"
    assert model.batches == []


async def test_full_queue_answers_unavailable(held_model: RecordingModel) -> None:
    settings = params(max_batch_size=2, max_enqueued_batches=2)
    async with BatchScheduler(held_model, settings, model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        queued = [asyncio.ensure_future(scheduler.submit(rows(1.0, 2.0))) for _ in range(2)]
        await asyncio.sleep(0)
        assert scheduler.num_enqueued_batches == 2
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(3.0, 4.0))
        assert raised.value.code == "UNAVAILABLE"
        assert raised.value.message.startswith(QUEUE_FULL_MESSAGE)
        held_model.release.set()
        await held
        assert [(await task)["row_sum"].tolist() for task in queued] == [[2, 4], [2, 4]]


async def test_oversize_task_is_invalid_argument() -> None:
    model = RecordingModel()
    async with BatchScheduler(model, params(max_batch_size=4), model_name="m") as scheduler:
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(1, 2, 3, 4, 5))
    assert raised.value.code == "INVALID_ARGUMENT"
    assert raised.value.message == "Task size 5 is larger than maximum input batch size 4"
    assert str(raised.value).startswith("INVALID_ARGUMENT: Task size 5")


async def test_large_batch_splitting_runs_pieces_and_joins_them() -> None:
    model = RecordingModel()
    settings = params(
        max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=3
    )
    async with BatchScheduler(model, settings, model_name="m") as scheduler:
        request = rows(*range(7))
        result = await scheduler.submit(request)
    assert sorted(model.batch_sizes) == [1, 3, 3]
    np.testing.assert_array_equal(result["doubled"], request["x"] * 2)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, "Batching Run() must have at least one input tensor"),
        ({"x": np.float32(1.0)}, "Batching Run() input tensors must have at least one dimension"),
        (
            {"x": np.zeros((2, 1)), "y": np.zeros((3, 1))},
            "Batching Run() input tensors must have equal 0th-dimension size",
        ),
    ],
)
async def test_malformed_tasks_are_invalid_argument(
    inputs: Mapping[str, np.ndarray], expected: str
) -> None:
    async with BatchScheduler(RecordingModel(), params(), model_name="m") as scheduler:
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(inputs)
    assert (raised.value.code, raised.value.message) == ("INVALID_ARGUMENT", expected)


async def test_run_batch_error_reaches_only_that_batchs_callers(
    held_model: RecordingModel,
) -> None:
    settings = params(max_batch_size=2)
    async with BatchScheduler(held_model, settings, model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        bad = asyncio.ensure_future(scheduler.submit(rows(-1.0)))
        unlucky = asyncio.ensure_future(scheduler.submit(rows(1.0)))  # same batch as bad
        fine = asyncio.ensure_future(scheduler.submit(rows(2.0)))  # next batch
        await asyncio.sleep(0)
        held_model.release.set()
        outcomes = await asyncio.gather(bad, unlucky, fine, return_exceptions=True)
        await held
    assert isinstance(outcomes[0], ValueError) and isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], dict) and outcomes[2]["row_sum"].tolist() == [4.0]


async def test_wrong_output_rows_are_failed_precondition() -> None:
    def broken(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.zeros(len(inputs["x"]) + 1)}

    async with BatchScheduler(broken, params(), model_name="m") as scheduler:
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(1.0))
    assert raised.value.code == "FAILED_PRECONDITION"


async def test_cancelled_caller_is_not_run(held_model: RecordingModel) -> None:
    async with BatchScheduler(held_model, params(), model_name="m") as scheduler:
        held = await start_held_batch(scheduler, held_model)
        gone = asyncio.ensure_future(scheduler.submit(rows(13.0)))
        staying = asyncio.ensure_future(scheduler.submit(rows(1.0)))
        await asyncio.sleep(0)
        gone.cancel()
        held_model.release.set()
        assert (await staying)["row_sum"].tolist() == [2.0]
        await held
    assert gone.cancelled()
    assert all(13.0 not in batch["x"] for batch in held_model.batches)


async def test_empty_task_runs_alone() -> None:
    model = RecordingModel()
    async with BatchScheduler(model, params(allowed_batch_sizes=(4, 8)), model_name="m") as sched:
        result = await sched.submit({"x": np.zeros((0, 2), np.float32)})
    assert result["doubled"].shape == (0, 2)
    assert model.batch_sizes == [0]


async def test_close_runs_what_is_queued_then_refuses(held_model: RecordingModel) -> None:
    settings = params(batch_timeout_micros=60_000_000)
    scheduler = BatchScheduler(held_model, settings, model_name="m")
    # A long batch timeout: only close() makes the open batch run.
    queued = asyncio.ensure_future(scheduler.submit(rows(1.0)))
    await asyncio.sleep(0)
    assert held_model.batches == []
    held_model.release.set()
    await scheduler.close()
    assert (await queued)["row_sum"].tolist() == [2.0]
    with pytest.raises(BatchingError) as raised:
        await scheduler.submit(rows(1.0))
    assert raised.value.code == "UNAVAILABLE"


async def test_batch_timeout_closes_a_partial_batch() -> None:
    model = RecordingModel()
    # Long enough that all five submits (one event-loop pass) land before it fires.
    settings = params(batch_timeout_micros=100_000, max_batch_size=64)
    async with BatchScheduler(model, settings, model_name="m") as scheduler:
        results = await asyncio.gather(*(scheduler.submit(rows(1.0)) for _ in range(5)))
    # Nothing filled the batch: the timeout ran it with all five waiting tasks.
    assert model.batch_sizes == [5]
    assert len(results) == 5


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
async def test_records_batching_metrics(inline: bool) -> None:
    model = RecordingModel()
    metrics = ServerMetrics()
    settings = params(max_batch_size=4, batch_timeout_micros=60_000_000)
    async with BatchScheduler(
        model, settings, model_name="m", metrics=metrics, placement=FixedPlacement(short=inline)
    ) as scheduler:
        await asyncio.gather(*(scheduler.submit(rows(1.0)) for _ in range(4)))
    body, _ = metrics.render()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    prefix = ":tensorflow:serving:batching_session:"
    assert values[(prefix + "input_batch_size_count", ())] == 4
    assert values[(prefix + "processed_batch_size_sum", ())] == 4
    assert values[(prefix + "processed_batch_size_count", ())] == 1
    assert (
        values[(prefix + "queuing_latency_count", (("thread_pool_name", "test_batch_threads"),))]
        == 4
    )


# --- where batches run -----------------------------------------------------------------------


async def test_short_batches_run_on_the_event_loop_after_their_first_runs_in_threads() -> None:
    model = ThreadRecordingModel()
    # The real placement rules, with a budget no run on a busy test machine can miss.
    placement = RunPlacement(budget_s=1.0)
    async with BatchScheduler(model, params(), model_name="m", placement=placement) as scheduler:
        for index in range(MIN_SAMPLES + 3):
            assert (await scheduler.submit(rows(float(index))))["row_sum"].tolist() == [2 * index]
    loop_thread = threading.current_thread()
    # The first runs measure the batch's cost in a batch thread; then it is known short.
    assert all(
        thread.name.startswith("test_batch_threads") for thread in model.threads[:MIN_SAMPLES]
    )
    assert model.threads[MIN_SAMPLES:] == [loop_thread] * 3


async def test_slow_batches_keep_running_in_batch_threads() -> None:
    model = ThreadRecordingModel(run_s=INLINE_BUDGET_S * 4)
    async with BatchScheduler(model, params(), model_name="m") as scheduler:
        for _ in range(MIN_SAMPLES + 3):
            await scheduler.submit(rows(1.0))
    assert len(model.threads) == MIN_SAMPLES + 3
    assert all(thread.name.startswith("test_batch_threads") for thread in model.threads)


async def test_large_batches_run_in_a_batch_thread_even_when_short() -> None:
    model = ThreadRecordingModel()
    placement = FixedPlacement(short=True)
    async with BatchScheduler(model, params(), model_name="m", placement=placement) as scheduler:
        await scheduler.submit(rows(1.0))
        await scheduler.submit(rows(1.0, width=20_000))  # 80 KB of inputs
    assert model.threads[0] is threading.current_thread()
    assert model.threads[1].name.startswith("test_batch_threads")
    assert len(placement.recorded) == 2  # both runs feed the estimate


async def test_inline_batch_still_waits_for_its_batch_timeout() -> None:
    model = ThreadRecordingModel()
    settings = params(batch_timeout_micros=50_000, max_batch_size=64)
    placement = FixedPlacement(short=True)
    async with BatchScheduler(model, settings, model_name="m", placement=placement) as scheduler:
        started = time.monotonic()
        await scheduler.submit(rows(1.0))
        assert time.monotonic() - started >= 0.05
        results = await asyncio.gather(*(scheduler.submit(rows(2.0)) for _ in range(3)))
    assert model.batch_sizes == [1, 3]
    assert model.threads == [threading.current_thread()] * 2
    assert [result["row_sum"].tolist() for result in results] == [[4.0]] * 3


async def test_inline_batch_error_reaches_every_caller() -> None:
    model = ThreadRecordingModel()
    placement = FixedPlacement(short=True)
    # The second task fills the batch: it runs inline in that task's submit.
    settings = params(max_batch_size=2, batch_timeout_micros=60_000_000)
    async with BatchScheduler(model, settings, model_name="m", placement=placement) as scheduler:
        outcomes = await asyncio.gather(
            scheduler.submit(rows(-1.0)), scheduler.submit(rows(1.0)), return_exceptions=True
        )
    assert model.batch_sizes == [2]
    assert model.threads == [threading.current_thread()]
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)


async def test_inline_batches_count_against_num_batch_threads() -> None:
    model = ThreadRecordingModel(hold_first_run=True)
    placement = FixedPlacement(short=False)
    try:
        async with BatchScheduler(model, params(), model_name="m", placement=placement) as sched:
            held = await start_held_batch(sched, model)
            placement.is_short = True
            waiting = asyncio.ensure_future(sched.submit(rows(1.0)))
            for _ in range(3):
                await asyncio.sleep(0)
            # The only batch thread is busy: the short batch waits instead of running inline.
            assert len(model.batches) == 1
            assert sched.num_enqueued_batches == 1
            model.release.set()
            await held
            assert (await waiting)["row_sum"].tolist() == [2.0]
    finally:
        model.release.set()
    assert model.threads[1] is threading.current_thread()


async def test_deadline_passing_while_a_batch_runs_is_deadline_exceeded(
    held_model: RecordingModel,
) -> None:
    async with BatchScheduler(held_model, params(), model_name="m") as scheduler:
        with pytest.raises(BatchingError) as raised:
            await scheduler.submit(rows(1.0), deadline=time.monotonic() + 0.05)
        held_model.release.set()
    assert (raised.value.code, raised.value.message) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
    assert held_model.batch_sizes == [1]


async def test_close_runs_queued_short_batches_inline() -> None:
    model = ThreadRecordingModel()
    settings = params(batch_timeout_micros=60_000_000)
    scheduler = BatchScheduler(model, settings, model_name="m", placement=FixedPlacement(True))
    queued = asyncio.ensure_future(scheduler.submit(rows(1.0)))
    await asyncio.sleep(0)
    assert model.batches == []
    await scheduler.close()
    assert (await queued)["row_sum"].tolist() == [2.0]
    assert model.threads == [threading.current_thread()]
