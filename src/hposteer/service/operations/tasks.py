"""Reading and killing tasks, always scoped to what the caller may see."""

from __future__ import annotations

import dataclasses

from hposteer.service.core.scheduling import retryable
from hposteer.service.core.states import PointState, SegmentState, TaskState
from hposteer.service.operations import brokerage
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Conflict, Invalid, NotFound
from hposteer.service.operations.outbox import Outbox
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import (
    PointView,
    ReportListView,
    TaskView,
    point_detail_view,
    point_views,
    report_view,
    task_views,
)
from hposteer.service.store import attempt_reports as report_store
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import points as point_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.records import TaskRecord

_TASK_STATES = {s.value for s in TaskState}
_POINT_STATES = {s.value for s in PointState}


def _not_found(task_id: int) -> NotFound:
    return NotFound(f"task {task_id} does not exist (or belongs to another user)", code="task_not_found")


def list_tasks(services: Services, principal: Principal, *, state: str | None, limit: int) -> list[TaskView]:
    if state is not None and state not in _TASK_STATES:
        raise Invalid(f"unknown task state {state!r}; choose one of: {', '.join(sorted(_TASK_STATES))}")
    with services.db.read() as conn:
        records = task_store.list_tasks(conn, principal.owner_scope, state, limit)
        return task_views(conn, records, detail=False)


def show_task(services: Services, principal: Principal, task_id: int) -> TaskView:
    with services.db.read() as conn:
        task = task_store.get_task(conn, task_id, principal.owner_scope)
        if task is None:
            raise _not_found(task_id)
        view = task_views(conn, [task], detail=True)[0]
        note = brokerage.task_note(conn, services.settings.pilot_seen_window_min, task, view.progress.pending)
        return dataclasses.replace(view, brokerage=note) if note else view


def list_points(
    services: Services, principal: Principal, task_id: int, *, state: str | None, after: int, limit: int
) -> tuple[list[PointView], int | None]:
    if state is not None and state not in _POINT_STATES:
        raise Invalid(f"unknown point state {state!r}; choose one of: {', '.join(sorted(_POINT_STATES))}")
    with services.db.read() as conn:
        task = task_store.get_task(conn, task_id, principal.owner_scope)
        if task is None:
            raise _not_found(task_id)
        records = point_store.list_points(conn, task_id=task_id, state=state, after=after, limit=limit)
        index = {s.id: s.idx for s in task_store.segments_of(conn, task_id)}
        views = point_views(conn, records, index)
    next_after = records[-1].number if len(records) == limit else None
    return views, next_after


def kill_task(services: Services, principal: Principal, task_id: int) -> TaskView:
    outbox = Outbox(services)
    with services.db.write() as conn:
        task = task_store.get_task(conn, task_id, principal.owner_scope)
        if task is None:
            raise _not_found(task_id)
        if task.state != TaskState.RUNNING.value:
            raise Conflict(f"task {task_id} has already ended ({task.state}); nothing to kill", code="task_ended")
        was_open = outbox.open_rounds(conn, task_id)
        for segment in task_store.segments_of(conn, task.id):
            point_store.cancel_unfinished_points(conn, segment_id=segment.id, include_running=True)
            task_store.set_segment_state(conn, segment.id, SegmentState.CANCELLED, end_reason="killed")
        outbox.task_stopped(conn, task_id, attempt_store.cancel_running_attempts(conn, task.id), was_open)
        task_store.set_task_state(conn, task_id, TaskState.KILLED, end_reason="killed")
        refreshed = task_store.get_task(conn, task_id, None)
        assert refreshed is not None
        view = task_views(conn, [refreshed], detail=True)[0]
    outbox.publish()
    return view


def retry_task(services: Services, principal: Principal, task_id: int) -> tuple[TaskView, int]:
    """Re-queue the task's failed points, each with a fresh round of maxAttempts attempts.

    A finished task, or one that failed because every point failed, runs again until they end;
    its segments generate no new points for it.
    """
    with services.db.write() as conn:
        task = task_store.get_task(conn, task_id, principal.owner_scope)
        if task is None:
            raise _not_found(task_id)
        if not retryable(task.state, task.end_reason):
            raise Conflict(
                f"task {task_id} is {task.state} ({task.end_reason}): only a running or finished task, "
                "or one that failed because all its points failed, can retry its failed points",
                code="task_not_retryable",
            )
        requeued = point_store.requeue_failed_points(conn, task_id)
        if not requeued:
            raise Conflict(f"task {task_id} has no failed points to retry", code="nothing_to_retry")
        task_store.reopen_for_retry(conn, task_id, {s: n * task.max_attempts for s, n in requeued.items()})
        view = task_views(conn, [_require(task_store.get_task(conn, task_id, None))], detail=True)[0]
    services.steering.notify(list(requeued))
    return view, sum(requeued.values())


def _require(task: TaskRecord | None) -> TaskRecord:
    assert task is not None
    return task


def show_point(services: Services, principal: Principal, task_id: int, number: int) -> PointView:
    """One point with every attempt in full (class, exit code, timing, pilot, site, log tail, metadata)."""
    with services.db.read() as conn:
        task = task_store.get_task(conn, task_id, principal.owner_scope)
        if task is None:
            raise _not_found(task_id)
        point = point_store.point_by_number(conn, task_id, number)
        if point is None:
            raise NotFound(f"task {task_id} has no point {number}", code="point_not_found")
        index = {s.id: s.idx for s in task_store.segments_of(conn, task_id)}
        return point_detail_view(conn, point, index)


def point_reports(
    services: Services, principal: Principal, task_id: int, number: int, *, after: int, limit: int
) -> ReportListView:
    """A point's intermediate reports of every attempt, in arrival order, ``limit`` after ``seq`` ``after``."""
    with services.db.read() as conn:
        if task_store.get_task(conn, task_id, principal.owner_scope) is None:
            raise _not_found(task_id)
        point = point_store.point_by_number(conn, task_id, number)
        if point is None:
            raise NotFound(f"task {task_id} has no point {number}", code="point_not_found")
        found = report_store.point_reports(conn, point.id, after=after, limit=limit)
    reports = [report_view(r) for r in found]
    return ReportListView(reports, reports[-1].seq if len(reports) == limit else None)
