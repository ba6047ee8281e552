"""A Locust gRPC user for TF Serving's Predict, in the shape of Locust's own gRPC example.

gRPC's sync stack is patched for gevent (grpc.experimental.gevent.init_gevent()), each user holds
a channel and a stub, and every call fires Locust's request event with the time it took.
Settings come from the environment: PEER_MODEL, PEER_RATE_PER_USER (0 = back to back).
Run: locust -f benchmarks/peers/locust_grpc.py --headless --host HOST:PORT ...
"""

from __future__ import annotations

import os
import time

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, constant_throughput, task

from benchmarks.peers.pacing import predict_request
from core.wire import protos

grpc_gevent.init_gevent()

RATE_PER_USER = float(os.environ.get("PEER_RATE_PER_USER", "0"))
REQUEST = predict_request(os.environ.get("PEER_MODEL", "half_plus_two"))


class PredictUser(User):
    """Calls Predict over one channel, paced by constant_throughput when a rate is set."""

    wait_time = constant_throughput(RATE_PER_USER) if RATE_PER_USER else constant(0)

    def on_start(self) -> None:
        """Open this user's channel."""
        self.channel = grpc.insecure_channel(self.host)
        self.stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def on_stop(self) -> None:
        """Close it."""
        self.channel.close()

    @task
    def predict(self) -> None:
        """One Predict, reported to Locust's statistics."""
        began = time.perf_counter()
        error: Exception | None = None
        try:
            self.stub.Predict(REQUEST, timeout=10)
        except grpc.RpcError as rpc_error:
            error = rpc_error
        self.environment.events.request.fire(
            request_type="grpc",
            name="Predict",
            response_time=(time.perf_counter() - began) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
