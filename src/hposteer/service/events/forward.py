"""Events and meters of the steering child process, relayed to the service process that started it.

The steering loop runs in a child process (``workers.steering_host``), but handlers and
``/metrics`` live in the service process, once per replica. The child's use cases therefore get a
``PipeSink`` as both their event sink and their meters: each call becomes one small message on a
one-way pipe, sent after the commit, and a thread of the parent (``relay``) hands it to the
parent's bus and meters. Only the child's own work travels: ``recommendations_available`` and
steering-run latencies.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection
from typing import Any

from hposteer.service.core.events import Event, EventSink, Meters

log = logging.getLogger("hposteer.events")

_METER_CALLS = frozenset({"attempt_started", "attempt_ended", "acquire", "steering_run", "reports_stored"})


class PipeSink:
    """The child's end: an EventSink and Meters that write to the pipe."""

    def __init__(self, pipe: Connection, listening: bool):
        self._pipe = pipe
        self._listening = listening
        self._lock = threading.Lock()
        self._broken = False

    @property
    def listening(self) -> bool:
        return self._listening and not self._broken

    def emit(self, event: Event) -> None:
        self._send(("event", event))

    def attempt_started(self) -> None:
        self._send(("meter", "attempt_started", ()))

    def attempt_ended(self, outcome: str) -> None:
        self._send(("meter", "attempt_ended", (outcome,)))

    def acquire(self, seconds: float, claimed: bool) -> None:
        self._send(("meter", "acquire", (seconds, claimed)))

    def steering_run(self, seconds: float, outcome: str) -> None:
        self._send(("meter", "steering_run", (seconds, outcome)))

    def reports_stored(self, count: int) -> None:
        self._send(("meter", "reports_stored", (count,)))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._broken:
            return
        with self._lock:
            try:
                self._pipe.send(message)
            except (BrokenPipeError, OSError, EOFError):
                self._broken = True
                log.warning("the service process no longer reads the steering process's events")


def relay(pipe: Connection, events: EventSink, meters: Meters) -> None:
    """The parent's end: pass every message on until the child closes its end (run on a thread)."""
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            pipe.close()
            return
        try:
            if message[0] == "event":
                events.emit(message[1])
            elif message[0] == "meter" and message[1] in _METER_CALLS:
                getattr(meters, message[1])(*message[2])
        except Exception:
            log.exception("relaying %r from the steering process failed", message[:2])


def start_relay(pipe: Connection, events: EventSink, meters: Meters) -> threading.Thread:
    thread = threading.Thread(target=relay, args=(pipe, events, meters), name="steering-events", daemon=True)
    thread.start()
    return thread
