"""What the web UI's read models share: the cache they are kept in, and the task they are read for.

Everything is scoped like the API: a user sees their own tasks (another user's is 404), an admin
every task. Summaries of a task that cost more than a few index seeks are remembered in a
:class:`MonitoringCache` under the task's *signature*: its state and update time and each
segment's point counters, iteration and job count. Every change to the task's points, attempts or
steering runs moves one of these (the claim moves ``jobs`` and the task's ``updated_at``, a
settlement the point counters, a steering run the iteration), so an unchanged signature means
unchanged data. The same signature is the ETag of the UI's JSON answers: a browser that polls an
idle task gets 304 after two index lookups.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import NotFound
from hposteer.service.operations.principal import Principal
from hposteer.service.store import tasks as task_store
from hposteer.service.store.database import StoreBusy
from hposteer.service.store.records import SegmentRecord, TaskRecord

__all__ = [
    "MonitoringCache",
    "StoreBusy",  # re-exported: transports answer 503 for it without importing the store
    "TaskContext",
    "cached_read",
    "not_found",
    "open_task",
    "task_signature",
]


class MonitoringCache:
    """Computed summaries by key, each with the ETag it was computed under and when (monotonic);
    least recently used ones go first. Thread-safe."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[str, Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, key: Hashable) -> tuple[str, Any, float] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get(self, key: Hashable, etag: str) -> Any | None:
        entry = self.lookup(key)
        return None if entry is None or entry[0] != etag else entry[1]

    def put(self, key: Hashable, etag: str, value: Any) -> None:
        with self._lock:
            self._entries[key] = (etag, value, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class TaskContext:
    task: TaskRecord
    segments: list[SegmentRecord]
    signature: str

    @property
    def segment_index(self) -> dict[int, int]:
        return {s.id: s.idx for s in self.segments}


def task_signature(task: TaskRecord, segments: Sequence[SegmentRecord]) -> str:
    parts: list[object] = [task.id, task.state, task.updated_at, task.finished_at]
    for s in segments:
        parts += [s.id, s.state, s.iteration, s.jobs, s.extra_jobs, s.generated, s.pending, s.running, s.evaluated]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def not_found(task_id: int) -> NotFound:
    return NotFound(f"task {task_id} does not exist (or belongs to another user)", code="task_not_found")


def open_task(conn: Connection, principal: Principal, task_id: int) -> TaskContext:
    """The task if the caller may see it (else 404), its segments and its signature."""
    task = task_store.get_task(conn, task_id, principal.owner_scope)
    if task is None:
        raise not_found(task_id)
    segments = task_store.segments_of(conn, task_id)
    return TaskContext(task, segments, task_signature(task, segments))


def cached_read(
    services: Services,
    principal: Principal,
    task_id: int,
    key: tuple[Hashable, ...],
    *,
    cache: MonitoringCache,
    known_etag: str | None,
    compute: Callable[[Connection, TaskContext], Any],
    stale_ok_s: Callable[[TaskContext], float] | None = None,
) -> tuple[str, Any | None]:
    """(etag, value) of a summary of the task; value None when ``known_etag`` is still current.

    The etag is the task's signature with ``key``: what the browser already holds is answered with
    a 304, what another viewer computed at this signature comes from the cache. ``stale_ok_s``
    (of the task) lets a sample-based summary of a big task be served from the cache for that many
    seconds after it was computed although the task moved on (a sample barely changes per point).
    """
    with services.db.read() as conn:
        ctx = open_task(conn, principal, task_id)
        etag = hashlib.sha256(f"{ctx.signature}{key!r}".encode()).hexdigest()[:24]
        if known_etag == etag:
            return etag, None
        entry = cache.lookup((task_id, *key))
        if entry is not None:
            fresh = entry[0] == etag
            if fresh or (stale_ok_s is not None and time.monotonic() - entry[2] < stale_ok_s(ctx)):
                return entry[0], None if known_etag == entry[0] else entry[1]
        value = compute(conn, ctx)
        cache.put((task_id, *key), etag, value)
        return etag, value
