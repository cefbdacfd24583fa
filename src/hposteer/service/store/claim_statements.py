"""The claim's SQL, built once per process (``functools.cache``) with bound parameters: building
SQLAlchemy expressions costs more than running them. What the statements do and why is in
store.claims; this module only builds them."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Update,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)

from hposteer.service.core.states import AttemptState, PointState, SegmentState, TaskState
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import attempts, points, segments, tasks
from hposteer.service.store.transitions import may_enter

Statement = Select[Any] | Update | Insert | Delete
# Segments tried per claim, best first: concurrent claims may fill the best one's free evaluation
# slots between the unlocked choice and the conditional counter UPDATE; the next one then serves.
CANDIDATES = 4


def _carried(delta: BindParameter[int]) -> ColumnElement[int]:
    """``delta`` for the segment of the carried move (``p_carry_segment_id``), 0 for any other."""
    return case((segments.c.id == bindparam("p_carry_segment_id", type_=Integer), delta), else_=0)


@cache
def claim_statements(skip_locked: bool, continuing: bool = False, brokered: bool = True) -> dict[str, Statement]:
    """The claim's statements; ``continuing``: the next point of a job that already runs
    (maxPointsPerEvaluationJob), from the same segment and without starting a new job;
    ``brokered``: some slot-specific allow-list applies (an expanding IN, rendered per call)."""
    running = AttemptState.RUNNING.value
    owner_running = (
        select(func.count())
        .select_from(attempts)
        .where(attempts.c.owner == tasks.c.owner, attempts.c.state == running)
        .scalar_subquery()
    )
    candidate = (
        select(segments.c.id, segments.c.task_id)
        .join(tasks, tasks.c.id == segments.c.task_id)
        .where(
            tasks.c.state == TaskState.RUNNING.value,
            # two comparisons, not IN (...): a literal IN list is rendered again on every call
            or_(segments.c.state == SegmentState.ACTIVE.value, segments.c.state == SegmentState.EXHAUSTED.value),
            or_(tasks.c.sites.is_(None), tasks.c.sites.like(bindparam("p_site_pattern"), escape="\\")),
            # brokerage: a task with requirements only for the slots that satisfy them (operations.brokerage)
            or_(tasks.c.requirements.is_(None), tasks.c.id.in_(bindparam("p_allowed", expanding=True)))
            if brokered
            else tasks.c.requirements.is_(None),
            # the counters as they will be once a carried completion's move is written
            segments.c.pending + _carried(bindparam("p_carry_pending", type_=Integer)) > 0,
            segments.c.running + _carried(bindparam("p_carry_running", type_=Integer)) < tasks.c.n_parallel_evaluation,
            (segments.c.id == bindparam("p_segment_id"))
            if continuing
            else (segments.c.jobs - segments.c.extra_jobs < tasks.c.max_evaluation_jobs),
        )
        .order_by(owner_running, tasks.c.priority.desc(), tasks.c.id, segments.c.idx)
        .limit(CANDIDATES)
    )
    new_job = 0 if continuing else 1
    pick = (
        select(points.c.id)
        .where(points.c.segment_id == bindparam("p_segment_id"), points.c.state == PointState.PENDING.value)
        .order_by(points.c.number)
        .limit(1)
    )
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    limits = select(tasks.c.n_parallel_evaluation, tasks.c.max_evaluation_jobs).where(tasks.c.id == segments.c.task_id)
    # a carried completion's -1 frees its evaluation slot before the limit is checked
    carried_running: BindParameter[int] = bindparam("p_carry_running", type_=Integer)
    within_limits = [
        segments.c.running + carried_running < limits.with_only_columns(tasks.c.n_parallel_evaluation).scalar_subquery()
    ]
    if not continuing:
        within_limits.append(
            segments.c.jobs - segments.c.extra_jobs
            < limits.with_only_columns(tasks.c.max_evaluation_jobs).scalar_subquery()
        )
    now = now_expr()
    statements: dict[str, Statement] = {
        "candidate": candidate,
        "try_lock": select(segments.c.id)
        .where(segments.c.id == bindparam("p_segment_id"))
        .with_for_update(skip_locked=True),
        "pick": pick,
        "claim_point": update(points)
        .where(points.c.id == bindparam("p_point_id"), may_enter(points.c.state, PointState.RUNNING))
        .values(state=PointState.RUNNING.value, attempts=points.c.attempts + 1, updated_at=now)
        .returning(*points.c),
        "segment": update(segments)
        .where(segments.c.id == bindparam("p_segment_id"), *within_limits)
        .values(
            jobs=segments.c.jobs + new_job,
            pending=segments.c.pending - 1 + bindparam("p_carry_pending"),
            running=segments.c.running + 1 + carried_running,
            evaluated=segments.c.evaluated + bindparam("p_carry_evaluated"),
        )
        .returning(*segments.c),
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
            job_step=bindparam("p_job_step"),
            request_key=bindparam("p_request_key"),
        )
        .returning(attempts.c.id, attempts.c.lease_expires_at),
    }
    if skip_locked:
        statements["take"] = _take_at_once(statements, continuing)
        # fails (division by zero) unless "take" opened the attempt: the guard of store.claim_write
        statements["took"] = (
            select(literal(1, Integer) / func.count())
            .select_from(attempts)
            .where(
                attempts.c.point_id == bindparam("p_point_id", type_=Integer),
                attempts.c.lease_token == bindparam("p_lease_token", type_=String),
            )
        )
    return statements


def _take_at_once(sql: dict[str, Statement], continuing: bool) -> Select[Any]:
    """PostgreSQL: the segment's counters, the point's claim and the attempt in one statement
    (data-modifying CTEs), so that the hot segment row, locked by its first part, is held for the
    rest of one statement and the commit only. Nothing is written if the segment UPDATE finds a
    limit reached. One row: the segment (``s_*``), the point (``pt_*``) and the attempt (``a_*``)."""
    segment_update = sql["segment"]
    assert isinstance(segment_update, Update)
    seg = segment_update.cte("seg")
    now = now_expr()
    pt = (
        update(points)
        .where(
            points.c.id == bindparam("p_point_id", type_=Integer),
            may_enter(points.c.state, PointState.RUNNING),
            exists(select(seg.c.id)),
        )
        .values(state=PointState.RUNNING.value, attempts=points.c.attempts + 1, updated_at=now)
        .returning(*points.c)
        .cte("pt")
    )
    number = (
        bindparam("p_job_number", type_=Integer)
        if continuing
        else (seg.c.jobs - 1) * bindparam("p_n_segments", type_=Integer) + seg.c.idx
    )
    values = {
        "point_id": pt.c.id,
        "task_id": pt.c.task_id,
        "segment_id": seg.c.id,
        "owner": bindparam("p_owner", type_=String),
        "number": pt.c.attempts,
        "job_number": number,
        "pilot_id": bindparam("p_pilot_id", type_=Integer),
        "slot": bindparam("p_slot", type_=String),
        "site": bindparam("p_site", type_=String),
        "lease_token": bindparam("p_lease_token", type_=String),
        "lease_expires_at": now + bindparam("p_ttl", type_=Float),
        "state": literal(AttemptState.RUNNING.value, String),
        "started_at": now,
        "job_step": bindparam("p_job_step", type_=Integer),
        "request_key": bindparam("p_request_key", type_=String),
    }
    att = (
        insert(attempts)
        .from_select(list(values), select(*values.values()).select_from(seg).join(pt, true()))
        .returning(attempts.c.id, attempts.c.lease_expires_at, attempts.c.job_number)
        .cte("att")
    )
    return (
        select(
            *(c.label(f"s_{c.name}") for c in seg.c),
            *(c.label(f"pt_{c.name}") for c in pt.c),
            *(c.label(f"a_{c.name}") for c in att.c),
        )
        .select_from(seg)
        .join(pt, true())
        .join(att, true())
    )
