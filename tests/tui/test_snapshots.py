"""Snapshots of the console's main states (pytest-textual-snapshot), fixed size and data.

No server and no wall clock: replies, model polls and metrics are posted as the messages the
workers would post, stats run on a frozen clock, and the header clock is fixed, so every run
draws the same screen. Update with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from core.chat.adapters import ChatReply
from core.chat.session import ChatOutcome, failure
from core.client.monitor import ModelState
from core.client.serving import ModelMetadata, ModelSpec, SignatureInfo, TensorInfo, VersionStatus
from tests.fixtures.fleet import fleet_snapshot
from tests.tui.conftest import frozen_stats, offline_options, wait_for
from tui.app import DeepChatApp
from tui.messages import (
    ChatAnswered,
    FleetSampled,
    MetricsSampled,
    ModelStateChanged,
    ServerStateChanged,
)
from tui.widgets.chat import ReplyEntry

SnapCompare = Callable[..., bool]
WIDE = (160, 48)
NARROW = (100, 30)

SIGNATURE = SignatureInfo(
    key="serving_default",
    method_name="tensorflow/serving/predict",
    inputs={"text": TensorInfo("text", "text:0", "DT_STRING", (-1,))},
    outputs={
        "confidence": TensorInfo("confidence", "confidence:0", "DT_FLOAT", (-1,)),
        "reply": TensorInfo("reply", "reply:0", "DT_STRING", (-1,)),
    },
)
TWO_VERSIONS = ModelState(
    model_name="deepchat_model",
    versions=(VersionStatus(1, "AVAILABLE", "OK", ""), VersionStatus(2, "AVAILABLE", "OK", "")),
    metadata=ModelMetadata("deepchat_model", 2, {"serving_default": SIGNATURE}),
    labels={"canary": 2, "stable": 1},
)
BATCHING_ANSWER = (
    "TF Serving merges requests that arrive within `batch_timeout_micros` into one run, up to "
    "`max_batch_size`, then splits the outputs back to each caller.\n\n"
    "- more throughput under load\n- a little latency per request"
)


def answer(version: int, text: str, latency_ms: float = 4.1) -> ChatOutcome:
    """A successful outcome with fixed figures."""
    return ChatOutcome(
        spec=ModelSpec("deepchat_model"),
        reply=ChatReply(text=text, details=(("confidence", "0.830"),)),
        served_version=version,
        latency_ms=latency_ms,
    )


async def exchange(app: DeepChatApp, prompt: str, outcome: ChatOutcome) -> None:
    """Show a prompt and its answer the way a chat worker's message would."""
    chat = app.chat
    prompt_id = chat.store_prompt(prompt)
    await chat.chat_log.add_prompt(prompt)
    await chat.chat_log.add_reply(prompt_id, prompt, chat.model)
    chat.post_message(ChatAnswered(prompt_id, prompt, outcome))


async def settle(app: DeepChatApp, pilot: Pilot[Any]) -> None:
    """Wait for every reply to be drawn, stop the cursor blinking, let timers render."""
    await wait_for(pilot, lambda: all(e.outcome is not None for e in app.query(ReplyEntry)))
    await wait_for(pilot, lambda: all(e.rendered.is_set() for e in app.query(ReplyEntry)), 30)
    app.query_one("#prompt", Input).cursor_blink = False
    await pilot.pause(0.3)


def app_with_load(tmp_path: Path) -> DeepChatApp:
    """An offline console whose stats hold a minute of chat traffic."""
    stats, clock = frozen_stats()
    for second in range(90):
        clock.now = 1000.0 + second
        rate = int(40 + 30 * math.sin(second / 9))
        for index in range(rate):
            stats.record(0.003 + (index % 10) * 0.0012, served_version=2)
        if second % 20 == 0:
            stats.record(0.12, code="UNAVAILABLE")
        stats.record_batch(min(32, rate // 2), 32)
    stats.record(0.62, served_version=1)  # one slow outlier: p99.9 / max turn red
    return DeepChatApp(offline_options(tmp_path), stats=stats)


def run_before(*steps: Callable[[DeepChatApp], Awaitable[None]]) -> Callable[..., Any]:
    """A snap_compare run_before that runs steps on the app, then settles."""

    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, DeepChatApp)
        for step in steps:
            await step(app)
        await settle(app, pilot)

    return before


async def conversation(app: DeepChatApp) -> None:
    """Two exchanges, the second a Markdown answer, served by v2."""
    await exchange(app, "hello", answer(2, "Hello! Ask me about TF Serving.", 3.8))
    await exchange(app, "how does server side batching work?", answer(2, BATCHING_ANSWER))


async def long_reply(app: DeepChatApp) -> None:
    """A 40 KB answer: its first 16 KB rendered, then the "show all" row."""
    paragraph = BATCHING_ANSWER.split("\n\n")[0]
    text = "\n\n".join(f"{index}) {paragraph}" for index in range(200))[:40_000]
    await exchange(app, "tell me everything about batching", answer(2, text))


async def model_two_versions(app: DeepChatApp) -> None:
    """The model panel after a poll of a model with two versions and labels."""
    app.post_message(ServerStateChanged("up"))
    app.post_message(ModelStateChanged(TWO_VERSIONS))


async def server_metrics(app: DeepChatApp) -> None:
    """The servers' figures and memory as the fleet and memory workers report them."""
    snapshot = fleet_snapshot()
    for second in range(60):  # a minute of samples draws the servers' sparkline
        qps = 1800 + 400 * math.sin(second / 7)
        fleet = dataclasses.replace(snapshot.fleet, qps=qps if second < 59 else 1815.7)
        app.post_message(FleetSampled(dataclasses.replace(snapshot, fleet=fleet)))
    app.post_message(MetricsSampled(88 * 2**20, 612 * 2**20))


async def error_inline(app: DeepChatApp) -> None:
    """A prompt that failed with TF Serving's error."""
    await exchange(
        app,
        "hello?",
        failure(
            ModelSpec("deepchat_model"),
            "NOT_FOUND",
            "Servable not found for request: Latest(deepchat_model)",
        ),
    )


def test_startup(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before())


def test_chat_with_replies(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(
        app, terminal_size=WIDE, run_before=run_before(model_two_versions, conversation)
    )


def test_panels_under_load(snap_compare: SnapCompare, tmp_path: Path) -> None:
    assert snap_compare(
        app_with_load(tmp_path),
        terminal_size=WIDE,
        run_before=run_before(model_two_versions, server_metrics, conversation),
    )


def test_model_panel_with_two_versions(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before(model_two_versions))


def test_error_inline(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before(conversation, error_inline))


def test_long_reply_cut_with_show_all(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before(long_reply))


def test_help(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, press=["f1"], run_before=run_before())


def test_narrow_terminal_under_load(snap_compare: SnapCompare, tmp_path: Path) -> None:
    assert snap_compare(
        app_with_load(tmp_path),
        terminal_size=NARROW,
        run_before=run_before(model_two_versions, server_metrics, conversation, error_inline),
    )


async def replicas_view(app: DeepChatApp) -> None:
    """The replicas view of four replicas: one rolling out v3, one down, one slow."""
    app.post_message(FleetSampled(fleet_snapshot()))
    await wait_for_pilotless(lambda: app.fleet_snapshot is not None)
    app.action_replicas()


async def wait_for_pilotless(condition: Callable[[], bool]) -> None:
    """Yield to the app's loop until condition() holds (its messages get handled)."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def test_replicas_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = DeepChatApp(offline_options(tmp_path), stats=frozen_stats()[0])
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before(replicas_view))
