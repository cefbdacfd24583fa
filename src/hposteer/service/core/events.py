"""What the service tells the outside: Clara-style events, and the two narrow ports that carry them.

The six event names are NVIDIA Clara Train AutoML's handler vocabulary (docs/events.md maps each
one onto hposteer). Events are plain frozen dataclasses, built by the use cases inside the
transaction that caused them and handed to an ``EventSink`` only after it committed; handlers
(``hposteer.service.events``) receive them on their own threads, never on the request path.

``Meters`` is the other port: in-process counts and latencies for ``/metrics``. Both have no-op
defaults, so tools that change the database without a running service pay nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

EVENT_NAMES = ("startup", "recommendations_available", "start_job", "end_job", "round_ended", "shutdown")


@dataclass(frozen=True)
class Startup:
    """The service process started serving (its lifespan began); the first event a handler sees."""

    name: ClassVar[str] = "startup"
    replica: str  # host:pid of the service process
    version: str
    handlers: tuple[str, ...]
    at: float  # wall-clock seconds of the service host


@dataclass(frozen=True)
class RecommendationsAvailable:
    """A steering run stored new points (an optimiser's recommendations), in one committed transaction."""

    name: ClassVar[str] = "recommendations_available"
    task_id: int
    segment: int  # segment index (0 for a task without segments)
    iteration: int  # the segment's steering iteration that produced them
    points: tuple[int, ...]  # point ids (per-task numbers)
    params: tuple[Any, ...]  # the points' hyperparameters, in the same order
    runner: str
    duration_s: float
    at: float


@dataclass(frozen=True)
class JobStarted:
    """A pilot slot acquired an attempt at a point (a retried acquire with the same key is not a new one)."""

    name: ClassVar[str] = "start_job"
    task_id: int
    task_name: str
    segment: int
    point: int
    attempt_id: int
    attempt: int  # 1 for the first try of the point
    job_number: int
    pilot_id: int
    slot: str
    site: str
    params: Any
    at: float


@dataclass(frozen=True)
class JobEnded:
    """An attempt ended, whatever the outcome: completed by its pilot, expired by the reaper, or cancelled
    when its task was killed or failed."""

    name: ClassVar[str] = "end_job"
    task_id: int
    segment: int
    point: int
    attempt_id: int
    attempt: int
    pilot_id: int | None
    slot: str
    site: str
    outcome: str  # succeeded | failed | expired | cancelled
    loss: float | None  # the reported loss of a successful attempt
    failure_class: str | None
    point_state: str  # done | failed (terminal), pending (will be retried) or cancelled (task killed)
    at: float


@dataclass(frozen=True)
class RoundEnded:
    """Every point of one steering iteration of a segment reached a terminal state."""

    name: ClassVar[str] = "round_ended"
    task_id: int
    segment: int
    iteration: int
    points: int
    done: int
    failed: int
    cancelled: int
    min_loss: float | None  # over the round's done points
    max_loss: float | None
    at: float


@dataclass(frozen=True)
class Shutdown:
    """The service process is stopping; the last event a handler sees before its ``close()``."""

    name: ClassVar[str] = "shutdown"
    replica: str
    at: float


Event = Startup | RecommendationsAvailable | JobStarted | JobEnded | RoundEnded | Shutdown


def event_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data: ``{"event": name, ...fields}`` (tuples become lists)."""
    return {"event": event.name, **dataclasses.asdict(event)}


class EventHandler(Protocol):
    """A plugin that reacts to events (docs/events.md). Called on its own thread, one event at a time."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None:
        """Release what the handler holds; called once, after the last event (the reverse of their order)."""
        ...


class EventSink(Protocol):
    """Where use cases hand events over, after their transaction committed. Never blocks, never raises."""

    @property
    def listening(self) -> bool:
        """True when some handler is configured: only then are events (and the reads some need) worth making."""
        ...

    def emit(self, event: Event) -> None: ...


class Meters(Protocol):
    """In-process measurements of one service process, exported at ``/metrics``."""

    def attempt_started(self) -> None: ...

    def attempt_ended(self, outcome: str) -> None: ...

    def acquire(self, seconds: float, claimed: bool) -> None: ...

    def steering_run(self, seconds: float, outcome: str) -> None: ...

    def reports_stored(self, count: int) -> None: ...


class NoEvents:
    """The sink of tools without handlers: nothing listens."""

    listening = False

    def emit(self, event: Event) -> None:
        return None


class NoMeters:
    """The meters of tools that export nothing."""

    def attempt_started(self) -> None:
        return None

    def attempt_ended(self, outcome: str) -> None:
        return None

    def acquire(self, seconds: float, claimed: bool) -> None:
        return None

    def steering_run(self, seconds: float, outcome: str) -> None:
        return None

    def reports_stored(self, count: int) -> None:
        return None
