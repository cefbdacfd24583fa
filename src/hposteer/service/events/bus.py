"""The event bus: one bounded queue and one thread per handler, so nothing waits on a handler.

``emit`` is what the use cases call after a commit: a non-blocking put per handler. A full queue
drops the event for that handler only, counts it and logs it (at most every 10 s), so a slow
or dead MLflow server can neither slow the request path nor hold up the other handlers. A
handler that raises is logged and counted; its next event is handled as usual. ``close`` lets
each handler finish its queue, then closes the handlers in the reverse of their order, as
Clara's engine shuts its handler chain down.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hposteer.service.core.events import Event, EventHandler

log = logging.getLogger("hposteer.events")

DROP_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class HandlerStats:
    handled: int
    failed: int
    dropped: int
    queued: int


class _Worker:
    """One handler, its queue and its thread."""

    def __init__(self, name: str, handler: EventHandler, queue_size: int):
        self.name = name
        self.handler = handler
        self.queue: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)
        self.handled = 0
        self.failed = 0
        self.dropped = 0
        self._last_drop_log = float("-inf")
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"events-{name}", daemon=True)

    def offer(self, event: Event, wait_s: float = 0.0) -> None:
        try:
            if wait_s > 0:
                self.queue.put(event, timeout=wait_s)
            else:
                self.queue.put_nowait(event)
        except queue.Full:
            self._drop(event)

    def _drop(self, event: Event) -> None:
        with self._lock:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log < DROP_LOG_EVERY_S:
                return
            self._last_drop_log = now
            dropped = self.dropped
        log.warning(
            "event handler %r is behind: its queue of %d is full, %s event dropped (%d dropped so far)",
            self.name,
            self.queue.maxsize,
            event.name,
            dropped,
        )

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            try:
                if event is None:
                    return
                self.handler.handle(event)
                self.handled += 1
            except Exception:
                self.failed += 1
                log.exception("event handler %r failed on %s", self.name, event.name if event else "stop")
            finally:
                self.queue.task_done()

    def stats(self) -> HandlerStats:
        return HandlerStats(self.handled, self.failed, self.dropped, self.queue.qsize())


class EventBus:
    """Delivers events to the configured handlers (``hposteer.service.events.registry``), off the request path."""

    def __init__(self, handlers: Sequence[tuple[str, EventHandler]], queue_size: int = 10_000):
        self._workers = [_Worker(name, handler, queue_size) for name, handler in handlers]
        self._started = False
        self._closed = False

    @property
    def listening(self) -> bool:
        return bool(self._workers) and not self._closed

    @property
    def handler_names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self._workers)

    def handler(self, name: str) -> EventHandler:
        """The handler configured under ``name`` (KeyError if none is)."""
        for worker in self._workers:
            if worker.name == name:
                return worker.handler
        raise KeyError(f"no event handler {name!r}; configured: {', '.join(self.handler_names) or 'none'}")

    def start(self) -> None:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.thread.start()

    def emit(self, event: Event, wait_s: float = 0.0) -> None:
        """Queue the event for every handler; ``wait_s`` > 0 waits that long for room (lifespan events only)."""
        if self._closed:
            return
        for worker in self._workers:
            worker.offer(event, wait_s)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every queued event was handled; False on timeout. For tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        while any(w.queue.unfinished_tasks for w in self._workers):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking events, let each handler finish its queue (up to ``timeout_s`` in all), close them."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            if worker.thread.is_alive():
                try:
                    worker.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                except queue.Full:
                    log.warning("event handler %r did not take the stop signal in time", worker.name)
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                log.warning("event handler %r still busy after %.0f s; closing it anyway", worker.name, timeout_s)
        for worker in reversed(self._workers):
            try:
                worker.handler.close()
            except Exception:
                log.exception("closing event handler %r failed", worker.name)

    def stats(self) -> dict[str, HandlerStats]:
        return {w.name: w.stats() for w in self._workers}
