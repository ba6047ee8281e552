"""Typed messages: what workers report, and what widgets ask the app for; handlers touch widgets."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from textual.css.query import NoMatches
from textual.message import Message

if TYPE_CHECKING:
    from core.chat.session import ChatOutcome
    from core.client.monitor import ModelState
    from core.fleet.snapshot import FleetSnapshot


class ServerStateChanged(Message):
    """The serving link changed: starting, up, down or failed (with a detail for people)."""

    def __init__(self, state: str, detail: str = "") -> None:
        super().__init__()
        self.state = state
        self.detail = detail


class SessionStarted(Message):
    """The chat session is connected (the embedded server, if any, serves on these targets)."""

    def __init__(self, targets: tuple[str, ...]) -> None:
        super().__init__()
        self.targets = targets


class SessionFailed(Message):
    """The chat session could not start: the server did not come up or the client failed."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ModelStateChanged(Message):
    """A poll of the model's versions, signatures and labels succeeded."""

    def __init__(self, model_state: ModelState) -> None:
        super().__init__()
        self.model_state = model_state


class MetricsSampled(Message):
    """Memory of the console and of the embedded server, sampled off the UI thread."""

    def __init__(self, console_rss: int | None, server_rss: int | None) -> None:
        super().__init__()
        self.console_rss = console_rss
        self.server_rss = server_rss


class FleetSampled(Message):
    """One sample of the servers' own figures (None with a detail when there is none)."""

    def __init__(self, snapshot: FleetSnapshot | None, detail: str = "") -> None:
        super().__init__()
        self.snapshot = snapshot
        self.detail = detail


class ReplicasRequested(Message):
    """Someone asked for the replicas view (/replicas)."""


class ChatAnswered(Message):
    """A prompt got its reply or error."""

    def __init__(self, prompt_id: int, prompt: str, outcome: ChatOutcome) -> None:
        super().__init__()
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.outcome = outcome


class CompareAnswered(Message):
    """A /compare prompt got both answers."""

    def __init__(
        self, prompt_id: int, prompt: str, outcomes: tuple[ChatOutcome, ChatOutcome]
    ) -> None:
        super().__init__()
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.outcomes = outcomes


class ModelProblem(Message):
    """The server answers, but not about this model (e.g. NOT_FOUND)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__()
        self.code = code
        self.message = message


class HelpRequested(Message):
    """Someone asked for the help screen (/help)."""


class BurstRequested(Message):
    """Someone asked for the burst screen (/burst ARGS); arguments start it at once."""

    def __init__(self, args: str) -> None:
        super().__init__()
        self.args = args


Handler = TypeVar("Handler", bound=Callable[..., Any])


def while_mounted(handler: Handler) -> Handler:
    """Skip a handler when the console's widgets are gone (messages arriving during teardown).

    The header, chat pane and panels are composed once and never removed, so NoMatches can only
    mean the app is shutting down.
    """
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def async_wrapper(*args: Any) -> Any:
            try:
                return await handler(*args)
            except NoMatches:
                return None

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(handler)
    def wrapper(*args: Any) -> Any:
        try:
            return handler(*args)
        except NoMatches:
            return None

    return wrapper  # type: ignore[return-value]
