"""The hardening pieces on their own: size checks, the in-flight bound, the log filter, rlimit."""

from __future__ import annotations

import asyncio
import logging
import resource

import grpc
import pytest

from benchmarks.hostile_requests import declared_request
from core.wire import protos
from server.errors import ServingStatus, for_resource_error
from server.limits import STRING_ELEMENT_BYTES, RequestLimits, raise_open_file_limit, tensor_bytes
from server.log_limits import RepeatedLineFilter
from server.rest_connections import ConnectionGuard
from server.shedding import InflightLimit, default_max_inflight

DT_FLOAT = protos.types_pb2.DT_FLOAT
DT_STRING = protos.types_pb2.DT_STRING


def _tensor(dtype: int, shape: list[int], values: list[object] | None = None) -> object:
    return declared_request("m", "x", dtype, shape, values).inputs["x"]


def test_tensor_bytes_counts_what_the_fill_rule_builds() -> None:
    assert tensor_bytes("x", _tensor(DT_FLOAT, [1000, 2], [1.0])) == 8000
    assert tensor_bytes("x", _tensor(DT_FLOAT, [0, 5])) == 0
    # Strings: each element's fed cost, and the last string copied into the missing elements.
    assert tensor_bytes("x", _tensor(DT_STRING, [3], [b"ab"])) == 3 * STRING_ELEMENT_BYTES + 6


@pytest.mark.parametrize("shape", [[-1], [2**62, 4], [1] * 255])
def test_shapes_tensorflow_rejects_are_parsing_errors(shape: list[int]) -> None:
    with pytest.raises(ServingStatus) as raised:
        tensor_bytes("x", _tensor(DT_FLOAT, shape, [1.0]))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message == "tensor parsing error: x"


def test_the_ceiling_counts_every_tensor_of_the_request() -> None:
    request = declared_request("m", "a", DT_FLOAT, [100], [1.0])
    request.inputs["b"].CopyFrom(_tensor(DT_FLOAT, [100], [1.0]))
    assert RequestLimits(max_request_tensor_bytes=800).check(request.inputs) == 800
    with pytest.raises(ServingStatus) as raised:
        RequestLimits(max_request_tensor_bytes=799).check(request.inputs)
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.message.startswith("OOM when allocating tensor with shape[100] and type")


def test_task_size_comes_before_the_ceiling_as_in_tf_serving() -> None:
    request = declared_request("m", "x", DT_FLOAT, [10**9, 1], [1.0])
    with pytest.raises(ServingStatus) as raised:
        RequestLimits(max_request_tensor_bytes=1000, max_batch_size=32).check(request.inputs)
    assert raised.value.message == "Task size 1000000000 is larger than maximum input batch size 32"


def test_the_inflight_bound_sheds_past_its_limit_and_frees_slots() -> None:
    limit = InflightLimit(1)
    with limit.admit():
        with pytest.raises(ServingStatus) as raised, limit.admit():
            pass
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    with limit.admit():
        assert limit.inflight == 1
    assert (limit.inflight, limit.shed) == (0, 1)
    assert default_max_inflight(4) == 64


def test_memory_and_recursion_errors_become_plain_statuses() -> None:
    assert for_resource_error(MemoryError()).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = for_resource_error(RecursionError("maximum recursion depth exceeded"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "recursion" not in status.message


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("deepchat_tfs.x", logging.WARNING, __file__, 1, message, (), None)


def test_repeated_log_lines_pass_a_few_times_per_window_then_are_counted() -> None:
    now = [0.0]
    log_filter = RepeatedLineFilter(burst=3, window_s=10, clock=lambda: now[0])
    passed = [log_filter.filter(_record("limit reached (%d)")) for _ in range(100)]
    assert passed.count(True) == 3
    assert log_filter.filter(_record("another line"))
    now[0] = 11.0
    record = _record("limit reached (%d)")
    assert log_filter.filter(record)
    assert record.msg == "limit reached (%d) [97 similar lines suppressed]"


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and soft == hard and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard - 1, hard))
        before, after = raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after
        if hard != resource.RLIM_INFINITY:
            assert after == hard
        assert after >= before
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1), hard))


def test_multi_line_reports_are_grouped_by_their_first_line() -> None:
    log_filter = RepeatedLineFilter(burst=2, window_s=10, clock=lambda: 0.0)
    passed = [
        log_filter.filter(_record(f"socket.accept() out of system resource\nsocket: fd={fd}"))
        for fd in range(50)
    ]
    assert passed.count(True) == 2


class _FakeHandler:
    def __init__(self, busy: bool) -> None:
        self.transport: object | None = object()
        self._current_request = object() if busy else None
        self.closed = False

    def force_close(self) -> None:
        self.closed = True
        self.transport = None


class _FakeServer:
    def __init__(self, handlers: list[_FakeHandler]) -> None:
        self.connections = handlers
        self.made = 0

    def __call__(self) -> object:
        self.made += 1
        return object()


async def test_the_connection_guard_closes_the_oldest_idle_connection_at_the_bound() -> None:
    busy, idle_old, idle_new = _FakeHandler(True), _FakeHandler(False), _FakeHandler(False)
    server = _FakeServer([busy, idle_old, idle_new])
    guard = ConnectionGuard(server, max_connections=3)  # type: ignore[arg-type]
    guard()
    assert (busy.closed, idle_old.closed, idle_new.closed) == (False, True, False)
    assert server.made == 1 and guard.evicted == 1


async def test_the_connection_guard_refuses_with_503_when_every_connection_is_busy() -> None:
    server = _FakeServer([_FakeHandler(True), _FakeHandler(True)])
    guard = ConnectionGuard(server, max_connections=2)  # type: ignore[arg-type]
    protocol = guard()
    assert isinstance(protocol, asyncio.Protocol) and server.made == 0
    written: list[bytes] = []

    class _Transport(asyncio.Transport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            written.append(bytes(data))

        def close(self) -> None:
            written.append(b"<closed>")

    protocol.connection_made(_Transport())
    head, _, body = written[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert f"Content-Length: {len(body)}".encode() in head
    assert written[-1] == b"<closed>"
