"""The console's background loops: model polling with reconnect backoff, metrics and memory.

They run as Textual workers and only post messages (never touch widgets), so they take a
``post`` callable rather than the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.message import Message

from core.chat.session import ChatSession
from core.client.errors import is_unreachable
from core.client.monitor import Backoff, ModelMonitor, process_rss_bytes
from core.client.scrape import MetricsScraper, ScrapeError, ServerMetrics, server_batching
from core.client.serving import ServingError
from tui.messages import MetricsSampled, ModelProblem, ModelStateChanged, ServerStateChanged


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


async def sample_metrics(
    session: ChatSession,
    get_model_name: Callable[[], str],
    post: Callable[[Message], object],
    *,
    interval_s: float = 1.0,
) -> None:
    """Scrape the server's batching metrics and sample memory, once per interval, forever."""
    config = session.config
    url = session.metrics_url
    scraper = MetricsScraper(url) if url else None
    previous: ServerMetrics | None = None
    try:
        while True:
            batching = None
            detail = "no REST port configured"
            if scraper is not None:
                try:
                    current = await scraper.scrape()
                except ScrapeError:
                    detail = "metrics unreachable"
                else:
                    if current is None:
                        detail = "server exposes no metrics"
                    else:
                        batching = server_batching(
                            current,
                            previous,
                            model_name=get_model_name(),
                            max_batch_size=config.embedded.max_batch_size,
                        )
                        previous = current
                        if batching.batch_size_mean is None:
                            detail = "no server batching"
                            batching = None
            pid = session.server_pid
            server_rss = await asyncio.to_thread(process_rss_bytes, pid) if pid else None
            console_rss = process_rss_bytes()
            post(MetricsSampled(batching, detail, console_rss, server_rss))
            await asyncio.sleep(interval_s)
    finally:
        if scraper is not None:
            await scraper.close()
