"""Fixtures of the event tests: the test handler plugins in the registry, and no stray handler threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hposteer.service.config import Settings
from hposteer.service.events import EVENT_HANDLERS, HandlerContext, HandlerSpec
from tests.events.plugins import Failing, Plugins, Recorder, Slow, wait_for


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    made = Plugins()

    def recording(settings: Settings, context: HandlerContext) -> Recorder:
        made.recorders.append(Recorder(context))
        return made.recorders[-1]

    def failing(settings: Settings, context: HandlerContext) -> Failing:
        made.failing.append(Failing())
        return made.failing[-1]

    def slow(settings: Settings, context: HandlerContext) -> Slow:
        made.slow.append(Slow())
        return made.slow[-1]

    monkeypatch.setitem(EVENT_HANDLERS, "recording", HandlerSpec(recording, "test: keeps every event"))
    monkeypatch.setitem(EVENT_HANDLERS, "failing", HandlerSpec(failing, "test: raises on every event"))
    monkeypatch.setitem(EVENT_HANDLERS, "slow", HandlerSpec(slow, "test: sleeps on every event"))
    return made


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """The bus's handler threads end with the service."""
    before = {t.name for t in threading.enumerate()}
    yield
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("events-") and t.name not in before],
        timeout_s=10,
        what="the event handler threads to end",
    )
