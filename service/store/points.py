"""Points: insertion by steering, the atomic claim, settlement, history and listings.

Every change of a point's state also moves its segment's counters (generated, pending,
running, evaluated) in the same transaction, so the claim and the end-of-segment checks
read one row instead of counting points. Hot-path statements are built once per process
(``functools.cache``) with bound parameters: building SQLAlchemy expressions costs more
than running them on SQLite.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Delete,
    Insert,
    Select,
    Update,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from service.core.searchspace import Params
from service.core.states import AttemptState, PointState, SegmentState, TaskState
from service.core.steering import Observation
from service.store.attempts import RECORD_COLUMNS
from service.store.database import database_time, now_expr
from service.store.records import AttemptRecord, ClaimedTask, PointRecord, SegmentRecord, from_row
from service.store.tables import attempts, pilots, points, segments, tasks
from service.store.transitions import may_enter

_Statement = Select[Any] | Update | Insert | Delete


_COUNTERS = ("generated", "pending", "running", "evaluated")


@cache
def _counters_statement() -> Update:
    return (
        update(segments)
        .where(segments.c.id == bindparam("p_segment_id"))
        .values({name: getattr(segments.c, name) + bindparam(f"p_{name}") for name in _COUNTERS})
        .returning(*segments.c)
    )


def _move_counters(conn: Connection, segment_id: int, **deltas: int) -> SegmentRecord:
    """Add ``deltas`` to the segment's point counters; returns the segment as it is now."""
    params = {f"p_{name}": deltas.get(name, 0) for name in _COUNTERS}
    params["p_segment_id"] = segment_id
    return from_row(SegmentRecord, conn.execute(_counters_statement(), params).one())


def insert_points(
    conn: Connection, *, task_id: int, segment_id: int, iteration: int, params: Sequence[Params]
) -> list[int]:
    """Append pending points with the task's next sequential numbers; returns their numbers."""
    if not params:
        return []
    first = conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(next_point_number=tasks.c.next_point_number + len(params), updated_at=now_expr())
        .returning(tasks.c.next_point_number)
    ).scalar_one() - len(params)
    numbers = list(range(first, first + len(params)))
    stamp = database_time(conn)
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
    _move_counters(conn, segment_id, generated=len(params), pending=len(params))
    return numbers


def observations(
    conn: Connection, segment_id: int, *, changed_since: float | None = None
) -> dict[int, Observation | None]:
    """The segment's points as optimisers see them, by number; None for a cancelled point.

    With ``changed_since`` only points changed at or after that database time are read.
    """
    query = (
        select(points.c.number, points.c.params, points.c.state, points.c.loss, points.c.is_failure)
        .where(points.c.segment_id == segment_id)
        .order_by(points.c.number)
    )
    if changed_since is not None:
        query = query.where(points.c.updated_at >= changed_since)
    out: dict[int, Observation | None] = {}
    for row in conn.execute(query):
        if row.state == PointState.CANCELLED.value:
            out[int(row.number)] = None
            continue
        finished = row.state in (PointState.DONE.value, PointState.FAILED.value)
        out[int(row.number)] = Observation(
            point_id=int(row.number),
            params=row.params,
            loss=float(row.loss) if finished and row.loss is not None else None,
            failed=bool(row.is_failure) and finished,
        )
    return out


def history(conn: Connection, segment_id: int) -> list[Observation]:
    """Every point of the segment (cancelled ones aside), in order."""
    return [o for o in observations(conn, segment_id).values() if o is not None]


# -- the claim -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    attempt_id: int
    lease_token: str
    lease_expires_at: float
    attempt_number: int
    job_number: int
    point: PointRecord
    task: ClaimedTask
    segment: SegmentRecord


@cache
def _claim_statements(skip_locked: bool) -> dict[str, _Statement]:
    running = AttemptState.RUNNING.value
    owner_running = (
        select(func.count())
        .select_from(attempts)
        .where(attempts.c.owner == tasks.c.owner, attempts.c.state == running)
        .scalar_subquery()
    )
    candidate = (
        select(segments.c.id)
        .join(tasks, tasks.c.id == segments.c.task_id)
        .where(
            tasks.c.state == TaskState.RUNNING.value,
            segments.c.state.in_([SegmentState.ACTIVE.value, SegmentState.EXHAUSTED.value]),
            or_(tasks.c.sites.is_(None), tasks.c.sites.like(bindparam("p_site_pattern"))),
            segments.c.pending > 0,
            segments.c.running < tasks.c.n_parallel_evaluation,
            segments.c.jobs < tasks.c.max_evaluation_jobs,
        )
        .order_by(owner_running, tasks.c.priority.desc(), tasks.c.id, segments.c.idx)
        .limit(1)
    )
    pick = (
        select(points.c.id)
        .where(points.c.segment_id == bindparam("p_segment_id"), points.c.state == PointState.PENDING.value)
        .order_by(points.c.number)
        .limit(1)
    )
    if skip_locked:
        candidate = candidate.with_for_update(of=segments, skip_locked=True)
        pick = pick.with_for_update(skip_locked=True)
    now = now_expr()
    return {
        "candidate": candidate,
        "pick": pick,
        "claim_point": update(points)
        .where(points.c.id == bindparam("p_point_id"), may_enter(points.c.state, PointState.RUNNING))
        .values(state=PointState.RUNNING.value, attempts=points.c.attempts + 1, updated_at=now)
        .returning(*points.c),
        "segment": update(segments)
        .where(segments.c.id == bindparam("p_segment_id"))
        .values(jobs=segments.c.jobs + 1, pending=segments.c.pending - 1, running=segments.c.running + 1)
        .returning(*segments.c),
        "task": update(tasks)
        .where(tasks.c.id == bindparam("p_task_id"))
        .values(jobs_started=tasks.c.jobs_started + 1, updated_at=now)
        .returning(*(getattr(tasks.c, f.name) for f in fields(ClaimedTask))),
        "attempt": insert(attempts)
        .values(
            point_id=bindparam("p_point_id"),
            task_id=bindparam("p_task_id"),
            segment_id=bindparam("p_segment_id"),
            owner=bindparam("p_owner"),
            number=bindparam("p_number"),
            job_number=bindparam("p_job_number"),
            pilot_id=bindparam("p_pilot_id"),
            slot=bindparam("p_slot"),
            site=bindparam("p_site"),
            lease_token=bindparam("p_lease_token"),
            lease_expires_at=now + bindparam("p_ttl"),
            state=AttemptState.RUNNING.value,
            started_at=now,
        )
        .returning(attempts.c.id, attempts.c.lease_expires_at),
    }


def claim_next(
    conn: Connection, *, site: str, pilot_id: int, slot: str, lease_ttl_s: float, skip_locked: bool
) -> Claim | None:
    """Claim one pending point for a pilot slot, or return None when nothing is eligible.

    Runs inside a write transaction. The point's attempt counter moves in the same UPDATE
    that claims it. Eligible: the task runs, the site matches, the segment has a free
    evaluation slot (nParallelEvaluation) and job budget (maxEvaluationJobs) left. Order:
    the owner with the fewest running attempts first (fair share), then task priority, then age.
    """
    sql = _claim_statements(skip_locked)
    segment_id = conn.execute(sql["candidate"], {"p_site_pattern": f"%,{site},%"}).scalar()
    if segment_id is None:
        return None
    point_id = conn.execute(sql["pick"], {"p_segment_id": segment_id}).scalar()
    if point_id is None:
        return None
    point_row = conn.execute(sql["claim_point"], {"p_point_id": point_id}).first()
    if point_row is None:
        return None
    point = from_row(PointRecord, point_row)
    segment = from_row(SegmentRecord, conn.execute(sql["segment"], {"p_segment_id": segment_id}).one())
    task = from_row(ClaimedTask, conn.execute(sql["task"], {"p_task_id": point.task_id}).one())
    token = secrets.token_urlsafe(24)
    job_number = task.jobs_started - 1
    attempt_row = conn.execute(
        sql["attempt"],
        {
            "p_point_id": point.id,
            "p_task_id": point.task_id,
            "p_segment_id": segment_id,
            "p_owner": task.owner,
            "p_number": point.attempts,
            "p_job_number": job_number,
            "p_pilot_id": pilot_id,
            "p_slot": slot,
            "p_site": site,
            "p_lease_token": token,
            "p_ttl": lease_ttl_s,
        },
    ).one()
    return Claim(
        attempt_id=int(attempt_row.id),
        lease_token=token,
        lease_expires_at=float(attempt_row.lease_expires_at),
        attempt_number=point.attempts,
        job_number=job_number,
        point=point,
        task=task,
        segment=segment,
    )


# -- settlement ------------------------------------------------------------------------------


@cache
def _settle_statements() -> dict[str, _Statement]:
    now = now_expr()
    running = points.c.state == PointState.RUNNING.value
    by_id = points.c.id == bindparam("p_point_id")
    return {
        "done": update(points)
        .where(by_id, running, may_enter(points.c.state, PointState.DONE))
        .values(state=PointState.DONE.value, loss=bindparam("p_loss"), updated_at=now, finished_at=now),
        "failed": update(points)
        .where(
            by_id,
            running,
            points.c.attempts >= bindparam("p_max_attempts"),
            may_enter(points.c.state, PointState.FAILED),
        )
        .values(
            state=PointState.FAILED.value,
            loss=bindparam("p_failure_loss"),
            is_failure=True,
            updated_at=now,
            finished_at=now,
        ),
        "retry": update(points)
        .where(
            by_id,
            running,
            points.c.attempts < bindparam("p_max_attempts"),
            may_enter(points.c.state, PointState.PENDING),
        )
        .values(state=PointState.PENDING.value, updated_at=now),
    }


@dataclass(frozen=True)
class Settled:
    state: PointState
    segment: SegmentRecord  # with its counters after the move


def settle_point(
    conn: Connection,
    *,
    point_id: int,
    segment_id: int,
    loss: float | None,
    max_attempts: int,
    failure_loss: float,
) -> Settled | None:
    """After an attempt ended: done with its loss, back to pending, or failed after the last attempt.

    ``loss`` None means the attempt failed (or its lease was lost). Returns the new state, or
    None if the point had already left ``running`` (e.g. the task was killed meanwhile).
    """
    sql = _settle_statements()
    if loss is not None:
        if conn.execute(sql["done"], {"p_point_id": point_id, "p_loss": loss}).rowcount == 1:
            return Settled(PointState.DONE, _move_counters(conn, segment_id, running=-1, evaluated=1))
        return None
    params = {"p_point_id": point_id, "p_max_attempts": max_attempts, "p_failure_loss": failure_loss}
    if conn.execute(sql["failed"], params).rowcount == 1:
        return Settled(PointState.FAILED, _move_counters(conn, segment_id, running=-1, evaluated=1))
    if conn.execute(sql["retry"], params).rowcount == 1:
        return Settled(PointState.PENDING, _move_counters(conn, segment_id, running=-1, pending=1))
    return None


def cancel_unfinished_points(conn: Connection, *, segment_id: int, include_running: bool) -> int:
    """Cancel the segment's pending (and, if asked, running) points."""
    now = now_expr()
    cancelled = 0
    wanted = [PointState.PENDING] + ([PointState.RUNNING] if include_running else [])
    for state in wanted:
        result = conn.execute(
            update(points)
            .where(
                points.c.segment_id == segment_id,
                points.c.state == state.value,
                may_enter(points.c.state, PointState.CANCELLED),
            )
            .values(state=PointState.CANCELLED.value, updated_at=now, finished_at=now)
        )
        count = int(result.rowcount)
        if count:
            _move_counters(conn, segment_id, **{state.value: -count})
        cancelled += count
    return cancelled


# -- listings ----------------------------------------------------------------------------------


def list_points(conn: Connection, *, task_id: int, state: str | None, after: int, limit: int) -> list[PointRecord]:
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
        select(*RECORD_COLUMNS, pilots.c.name.label("pilot_name"))
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.point_id.in_(point_ids))
        .order_by(attempts.c.point_id, attempts.c.number)
    )
    for row in rows:
        record = from_row(AttemptRecord, row)
        out[record.point_id].append({"record": record, "pilot": row.pilot_name})
    return out
