"""Read-only use cases of the web UI: the task list and a task's overview (cached by the task's
signature, :mod:`hposteer.service.operations.monitoring.cache`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from hposteer.service.operations import brokerage
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.monitoring.cache import MonitoringCache, TaskContext, cached_read, task_signature
from hposteer.service.operations.monitoring.views import counted_views
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import TaskView
from hposteer.service.store import monitoring as store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.database import database_time

TASK_STATES = ("running", "finished", "failed", "killed")
SITES_FRESH = 2000
SITES_REFRESH_S = 10.0


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
            signature = task_signature(task, segments.get(task.id, []))
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
