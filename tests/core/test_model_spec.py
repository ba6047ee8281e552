"""The pure ModelSpec: how the console shows it and pins it, and status codes of failed calls."""

from __future__ import annotations

import asyncio

import pytest

from core.client.batcher import BatcherFull
from core.client.errors import call_status, is_unreachable
from core.client.serving import ServingError
from core.embedded.launcher import monitoring_config_text
from core.wire.model_spec import ModelSpec


def test_describe_and_pin_text() -> None:
    assert ModelSpec("m").describe() == "m" and ModelSpec("m").pin_text() == "latest"
    pinned = ModelSpec("m", signature_name="other").pinned(version=2)
    assert pinned.describe() == "m v2 [other]" and pinned.pin_text() == "v2"
    labelled = pinned.pinned(label="stable")
    assert labelled.version is None and labelled.describe() == "m @stable [other]"
    assert labelled.pin_text() == "label stable"
    with pytest.raises(ValueError, match="expected at most one"):
        ModelSpec("m", version=1, version_label="stable")


def test_call_status_names_tf_servings_codes() -> None:
    assert call_status(ServingError("NOT_FOUND", "gone")) == ("NOT_FOUND", "gone")
    assert call_status(BatcherFull()) == ("RESOURCE_EXHAUSTED", "the chat queue is full")
    assert call_status(asyncio.TimeoutError()) == (
        "DEADLINE_EXCEEDED",
        "no answer before the deadline",
    )
    assert call_status(ValueError("bad shape")) == ("INVALID_ARGUMENT", "bad shape")
    assert call_status(RuntimeError("bug")) is None
    assert is_unreachable("UNAVAILABLE") and not is_unreachable("NOT_FOUND")


def test_monitoring_config_text_quotes_the_path() -> None:
    assert monitoring_config_text('/a "b"') == (
        'prometheus_config { enable: true path: "/a \\"b\\"" }\n'
    )
