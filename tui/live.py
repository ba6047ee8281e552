"""The console's background loops: model polling with reconnect backoff, the fleet's figures
and memory.

They run as Textual workers and only post messages (never touch widgets), so they take a
``post`` callable rather than the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.message import Message

from core.chat.session import ChatSession
from core.client.errors import is_unreachable
from core.client.monitor import Backoff, ModelMonitor, process_rss_bytes
from core.client.serving import ServingError
from tui.messages import (
    FleetSampled,
    MetricsSampled,
    ModelProblem,
    ModelStateChanged,
    ServerStateChanged,
)

if TYPE_CHECKING:
    from core.fleet.sampler import FleetSampler


async def poll_model(
    get_monitor: Callable[[], ModelMonitor | None],
    post: Callable[[Message], object],
    *,
    interval_s: float = 1.0,
    backoff: Backoff | None = None,
) -> None:
    """Poll the model forever; mark the server down and back off while it is unreachable."""
    backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
    while True:
        monitor = get_monitor()
        delay = interval_s
        if monitor is not None:
            try:
                state = await monitor.poll()
            except ServingError as error:
                if is_unreachable(error.code):
                    delay = backoff.next_delay()
                    post(
                        ServerStateChanged("down", f"{error.code} · reconnecting in {delay:.1f} s")
                    )
                else:
                    backoff.reset()
                    post(ServerStateChanged("up"))
                    post(ModelProblem(error.code, error.message))
            else:
                backoff.reset()
                post(ServerStateChanged("up"))
                post(ModelStateChanged(state))
        await asyncio.sleep(delay)


async def sample_memory(
    session: ChatSession,
    post: Callable[[Message], object],
    *,
    interval_s: float = 1.0,
) -> None:
    """Sample the console's and the embedded server's memory, once per interval, forever."""
    while True:
        pid = session.server_pid
        server_rss = await asyncio.to_thread(process_rss_bytes, pid) if pid else None
        post(MetricsSampled(process_rss_bytes(), server_rss))
        await asyncio.sleep(interval_s)


def fleet_sampler_for(session: ChatSession, *, window_s: float) -> FleetSampler:
    """The sampler of the servers the session talks to: the embedded one, or the targets with
    their configured metrics URLs, max batch sizes and Prometheus. ValueError when none."""
    from core.fleet.setup import fleet_sampler

    config = session.config
    tfs = config.model_serving.tensorflow_serving
    if session.server is not None:
        metrics = session.metrics_url
        return fleet_sampler(
            config,
            targets=session.targets,
            metrics_urls=(metrics,) if metrics else (),
            max_batch_sizes=(config.embedded.max_batch_size,),
            window_s=window_s,
        )
    metrics_urls = tuple(tfs.metrics_urls)
    if not metrics_urls and len(session.targets) == 1 and session.metrics_url:
        metrics_urls = (session.metrics_url,)  # one server whose REST URL was given
    return fleet_sampler(
        config,
        targets=session.targets,
        metrics_urls=metrics_urls,
        max_batch_sizes=tfs.max_batch_sizes,
        prometheus_url=tfs.prometheus_url,
        window_s=window_s,
    )


class FleetWatch:
    """Samples the fleet on a timer rescheduled after each sample (never two at once), in its
    own thread and event loop so parsing a large fleet's metrics never blocks the UI.

    `run` is a thread worker's body; it posts FleetSampled and stops when `stopped()` says so.
    """

    def __init__(
        self,
        make_sampler: Callable[[], FleetSampler],
        post: Callable[[Message], object],
        *,
        model_name: Callable[[], str],
        paused: Callable[[], bool],
        stopped: Callable[[], bool],
        interval_s: float = 1.0,
    ) -> None:
        self.make_sampler = make_sampler
        self.post = post
        self.model_name = model_name
        self.paused = paused
        self.stopped = stopped
        self.interval_s = interval_s
        self.samples = 0

    def run(self) -> None:
        """Sample until stopped (blocks: run it in a thread)."""
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        try:
            sampler = self.make_sampler()
        except ValueError as error:
            self.post(FleetSampled(None, str(error)))
            return
        try:
            while not self.stopped():
                started = time.monotonic()
                if not self.paused():
                    sampler.model_name = self.model_name()
                    try:
                        snapshot = await sampler.sample()
                    except Exception as error:  # a sampler bug must not end the watch
                        self.post(FleetSampled(None, f"sampling failed: {error}"))
                    else:
                        self.samples += 1
                        self.post(FleetSampled(snapshot))
                # The next sample is due one interval after this one started, never sooner
                # than this one ended; checked often so quitting is quick.
                due = started + self.interval_s
                while not self.stopped() and time.monotonic() < due:
                    await asyncio.sleep(min(0.1, max(due - time.monotonic(), 0.0)))
        finally:
            await sampler.close()
