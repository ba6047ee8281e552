"""A Locust HttpUser posting TF Serving REST predict bodies.

Settings come from the environment: PEER_MODEL, PEER_RATE_PER_USER (0 = back to back).
Run: locust -f benchmarks/peers/locust_rest.py --headless --host http://HOST:PORT ...
"""

from __future__ import annotations

import os

from locust import HttpUser, constant, constant_throughput, task

RATE_PER_USER = float(os.environ.get("PEER_RATE_PER_USER", "0"))
PATH = f"/v1/models/{os.environ.get('PEER_MODEL', 'half_plus_two')}:predict"
BODY = b'{"instances": [[1.0]]}'


class PredictUser(HttpUser):
    """Posts one predict body per task, paced by constant_throughput when a rate is set."""

    wait_time = constant_throughput(RATE_PER_USER) if RATE_PER_USER else constant(0)

    @task
    def predict(self) -> None:
        """One POST to the model's :predict."""
        self.client.post(PATH, data=BODY, headers={"Content-Type": "application/json"})
