"""Read-only use cases of the web UI: the task list, a task's overview, pilots and sites.

Everything is scoped like the API: a user sees their own tasks (another user's is 404), an admin
every task. Summaries of a task that cost more than a few index seeks are remembered in a
:class:`MonitoringCache` under the task's *signature*: its state and update time and each
segment's point counters, iteration and job count. Every change to the task's points, attempts or
steering runs moves one of these (the claim moves ``jobs`` and the task's ``updated_at``, a
settlement the point counters, a steering run the iteration), so an unchanged signature means
unchanged data. The same signature is the ETag of the UI's JSON answers: a browser that polls an
idle task gets 304 after two index lookups.

The charts (history, parallel coordinates, importance) are in ``monitoring_charts``, the points
table and a point's page in ``monitoring_points``.
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

from hposteer.service.operations import brokerage
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.monitoring_views import counted_views
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import TaskView
from hposteer.service.store import monitoring as store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.database import StoreBusy, database_time
from hposteer.service.store.records import SegmentRecord, TaskRecord

__all__ = [
    "MonitoringCache",
    "StoreBusy",  # re-exported: transports answer 503 for it without importing the store
    "TaskContext",
    "cached_read",
    "open_task",
    "pilots_overview",
    "task_overview",
    "task_rows",
]

TASK_STATES = ("running", "finished", "failed", "killed")
SITES_FRESH = 2000
SITES_REFRESH_S = 10.0


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


def _signature(task: TaskRecord, segments: Sequence[SegmentRecord]) -> str:
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
    return TaskContext(task, segments, _signature(task, segments))


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


# -- the task list -------------------------------------------------------------------------------


def task_rows(
    services: Services, principal: Principal, *, state: str | None, limit: int, cache: MonitoringCache
) -> tuple[list[TaskView], dict[int, dict[str, int]], float]:
    """The caller's tasks (every task for an admin), newest first, with their attempts per site,
    and the database time (for ages). Rows of tasks whose signature did not move come from the cache."""
    if state is not None and state not in TASK_STATES:
        raise Invalid(f"unknown task state {state!r}; choose one of: {', '.join(TASK_STATES)}")
    with services.db.read() as conn:
        records = task_store.list_tasks(conn, principal.owner_scope, state, limit)
        segments = task_store.segments_of_tasks(conn, [t.id for t in records])
        rows: dict[int, tuple[TaskView, dict[str, int]]] = {}
        stale = []
        for task in records:
            signature = _signature(task, segments.get(task.id, []))
            row = cache.get((task.id, "row"), signature)
            if row is None:
                stale.append((task, signature))
            else:
                rows[task.id] = row
        if stale:
            views = counted_views(conn, [task for task, _ in stale], segments, detail=False)
            for (task, signature), view in zip(stale, views, strict=True):
                ctx = TaskContext(task, segments.get(task.id, []), signature)
                rows[task.id] = (view, _site_mix(conn, ctx, cache))
                cache.put((task.id, "row"), signature, rows[task.id])
        now = database_time(conn)
    return [rows[t.id][0] for t in records], {t.id: rows[t.id][1] for t in records}, now


# -- one task ------------------------------------------------------------------------------------


def task_overview(
    services: Services, principal: Principal, task_id: int, *, cache: MonitoringCache, known_etag: str | None
) -> tuple[str, dict[str, Any] | None]:
    """The task in full (settings, progress, best, segments, why no pilot runs it) with its steering
    runs summarised: per segment runs by outcome and durations, and the latest runs."""

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        view = counted_views(conn, [ctx.task], {task_id: ctx.segments}, detail=True)[0]
        note = brokerage.task_note(conn, services.settings.pilot_seen_window_min, ctx.task, view.progress.pending)
        return {
            "task": view,
            "brokerage": note,
            "steering": _steering(conn, ctx),
            "sites": _site_mix(conn, ctx, cache),
            "as_of": database_time(conn),
        }

    return cached_read(services, principal, task_id, ("overview",), cache=cache, known_etag=known_etag, compute=compute)


def _site_mix(conn: Connection, ctx: TaskContext, cache: MonitoringCache) -> dict[str, int]:
    """The task's attempts per site; for a task that started more than SITES_FRESH jobs, recounted at
    most every SITES_REFRESH_S seconds (a share moves little per attempt)."""
    entry = cache.lookup((ctx.task.id, "sites"))
    big = sum(s.jobs for s in ctx.segments) > SITES_FRESH
    if entry is not None and (entry[0] == ctx.signature or (big and time.monotonic() - entry[2] < SITES_REFRESH_S)):
        sites: dict[str, int] = entry[1]
        return sites
    sites = store.site_mix(conn, [ctx.task.id]).get(ctx.task.id, {})
    cache.put((ctx.task.id, "sites"), ctx.signature, sites)
    return sites


def _steering(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
    index = ctx.segment_index
    per_segment: dict[int, dict[str, Any]] = {}
    for row in store.steering_totals(conn, [s.id for s in ctx.segments]):
        seg = per_segment.setdefault(
            index[int(row.segment_id)], {"runs": 0, "produced": 0, "total_ms": 0.0, "max_ms": 0.0, "outcomes": {}}
        )
        seg["runs"] += int(row.runs)
        seg["produced"] += int(row.produced or 0)
        seg["total_ms"] += float(row.total_ms or 0.0)
        seg["max_ms"] = max(seg["max_ms"], float(row.max_ms or 0.0))
        seg["outcomes"][str(row.outcome)] = int(row.runs)
    for seg in per_segment.values():
        seg["mean_ms"] = seg["total_ms"] / seg["runs"] if seg["runs"] else None
    latest = [
        {**dict(r._mapping), "segment": index[int(r.segment_id)]}
        for s in ctx.segments
        for r in store.steering_runs_of(conn, s.id, None, 10)
    ]
    latest.sort(key=lambda r: -float(r["started_at"]))
    return {"segments": per_segment, "latest": latest[:10]}


# -- pilots and sites ---------------------------------------------------------------------------


def pilots_overview(services: Services, principal: Principal, *, hours: float | None) -> dict[str, Any]:
    """Pilots seen in the last ``hours`` (None: ever) and their sites: slots, slots busy with anyone's
    attempts, the caller's running attempts (everyone's for an admin), and when each was last heard
    of (asking for work or heartbeating an attempt)."""
    if hours is not None and hours <= 0:
        raise Invalid("hours must be positive")
    with services.db.read() as conn:
        now = database_time(conn)
        rows = store.pilots_seen_since(conn, None if hours is None else now - hours * 3600, limit=1000)
        busy = store.running_attempts_by_pilot(conn, None)
        mine = busy if principal.sees_all else store.running_attempts_by_pilot(conn, principal.owner)
    online_s = max(3 * brokerage.SEEN_EVERY_S, services.settings.lease_ttl_s)
    pilots = []
    for row in rows:
        running, heartbeat = busy.get(int(row.id), (0, None))
        last = max(float(row.last_seen_at), heartbeat or 0.0)
        pilots.append(
            {
                "id": int(row.id),
                "name": row.name,
                "site": row.site,
                "hostname": row.hostname,
                "slots": [str(s.get("name", "")) for s in (row.slots or [])],
                "runtimes": list(row.runtimes or []),
                "version": row.version,
                "registered_at": float(row.registered_at),
                "last_heard_at": last,
                "last_heartbeat_at": heartbeat,
                "online": now - last <= online_s,
                "busy": running,
                "mine": mine.get(int(row.id), (0, None))[0],
            }
        )
    return {"pilots": pilots, "sites": _sites(pilots), "now": now, "online_s": online_s}


def _sites(pilots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sites: dict[str, dict[str, Any]] = {}
    for p in pilots:
        site = sites.setdefault(
            p["site"], {"site": p["site"], "pilots": 0, "online": 0, "slots": 0, "busy": 0, "mine": 0, "last": 0.0}
        )
        site["pilots"] += 1
        site["online"] += int(p["online"])
        site["slots"] += len(p["slots"]) if p["online"] else 0
        site["busy"] += p["busy"]
        site["mine"] += p["mine"]
        site["last"] = max(site["last"], p["last_heard_at"])
    return sorted(sites.values(), key=lambda s: (-s["online"], s["site"]))
