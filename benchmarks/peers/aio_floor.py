"""A reference, not a peer: the least a grpc.aio client can do per request on this machine.

One event loop, one channel without options, raw bytes in and out (no serialization, no
histograms, no worker processes); open loop on a schedule (--rate) or N back-to-back callers
(--concurrency). deepchat-tfs bench's gRPC path sits on this floor plus its own measurement.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio

from benchmarks.peers.pacing import parse_args, predict_request, print_summary

PREDICT = "/tensorflow.serving.PredictionService/Predict"


async def main() -> None:
    """Run the loop and print its summary line."""
    args = parse_args(__doc__ or "")
    payload = predict_request(args.model).SerializeToString()  # type: ignore[attr-defined]
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(args.target) as channel:
        call = channel.unary_unary(PREDICT)

        async def one() -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                await call(payload, timeout=10)
                latencies.append(time.perf_counter() - began)
            except grpc.aio.AioRpcError:
                errors += 1

        started = time.perf_counter()
        end_at = started + args.duration
        if args.rate:
            tasks = set()
            sent = 0
            while (now := time.perf_counter()) < end_at:
                sent += 1
                task = asyncio.ensure_future(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                delay = started + sent / args.rate - now
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.gather(*tasks)
        else:

            async def caller() -> None:
                while time.perf_counter() < end_at:
                    await one()

            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    print_summary(latencies, errors, time.perf_counter() - started)


if __name__ == "__main__":
    asyncio.run(main())
