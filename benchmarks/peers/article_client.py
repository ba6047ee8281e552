"""The seed article's client pattern: a thread pool, each task running asyncio.run(...) on grpc.aio.

As printed, one grpc.aio channel and stub are created at module level and every pool task runs
`asyncio.run(stub.Predict(...))`; each asyncio.run makes a new event loop, and the channel is tied
to the loop it first ran on, so every call after the first fails with "got Future attached to a
different loop" (`--as-printed` shows it). The one fix that keeps the pattern: open the channel
inside the coroutine, so each asyncio.run gets its own channel (and its own connection).
With --rate the main thread submits on schedule; each task times itself from when it starts.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import grpc.aio

from benchmarks.peers.pacing import parse_args, predict_request, print_summary
from core.wire import protos


async def predict_once(target: str, request: object) -> object:
    """One request as the article sends it, with the channel opened in this event loop."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return await stub.Predict(request, timeout=10)


def as_printed(target: str, model: str) -> None:
    """The article's code with its module-level channel: prints what each call raises."""
    channel = grpc.aio.insecure_channel(target)
    stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(model)

    async def predict() -> object:
        return await stub.Predict(request, timeout=10)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(asyncio.run, predict()) for _ in range(4)]:
            try:
                future.result()
                print("ok")
            except Exception as error:
                # The message names the task and the future in full; keep what it says of them.
                message = re.sub(r"Task <.*> got Future <.*> attached",
                                 "Task <...> got Future <...> attached", str(error))  # fmt: skip
                print(f"{type(error).__name__}: {message[:160]}")


def main() -> None:
    """Run the pattern and print its summary line."""
    if "--as-printed" in sys.argv:
        sys.argv.remove("--as-printed")
        args = parse_args(__doc__ or "")
        as_printed(args.target, args.model)
        return
    args = parse_args(__doc__ or "")
    workers = args.concurrency or args.workers
    request = predict_request(args.model)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def timed_request() -> None:
        nonlocal errors
        begin = time.perf_counter()
        try:
            asyncio.run(predict_once(args.target, request))
            with lock:
                latencies.append(time.perf_counter() - begin)
        except grpc.RpcError:
            with lock:
                errors += 1

    started = time.perf_counter()
    end_at = started + args.duration
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        if args.rate:
            sent = 0
            while (now := time.perf_counter()) < end_at:
                due = int((now - started) * args.rate) + 1
                for _ in range(due - sent):
                    pool.submit(timed_request)
                sent = max(sent, due)
                time.sleep(min(0.002, 1 / args.rate))
        else:
            slots = threading.Semaphore(workers)

            def release(_: Future[None]) -> None:
                slots.release()

            while time.perf_counter() < end_at:
                if slots.acquire(timeout=0.05):
                    pool.submit(timed_request).add_done_callback(release)
    finally:
        # Tasks still queued at the end were never started: drop them, as Ctrl-C would.
        pool.shutdown(wait=True, cancel_futures=True)
    print_summary(latencies, errors, time.perf_counter() - started)


if __name__ == "__main__":
    main()
