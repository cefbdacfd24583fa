"""Handler plugins for the event tests, and helpers that drive points through a live service.

The plugins are real ``EventHandler``s; ``conftest.plugins`` adds them to the registry table for one
test (monkeypatch), so the service resolves them by name from its settings like any builtin handler.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from hposteer.service.core.events import Event, JobEnded
from hposteer.service.events import EventBus, HandlerContext
from hposteer.service.store.tables import points
from tests.conftest import LiveService


class Recorder:
    """Keeps every event, and for each end_job the point's state as the database shows it then."""

    def __init__(self, context: HandlerContext):
        self.context = context
        self.events: list[Event] = []
        self.states_seen: list[tuple[int, int, str]] = []  # (task id, point, state in the database)
        self.closed = False
        self.lock = threading.Lock()

    def handle(self, event: Event) -> None:
        if isinstance(event, JobEnded):
            with self.context.db.read() as conn:
                state = conn.execute(
                    select(points.c.state).where(points.c.task_id == event.task_id, points.c.number == event.point)
                ).scalar_one()
            self.states_seen.append((event.task_id, event.point, state))
        with self.lock:
            self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def named(self, name: str) -> list[Any]:
        with self.lock:
            return [e for e in self.events if e.name == name]


class Failing:
    """Raises on every event: the other handlers must not notice."""

    def __init__(self) -> None:
        self.calls = 0

    def handle(self, event: Event) -> None:
        self.calls += 1
        raise RuntimeError(f"this handler always fails ({event.name})")

    def close(self) -> None:
        return None


class Slow:
    """Takes its time over every event: requests must not wait for it."""

    def __init__(self, delay_s: float = 0.5):
        self.delay_s = delay_s
        self.handled = 0

    def handle(self, event: Event) -> None:
        time.sleep(self.delay_s)
        self.handled += 1

    def close(self) -> None:
        return None


@dataclass
class Plugins:
    recorders: list[Recorder] = field(default_factory=list)
    failing: list[Failing] = field(default_factory=list)
    slow: list[Slow] = field(default_factory=list)

    @property
    def recorder(self) -> Recorder:
        assert len(self.recorders) == 1, self.recorders
        return self.recorders[0]


def bus_of(service: LiveService) -> EventBus:
    bus = service.services.events
    assert isinstance(bus, EventBus)
    return bus


def acquire_job(
    client: httpx.Client, pilot_id: int, *, key: str | None = None, timeout_s: float = 15
) -> dict[str, Any]:
    """Ask until a job comes (steering may still be producing the next iteration)."""
    body: dict[str, Any] = {"pilot_id": pilot_id, "slot": "0"}
    if key is not None:
        body["request_key"] = key
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.post("/api/v1/pilot/acquire", json=body)
        assert r.status_code == 200, r.text
        if r.json()["job"] is not None:
            return dict(r.json()["job"])
        time.sleep(0.05)
    raise AssertionError("no job within the timeout")


def complete(client: httpx.Client, job: dict[str, Any], loss: float | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"lease_token": job["lease_token"], **extra}
    if loss is None:
        body.update(outcome="failure", failure_class="payload_error", exit_code=1)
    else:
        body.update(outcome="success", loss=loss)
    r = client.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/complete", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(check: Any, timeout_s: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
