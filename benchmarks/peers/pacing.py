"""What the thread-pool client scripts share: their command line, the request, the summary line."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence

import numpy as np

from core.wire import protos
from core.wire.tensors import make_tensor_proto


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--target HOST:PORT --model NAME (--rate R --workers W | --concurrency C) --duration S."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--target", required=True, help="PredictionService HOST:PORT")
    parser.add_argument("--model", default="half_plus_two")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="requests per second over all workers")
    mode.add_argument("--concurrency", type=int, help="requests in flight, back to back")
    parser.add_argument("--workers", type=int, default=10, help="pool size with --rate")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    return parser.parse_args(argv)


def predict_request(model: str) -> object:
    """half_plus_two's request: x = [[1.0]]."""
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(make_tensor_proto(np.array([[1.0]], dtype=np.float32)))
    return request


def print_summary(latencies_s: Sequence[float], errors: int, duration_s: float) -> None:
    """One JSON line with what the client itself timed (around each call)."""
    ordered = sorted(latencies_s)

    def percentile(share: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    print(
        json.dumps(
            {
                "requests": len(ordered) + errors,
                "errors": errors,
                "duration_s": duration_s,
                "p50_ms": percentile(0.50),
                "p99_ms": percentile(0.99),
                "max_ms": ordered[-1] * 1000 if ordered else None,
                "mean_ms": statistics.fmean(ordered) * 1000 if ordered else None,
            }
        ),
        flush=True,
    )
