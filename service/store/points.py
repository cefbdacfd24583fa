"""Points: insertion by steering, the atomic claim, history for optimisers, listings."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, func, insert, or_, select, update

from service.core.searchspace import Params
from service.core.states import AttemptState, PointState, SegmentState, TaskState
from service.core.steering import Observation
from service.store.database import now_expr
from service.store.records import AttemptRecord, PointRecord, SegmentRecord, TaskRecord, from_row
from service.store.tables import attempts, pilots, points, segments, tasks
from service.store.transitions import may_enter


def insert_points(
    conn: Connection, *, task_id: int, segment_id: int, iteration: int, params: Sequence[Params]
) -> list[int]:
    """Append points with the task's next sequential numbers; returns their numbers."""
    if not params:
        return []
    first = conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(next_point_number=tasks.c.next_point_number + len(params), updated_at=now_expr())
        .returning(tasks.c.next_point_number)
    ).scalar_one() - len(params)
    numbers = list(range(first, first + len(params)))
    stamp = conn.scalar(select(now_expr()))
    conn.execute(
        insert(points),
        [
            {
                "task_id": task_id,
                "segment_id": segment_id,
                "number": number,
                "iteration": iteration,
                "params": p,
                "state": PointState.PENDING.value,
                "is_failure": False,
                "attempts": 0,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for number, p in zip(numbers, params, strict=True)
        ],
    )
    return numbers


def history(conn: Connection, segment_id: int) -> list[Observation]:
    """Every point of the segment (cancelled ones aside) as optimisers see it."""
    rows = conn.execute(
        select(points.c.number, points.c.params, points.c.state, points.c.loss, points.c.is_failure)
        .where(points.c.segment_id == segment_id, points.c.state != PointState.CANCELLED.value)
        .order_by(points.c.number)
    )
    out = []
    for row in rows:
        finished = row.state in (PointState.DONE.value, PointState.FAILED.value)
        out.append(
            Observation(
                point_id=int(row.number),
                params=row.params,
                loss=float(row.loss) if finished and row.loss is not None else None,
                failed=bool(row.is_failure) and finished,
            )
        )
    return out


@dataclass(frozen=True)
class Claim:
    attempt_id: int
    lease_token: str
    lease_expires_at: float
    attempt_number: int
    job_number: int
    point: PointRecord
    task: TaskRecord
    segment: SegmentRecord


def claim_next(
    conn: Connection, *, site: str, pilot_id: int, slot: str, lease_ttl_s: float, skip_locked: bool
) -> Claim | None:
    """Claim one pending point for a pilot slot, or return None when nothing is eligible.

    Runs inside a write transaction. The point's attempt counter moves in the same UPDATE
    that claims it. Eligible: the task runs, the site matches, the segment has a free
    evaluation slot (nParallelEvaluation) and job budget (maxEvaluationJobs) left. Order:
    the owner with the fewest running attempts first (fair share), then task priority, then age.
    """
    running_in_segment = (
        select(func.count())
        .select_from(attempts)
        .where(attempts.c.segment_id == segments.c.id, attempts.c.state == AttemptState.RUNNING.value)
        .scalar_subquery()
    )
    owner_running = (
        select(func.count())
        .select_from(attempts)
        .where(attempts.c.owner == tasks.c.owner, attempts.c.state == AttemptState.RUNNING.value)
        .scalar_subquery()
    )
    has_pending = exists().where(
        points.c.segment_id == segments.c.id, points.c.state == PointState.PENDING.value
    )
    candidate = (
        select(segments.c.id)
        .join(tasks, tasks.c.id == segments.c.task_id)
        .where(
            tasks.c.state == TaskState.RUNNING.value,
            segments.c.state.in_([SegmentState.ACTIVE.value, SegmentState.EXHAUSTED.value]),
            or_(tasks.c.sites.is_(None), tasks.c.sites.like(f"%,{site},%")),
            segments.c.jobs < tasks.c.max_evaluation_jobs,
            has_pending,
            running_in_segment < tasks.c.n_parallel_evaluation,
        )
        .order_by(owner_running, tasks.c.priority.desc(), tasks.c.id, segments.c.idx)
        .limit(1)
    )
    if skip_locked:
        candidate = candidate.with_for_update(of=segments, skip_locked=True)
    segment_id = conn.execute(candidate).scalar()
    if segment_id is None:
        return None

    pick = (
        select(points.c.id)
        .where(points.c.segment_id == segment_id, points.c.state == PointState.PENDING.value)
        .order_by(points.c.number)
        .limit(1)
    )
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    point_id = conn.execute(pick).scalar()
    if point_id is None:
        return None
    now = now_expr()
    point_row = conn.execute(
        update(points)
        .where(points.c.id == point_id, may_enter(points.c.state, PointState.RUNNING))
        .values(state=PointState.RUNNING.value, attempts=points.c.attempts + 1, updated_at=now)
        .returning(*points.c)
    ).first()
    if point_row is None:
        return None
    point = from_row(PointRecord, point_row)
    segment_row = conn.execute(
        update(segments).where(segments.c.id == segment_id).values(jobs=segments.c.jobs + 1).returning(*segments.c)
    ).one()
    task_row = conn.execute(
        update(tasks)
        .where(tasks.c.id == point.task_id)
        .values(jobs_started=tasks.c.jobs_started + 1, updated_at=now)
        .returning(*tasks.c)
    ).one()
    task = from_row(TaskRecord, task_row)
    token = secrets.token_urlsafe(24)
    attempt_row = conn.execute(
        insert(attempts)
        .values(
            point_id=point.id,
            task_id=point.task_id,
            segment_id=segment_id,
            owner=task.owner,
            number=point.attempts,
            job_number=int(task_row.jobs_started) - 1,
            pilot_id=pilot_id,
            slot=slot,
            site=site,
            lease_token=token,
            lease_expires_at=now + lease_ttl_s,
            state=AttemptState.RUNNING.value,
            started_at=now,
        )
        .returning(attempts.c.id, attempts.c.lease_expires_at, attempts.c.job_number)
    ).one()
    return Claim(
        attempt_id=int(attempt_row.id),
        lease_token=token,
        lease_expires_at=float(attempt_row.lease_expires_at),
        attempt_number=point.attempts,
        job_number=int(attempt_row.job_number),
        point=point,
        task=task,
        segment=from_row(SegmentRecord, segment_row),
    )


def cancel_unfinished_points(conn: Connection, *, segment_id: int, include_running: bool) -> int:
    """Cancel the segment's pending (and, if asked, running) points."""
    wanted = [PointState.PENDING.value] + ([PointState.RUNNING.value] if include_running else [])
    result = conn.execute(
        update(points)
        .where(
            points.c.segment_id == segment_id,
            points.c.state.in_(wanted),
            may_enter(points.c.state, PointState.CANCELLED),
        )
        .values(state=PointState.CANCELLED.value, updated_at=now_expr(), finished_at=now_expr())
    )
    return int(result.rowcount)


def list_points(
    conn: Connection, *, task_id: int, state: str | None, after: int, limit: int
) -> list[PointRecord]:
    query = (
        select(points)
        .where(points.c.task_id == task_id, points.c.number > after)
        .order_by(points.c.number)
        .limit(limit)
    )
    if state is not None:
        query = query.where(points.c.state == state)
    return [from_row(PointRecord, row) for row in conn.execute(query)]


def attempts_of(conn: Connection, point_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Attempts of each point (by row id), oldest first, with their pilot's name."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not point_ids:
        return out
    rows = conn.execute(
        select(attempts, pilots.c.name.label("pilot_name"))
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.point_id.in_(point_ids))
        .order_by(attempts.c.point_id, attempts.c.number)
    )
    for row in rows:
        record = from_row(AttemptRecord, row)
        out[record.point_id].append({"record": record, "pilot": row.pilot_name})
    return out


def settle_point(
    conn: Connection, *, point_id: int, loss: float | None, max_attempts: int, failure_loss: float
) -> PointState | None:
    """After an attempt ended: done with its loss, back to pending, or failed after the last attempt.

    ``loss`` None means the attempt failed (or its lease was lost). Returns the new state, or
    None if the point had already left ``running`` (e.g. the task was killed meanwhile).
    """
    now = now_expr()
    if loss is not None:
        target = PointState.DONE
        values: dict[str, Any] = {"state": target.value, "loss": loss, "updated_at": now, "finished_at": now}
        guard = points.c.id == point_id
    else:
        current = conn.execute(select(points.c.attempts).where(points.c.id == point_id)).scalar()
        if current is None:
            return None
        if current >= max_attempts:
            target = PointState.FAILED
            values = {
                "state": target.value,
                "loss": failure_loss,
                "is_failure": True,
                "updated_at": now,
                "finished_at": now,
            }
        else:
            target = PointState.PENDING
            values = {"state": target.value, "updated_at": now}
        guard = (points.c.id == point_id) & (points.c.attempts == current)
    result = conn.execute(
        update(points)
        .where(guard, points.c.state == PointState.RUNNING.value, may_enter(points.c.state, target))
        .values(**values)
    )
    return target if result.rowcount == 1 else None
