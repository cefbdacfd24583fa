"""Tasks and segments: insert, owner-scoped reads, counts and guarded state changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import fields
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, func, insert, select, update

from hposteer.service.core.scheduling import RETRYABLE_FAILURES
from hposteer.service.core.states import PointState, SegmentState, TaskState
from hposteer.service.store.database import now_expr
from hposteer.service.store.records import PointRecord, SegmentRecord, TaskLimits, TaskRecord, from_row
from hposteer.service.store.tables import points, segments, tasks
from hposteer.service.store.transitions import may_enter


def insert_task(conn: Connection, values: dict[str, Any]) -> int:
    now = now_expr()
    result = conn.execute(
        insert(tasks)
        .values(state=TaskState.RUNNING.value, created_at=now, updated_at=now, **values)
        .returning(tasks.c.id)
    )
    return int(result.scalar_one())


def insert_segment(
    conn: Connection,
    *,
    task_id: int,
    idx: int,
    name: str,
    search_space: Any,
    segmented: bool,
    files: list[str] | None,
    datasets: list[str] | None,
) -> int:
    result = conn.execute(
        insert(segments)
        .values(
            task_id=task_id,
            idx=idx,
            name=name,
            search_space=search_space,
            segmented=segmented,
            state=SegmentState.ACTIVE.value,
            iteration=0,
            jobs=0,
            generated=0,
            pending=0,
            running=0,
            evaluated=0,
            files=files,
            datasets=datasets,
            created_at=now_expr(),
        )
        .returning(segments.c.id)
    )
    return int(result.scalar_one())


@cache
def _by_id(table: Table, scoped: bool) -> Select[Any]:
    query = select(table).where(table.c.id == bindparam("id"))
    return query.where(table.c.owner == bindparam("owner")) if scoped else query


def get_task(conn: Connection, task_id: int, owner: str | None) -> TaskRecord | None:
    """The task if it exists and ``owner`` may see it (None: any owner, for admins and internals)."""
    params: dict[str, Any] = {"id": task_id}
    if owner is not None:
        params["owner"] = owner
    row = conn.execute(_by_id(tasks, owner is not None), params).first()
    return None if row is None else from_row(TaskRecord, row)


def list_tasks(conn: Connection, owner: str | None, state: str | None, limit: int) -> list[TaskRecord]:
    query = select(tasks).order_by(tasks.c.id.desc()).limit(limit)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    if state is not None:
        query = query.where(tasks.c.state == state)
    return [from_row(TaskRecord, row) for row in conn.execute(query)]


@cache
def _limits() -> Select[Any]:
    columns = [getattr(tasks.c, f.name) for f in fields(TaskLimits)]
    return select(*columns).where(tasks.c.id == bindparam("id"))


def get_task_limits(conn: Connection, task_id: int) -> TaskLimits | None:
    row = conn.execute(_limits(), {"id": task_id}).first()
    return None if row is None else from_row(TaskLimits, row)


def get_segment(conn: Connection, segment_id: int) -> SegmentRecord | None:
    row = conn.execute(_by_id(segments, False), {"id": segment_id}).first()
    return None if row is None else from_row(SegmentRecord, row)


def segments_of(conn: Connection, task_id: int) -> list[SegmentRecord]:
    rows = conn.execute(select(segments).where(segments.c.task_id == task_id).order_by(segments.c.idx))
    return [from_row(SegmentRecord, row) for row in rows]


def segments_of_tasks(conn: Connection, task_ids: Sequence[int]) -> dict[int, list[SegmentRecord]]:
    out: dict[int, list[SegmentRecord]] = defaultdict(list)
    if task_ids:
        rows = conn.execute(select(segments).where(segments.c.task_id.in_(task_ids)).order_by(segments.c.idx))
        for row in rows:
            out[row.task_id].append(from_row(SegmentRecord, row))
    return out


def active_segments(conn: Connection) -> list[tuple[SegmentRecord, TaskRecord]]:
    """Segments that steering may still have to serve, with their tasks, oldest first."""
    segment_rows = conn.execute(
        select(segments)
        .join(tasks, tasks.c.id == segments.c.task_id)
        .where(tasks.c.state == TaskState.RUNNING.value, segments.c.state == SegmentState.ACTIVE.value)
        .order_by(segments.c.id)
    ).all()
    records = [from_row(SegmentRecord, row) for row in segment_rows]
    task_ids = sorted({r.task_id for r in records})
    by_id = {
        row.id: from_row(TaskRecord, row)
        for row in (conn.execute(select(tasks).where(tasks.c.id.in_(task_ids))) if task_ids else [])
    }
    return [(r, by_id[r.task_id]) for r in records if r.task_id in by_id]


def state_counts(conn: Connection, segment_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Points per state for each segment."""
    out: dict[int, dict[str, int]] = {sid: {} for sid in segment_ids}
    if segment_ids:
        rows = conn.execute(
            select(points.c.segment_id, points.c.state, func.count())
            .where(points.c.segment_id.in_(segment_ids))
            .group_by(points.c.segment_id, points.c.state)
        )
        for segment_id, state, count in rows:
            out[int(segment_id)][str(state)] = int(count)
    return out


def best_point(conn: Connection, *, task_id: int, segment_id: int | None, mode: str) -> PointRecord | None:
    """The done, non-failed point with the lowest loss (highest for mode ``max``)."""
    order = points.c.loss.desc() if mode == "max" else points.c.loss.asc()
    query = (
        select(points)
        .where(
            points.c.task_id == task_id,
            points.c.state == PointState.DONE.value,
            points.c.is_failure.is_(False),
        )
        .order_by(order, points.c.number)
        .limit(1)
    )
    if segment_id is not None:
        query = query.where(points.c.segment_id == segment_id)
    row = conn.execute(query).first()
    return None if row is None else from_row(PointRecord, row)


def set_task_state(
    conn: Connection,
    task_id: int,
    target: TaskState,
    *,
    end_reason: str | None = None,
    message: str | None = None,
) -> bool:
    values: dict[str, Any] = {"state": target.value, "updated_at": now_expr()}
    if target != TaskState.RUNNING:
        values["finished_at"] = now_expr()
    if end_reason is not None:
        values["end_reason"] = end_reason
    if message is not None:
        values["message"] = message
    result = conn.execute(update(tasks).where(tasks.c.id == task_id, may_enter(tasks.c.state, target)).values(**values))
    return result.rowcount == 1


def touch_task(conn: Connection, task_id: int) -> None:
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(updated_at=now_expr()))


def reopen_for_retry(conn: Connection, task_id: int, extra_jobs: dict[int, int]) -> None:
    """After `task retry`: the task runs again, its ended segments wait for their re-queued points
    (no new points), and each segment may start ``extra_jobs[segment id]`` more jobs."""
    for segment_id, extra in extra_jobs.items():
        conn.execute(
            update(segments).where(segments.c.id == segment_id).values(extra_jobs=segments.c.extra_jobs + extra)
        )
        conn.execute(
            update(segments)
            .where(segments.c.id == segment_id, may_enter(segments.c.state, SegmentState.EXHAUSTED))
            .where(segments.c.state == SegmentState.DONE.value)
            .values(state=SegmentState.EXHAUSTED.value, end_reason=None, finished_at=None)
        )
    conn.execute(
        update(tasks)
        .where(
            tasks.c.id == task_id,
            (tasks.c.state == TaskState.FINISHED.value)
            | ((tasks.c.state == TaskState.FAILED.value) & tasks.c.end_reason.in_(sorted(RETRYABLE_FAILURES))),
            may_enter(tasks.c.state, TaskState.RUNNING),
        )
        .values(state=TaskState.RUNNING.value, end_reason=None, message=None, finished_at=None, updated_at=now_expr())
    )


def set_segment_state(
    conn: Connection, segment_id: int, target: SegmentState, *, end_reason: str | None = None
) -> bool:
    values: dict[str, Any] = {"state": target.value}
    if target in (SegmentState.DONE, SegmentState.FAILED, SegmentState.CANCELLED):
        values["finished_at"] = now_expr()
    if end_reason is not None:
        values["end_reason"] = end_reason
    result = conn.execute(
        update(segments).where(segments.c.id == segment_id, may_enter(segments.c.state, target)).values(**values)
    )
    return result.rowcount == 1
