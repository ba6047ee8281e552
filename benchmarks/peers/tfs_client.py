"""TF Serving's example client pattern: a synchronous PredictionServiceStub from a thread pool.

As tensorflow_serving/example/resnet_client_grpc.py calls it (`stub.Predict(request, 10.0)` on a
`grpc.insecure_channel`) and mnist_client.py runs several at once (a concurrency limit); here a
ThreadPoolExecutor of workers share one channel. Each worker times its own calls; with --rate it
sleeps between calls to keep its share of the rate (no catch-up, as hey's -q does).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from benchmarks.peers.pacing import parse_args, predict_request, print_summary
from core.wire import protos


def main() -> None:
    """Run the pattern and print its summary line."""
    args = parse_args(__doc__ or "")
    workers = args.concurrency or args.workers
    interval = workers / args.rate if args.rate else 0.0
    channel = grpc.insecure_channel(args.target)
    stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(args.model)
    started = time.time()
    end_at = started + args.duration

    def caller(_: int) -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        while time.time() < end_at:
            begin = time.time()
            try:
                stub.Predict(request, 10.0)  # 10 secs timeout, as the example
                latencies.append(time.time() - begin)
            except grpc.RpcError:
                errors += 1
            if interval:
                time.sleep(max(0.0, interval - (time.time() - begin)))
        return latencies, errors

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(caller, range(workers)))
    elapsed = time.time() - started
    print_summary([s for latencies, _ in results for s in latencies],
                  sum(e for _, e in results), elapsed)  # fmt: skip
    channel.close()


if __name__ == "__main__":
    main()
