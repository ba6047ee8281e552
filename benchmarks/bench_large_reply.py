"""Large replies in the console: how long the UI stops answering while a big reply is shown.

Runs the console offline under Textual's Pilot at 160 x 48, posts a ChatAnswered whose reply is
SIZE characters of Markdown paragraphs, and meanwhile types one key at a time, recording (a) the
longest time a key took to reach the prompt line, (b) the longest stall of the event loop (a 5 ms
heartbeat), (c) when the reply is on screen and (d) when its rendering is complete.

    python -m benchmarks.bench_large_reply 1000000 5000000
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from textual import events

from core.chat.adapters import ChatReply
from core.chat.session import ChatOutcome
from core.config.schema import Config
from tui.app import DeepChatApp
from tui.messages import ChatAnswered
from tui.options import build_options
from tui.widgets.chat import HistoryInput


def big_reply(size: int) -> str:
    """Markdown paragraphs of about size characters."""
    paragraph = (
        "Batching groups **requests** so the `model` runs once per batch; "
        "see [the guide](https://example.com) for the knobs. " * 4
    )
    count = size // (len(paragraph) + 2) + 1
    return "\n\n".join(f"Paragraph {index}: {paragraph}" for index in range(count))[:size]


async def measure(size: int) -> dict[str, float]:
    """Key latency, longest loop stall and time to show, in seconds, for one reply size."""
    config = Config.model_validate(
        {
            "model_serving": {"tensorflow_serving": {"host": "127.0.0.1", "rest_port": 0}},
            "models": [{"name": "chat", "model_name": "deepchat_model"}],
        }
    )
    with tempfile.TemporaryDirectory() as directory:
        options = build_options(config, targets=("127.0.0.1:1",), data_dir=Path(directory))
        options = dataclasses.replace(options, connect=False, clock=lambda: "12:00:00")
        app = DeepChatApp(options)
        async with app.run_test(size=(160, 48)) as pilot:
            pane = app.chat
            await pane.chat_log.add_prompt("big?")
            entry = await pane.chat_log.add_reply(1, "big?", pane.model)
            await pilot.pause()
            stalls = [0.0]
            running = True

            async def heartbeat() -> None:
                last = time.perf_counter()
                while running:
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    stalls[0] = max(stalls[0], now - last)
                    last = now

            beat = asyncio.create_task(heartbeat())
            outcome = ChatOutcome(
                spec=pane.model.spec,
                reply=ChatReply(big_reply(size)),
                served_version=2,
                latency_ms=1.0,
            )
            prompt = app.query_one("#prompt", HistoryInput)
            start = time.perf_counter()
            pane.post_message(ChatAnswered(1, "big?", outcome))
            key_latencies: list[float] = []

            async def typist() -> None:
                # One key at a time while the reply renders: each one's time to reach the prompt.
                while running:
                    typed = len(prompt.value)
                    pressed = time.perf_counter()
                    app.post_message(events.Key("x", "x"))  # as the terminal driver sends it
                    while len(prompt.value) == typed:
                        await asyncio.sleep(0.001)
                    key_latencies.append(time.perf_counter() - pressed)
                    await asyncio.sleep(0.02)

            typing = asyncio.create_task(typist())
            while entry.outcome is None:
                await asyncio.sleep(0.005)
            shown = time.perf_counter() - start
            rendered = getattr(entry, "rendered", None)  # before item 9: rendered when shown
            if rendered is not None:
                await rendered.wait()
            await pilot.pause()
            done = time.perf_counter() - start
            running = False
            await beat
            await typing
            return {
                "key_s": max(key_latencies),
                "stall_s": stalls[0],
                "shown_s": shown,
                "done_s": done,
            }


def main() -> None:
    for size in [int(arg) for arg in sys.argv[1:]] or [1_000_000, 5_000_000]:
        figures = asyncio.run(measure(size))
        print(
            f"{size / 1e6:g} MB: key {figures['key_s']:.2f} s, longest stall "
            f"{figures['stall_s']:.2f} s, reply shown after {figures['shown_s']:.2f} s, "
            f"rendered after {figures['done_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
