"""Watching a run while it goes on: stop it once an SLO is lost, push its figures to a gateway.

`RunWatch.follow(run)` gives a progress callback for BurstRun; `finish(report)` sends the final
push and waits for the pushes in flight. Pushes block on HTTP, so they run in the loop's
executor and never hold the run up; a failed push is remembered, never raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from core.load.burst import BurstProgress, BurstRun
from core.report.model import BenchReport
from core.report.push import Pusher
from core.report.slo import SloTerm, clearly_breached

# How often live figures are pushed while a run goes on.
PUSH_EVERY_S = 5.0
ABORT_ON_BREACH = "--abort-on-breach"


class RunWatch:
    """The SLO watch (--abort-on-breach) and the Pushgateway (--push) of one or more runs."""

    def __init__(
        self,
        *,
        slo: list[SloTerm] | None = None,
        abort_on_breach: bool = False,
        pusher: Pusher | None = None,
    ) -> None:
        self.slo = slo
        self.abort_on_breach = abort_on_breach
        self.pusher = pusher
        self.push_failure: str | None = None
        self._pushes: list[asyncio.Future[None]] = []
        self._next_push = 0.0

    def follow(self, run: BurstRun) -> Callable[[BurstProgress], None]:
        """A progress callback for `run`: aborts it once an SLO term is lost, pushes live."""

        def on_progress(progress: BurstProgress) -> None:
            if self.abort_on_breach and self.slo and progress.state == "running":
                lost = self.lost_term(run)
                if lost is not None:
                    run.abort(reason=f"{ABORT_ON_BREACH}: {lost.text} can no longer be met")
            if self.pusher is not None and progress.state in ("running", "draining"):
                now = time.monotonic()
                if now >= self._next_push:
                    self._next_push = now + PUSH_EVERY_S
                    self._submit(self.pusher.push_progress, progress)

        return on_progress

    def lost_term(self, run: BurstRun) -> SloTerm | None:
        """The first --slo term the run can no longer meet, if any."""
        totals = run.totals
        return clearly_breached(
            self.slo or [],
            finished=totals.finished,
            errors=sum(totals.errors.values()),
            late_sends=totals.late_sends,
            corrected=totals.corrected,
            planned_requests=run.planned_requests,
        )

    def _submit(self, push: Callable[..., None], *payload: object) -> None:
        loop = asyncio.get_running_loop()
        self._pushes.append(loop.run_in_executor(None, self._guarded, push, *payload))

    def _guarded(self, push: Callable[..., None], *payload: object) -> None:
        try:
            push(*payload)
        except Exception as error:  # an unreachable gateway must not stop the run
            url = self.pusher.url if self.pusher is not None else ""
            self.push_failure = f"--push {url}: {error}"

    async def finish(self, report: BenchReport) -> None:
        """Wait for the live pushes, then push the finished run's figures."""
        if self.pusher is None:
            return
        await asyncio.gather(*self._pushes, return_exceptions=True)
        self._pushes.clear()
        await asyncio.to_thread(self._guarded, self.pusher.push_report, report)


def stopped_for_breach(report: BenchReport) -> bool:
    """Whether --abort-on-breach stopped this run."""
    return bool(report.abort_reason and report.abort_reason.startswith(ABORT_ON_BREACH))
