"""The demo chat model's cost per item by batch size, and what server-side batching makes of it."""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH_SIZES = (1, 8, 32, 64)
RUNS = 7  # each figure is the median of this many timed runs
QUESTIONS = [
    "How do I enable batching?",
    "what is p99 latency",
    "servable not found for request",
    "how do I roll back a bad model version",
    "which port does the rest api use",
    "what does max_enqueued_batches do",
    "how do I quit the console",
    "tell me a joke",
]
CONCURRENT_REQUESTS = 512


def _questions(count: int) -> np.ndarray:
    return np.array([QUESTIONS[i % len(QUESTIONS)].encode() for i in range(count)], dtype=object)


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median over RUNS of the mean time of `repeats` calls, after a warm-up."""
    for _ in range(3):
        call()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        samples.append((time.perf_counter() - started) / repeats)
    return statistics.median(samples)


def _session_runner(model_dir: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """serving_default run the way TF Serving runs it: a TF1 session on the signature's tensors."""
    import tensorflow as tf

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(model_dir))
    signature = meta_graph.signature_def["serving_default"]
    fetches = [signature.outputs["reply"].name, signature.outputs["confidence"].name]
    feed_name = signature.inputs["text"].name
    return lambda text: session.run(fetches, {feed_name: text})


def _batch_size_table(model_dir: Path) -> str:
    import tensorflow as tf

    run_session = _session_runner(model_dir)
    loaded = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    lines = [
        "| batch size | per item, TF1 session (ms) | items/s, session | "
        "per item, tf.saved_model.load (ms) | items/s, load | vs batch 1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    per_item_at_1 = None
    for batch_size in BATCH_SIZES:
        text = _questions(batch_size)
        repeats = max(4, 128 // batch_size)
        session_s = _median_seconds(functools.partial(run_session, text), repeats) / batch_size
        tensor = tf.constant(text, dtype=tf.string)
        load_s = _median_seconds(functools.partial(loaded, text=tensor), repeats) / batch_size
        per_item_at_1 = per_item_at_1 or session_s
        lines.append(
            f"| {batch_size} | {session_s * 1e3:.3f} | {1 / session_s:,.0f} | "
            f"{load_s * 1e3:.3f} | {1 / load_s:,.0f} | {per_item_at_1 / session_s:.1f}x |"
        )
    return "\n".join(lines)


async def _scheduler_items_per_second(
    run_session: Callable[[np.ndarray], list[np.ndarray]], max_batch_size: int
) -> float:
    """Items/s for CONCURRENT_REQUESTS one-row requests through the server-side batcher."""
    from server.batching import BatchingParameters, BatchScheduler

    def run_batch(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        reply, confidence = run_session(inputs["text"])
        return {"reply": reply, "confidence": confidence}

    params = BatchingParameters(
        max_batch_size=max_batch_size,
        batch_timeout_micros=0,
        max_enqueued_batches=CONCURRENT_REQUESTS,
        num_batch_threads=2,
    )
    async with BatchScheduler(run_batch, params, model_name="deepchat_model") as scheduler:
        requests = [{"text": _questions(index + 1)[-1:]} for index in range(CONCURRENT_REQUESTS)]
        started = time.perf_counter()
        await asyncio.gather(*(scheduler.submit(request) for request in requests))
        return CONCURRENT_REQUESTS / (time.perf_counter() - started)


def _scheduler_table(model_dir: Path) -> str:
    run_session = _session_runner(model_dir)
    lines = [
        f"| server-side batching ({CONCURRENT_REQUESTS} concurrent one-item requests, "
        "2 batch threads) | items/s |",
        "|---|---:|",
    ]
    for label, max_batch_size in [("off (max_batch_size 1)", 1), ("max_batch_size 32", 32)]:
        rates = [
            asyncio.run(_scheduler_items_per_second(run_session, max_batch_size)) for _ in range(3)
        ]
        lines.append(f"| {label} | {statistics.median(rates):,.0f} |")
    return "\n".join(lines)


def run() -> str:
    """The Markdown section for docs/BENCHMARKS.md."""
    from server.demo_model import HASH_BUCKETS, export_demo_model

    with tempfile.TemporaryDirectory(prefix="bench_demo_model-") as directory:
        export_demo_model(Path(directory), versions=(1,))
        model_dir = Path(directory) / "1"
        batch_table = _batch_size_table(model_dir)
        scheduler_table = _scheduler_table(model_dir)
    return (
        "## Demo chat model: cost per item by batch size\n\n"
        f"`deepchat_model` version 1 ({HASH_BUCKETS} hash buckets x the bundled questions, "
        "similarity over the rows of each query's n-grams), called in-process; "
        "each figure is the median of "
        f"{RUNS} runs.\n\n"
        f"{batch_table}\n\n"
        "The same model behind `server.batching.BatchScheduler`, as `--enable_batching` runs "
        "it (median of 3 runs):\n\n"
        f"{scheduler_table}\n"
    )


if __name__ == "__main__":
    print(run())
