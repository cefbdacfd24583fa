"""The atomic claim: one pending point for a pilot slot, its attempt opened in the same transaction.

Eligibility and order are SQL (site, brokerage allow-list, nParallelEvaluation, the job budget,
fair share between owners, then priority); the point's attempt counter moves in the claiming
UPDATE (R2). Statements are built once per process with bound parameters.

Contention (PostgreSQL, many slots on one task): the segment and task rows are hot, every claim
and completion moves their counters. So the segment is chosen without a lock, the point is picked
``FOR UPDATE SKIP LOCKED`` (concurrent claims take different points, never wait for each other
there), and the limits are enforced by the conditional counter UPDATE that follows: claims queue
on the segment row only from that statement to the commit, and one that finds the limit reached
meanwhile has changed nothing and returns None. Locking the segment up front instead made
concurrent claims skip it and answer "no job" with points pending.

Deadlocks: a completion that hands back the slot's next job already holds its own segment's row
(its counters moved). Its claim may wait for that segment's row only; any other segment it
locks with ``SKIP LOCKED`` first and passes over if another transaction holds it, so two such
transactions never wait for each other's segments. A plain acquire holds no segment and may wait.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from sqlalchemy import Connection, Delete, Insert, Select, Update, bindparam, func, insert, or_, select, update

from service.core.states import AttemptState, PointState, SegmentState, TaskState
from service.store.database import now_expr
from service.store.records import ClaimedTask, PointRecord, SegmentRecord, from_row
from service.store.tables import attempts, points, segments, tasks
from service.store.transitions import may_enter

_Statement = Select[Any] | Update | Insert | Delete
# Segments tried per claim, best first: concurrent claims may fill the best one's free evaluation
# slots between the unlocked choice and the conditional counter UPDATE; the next one then serves.
CANDIDATES = 4


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
    job_step: int = 1  # this point's place in its job (maxPointsPerEvaluationJob)


@cache
def _claim_statements(skip_locked: bool, continuing: bool = False, brokered: bool = True) -> dict[str, _Statement]:
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
        select(segments.c.id)
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
            segments.c.pending > 0,
            segments.c.running < tasks.c.n_parallel_evaluation,
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
    within_limits = [segments.c.running < limits.with_only_columns(tasks.c.n_parallel_evaluation).scalar_subquery()]
    if not continuing:
        within_limits.append(
            segments.c.jobs - segments.c.extra_jobs
            < limits.with_only_columns(tasks.c.max_evaluation_jobs).scalar_subquery()
        )
    now = now_expr()
    return {
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
        .values(jobs=segments.c.jobs + new_job, pending=segments.c.pending - 1, running=segments.c.running + 1)
        .returning(*segments.c),
        "task": update(tasks)
        .where(tasks.c.id == bindparam("p_task_id"))
        .values(jobs_started=tasks.c.jobs_started + new_job, updated_at=now)
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
            job_step=bindparam("p_job_step"),
            request_key=bindparam("p_request_key"),
        )
        .returning(attempts.c.id, attempts.c.lease_expires_at),
    }


@dataclass(frozen=True)
class JobContinuation:
    """The job a finished attempt belonged to, when it may take another point."""

    segment_id: int
    job_number: int
    next_step: int


def _like_escape(text: str) -> str:
    """A site name matched literally by LIKE (``_`` and ``%`` are wildcards otherwise)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def claim_next(
    conn: Connection,
    *,
    site: str,
    pilot_id: int,
    slot: str,
    lease_ttl_s: float,
    skip_locked: bool,
    request_key: str | None = None,
    continuation: JobContinuation | None = None,
    allowed_task_ids: Sequence[int] = (),
    held_segment_id: int | None = None,
) -> Claim | None:
    """Claim one pending point for a pilot slot, or return None when nothing is eligible.

    Runs inside a write transaction. The point's attempt counter moves in the same UPDATE
    that claims it. Eligible: the task runs, the site matches, the segment has a free
    evaluation slot (nParallelEvaluation) and job budget (maxEvaluationJobs) left. Order:
    the owner with the fewest running attempts first (fair share), then task priority, then age.
    With ``continuation`` only that segment is eligible and the attempt joins the same job.
    ``request_key`` is the idempotency key of the call, kept on the attempt (R4).
    Brokerage: a task with requirements is eligible only if it is among ``allowed_task_ids``.
    ``held_segment_id``: the segment whose row this transaction locked already (a completion's);
    the claim waits for no other segment's row.
    """
    sql = _claim_statements(skip_locked, continuation is not None, bool(allowed_task_ids))
    candidate_params: dict[str, Any] = {"p_site_pattern": f"%,{_like_escape(site)},%"}
    if allowed_task_ids:
        candidate_params["p_allowed"] = list(allowed_task_ids)
    if continuation is not None:
        candidate_params["p_segment_id"] = continuation.segment_id
    candidates = list(conn.execute(sql["candidate"], candidate_params).scalars())
    chosen = _choose(conn, sql, candidates, held_segment_id if skip_locked else None)
    if chosen is None:
        return None
    segment_id, point_id, segment = chosen
    point_row = conn.execute(sql["claim_point"], {"p_point_id": point_id}).first()
    if point_row is None:  # the picked point is locked by us: it cannot have moved
        raise RuntimeError(f"point {point_id} left 'pending' while this claim held its lock")
    point = from_row(PointRecord, point_row)
    task = from_row(ClaimedTask, conn.execute(sql["task"], {"p_task_id": point.task_id}).one())
    token = secrets.token_urlsafe(24)
    job_number = task.jobs_started - 1 if continuation is None else continuation.job_number
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
            "p_job_step": 1 if continuation is None else continuation.next_step,
            "p_request_key": request_key,
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
        job_step=1 if continuation is None else continuation.next_step,
    )


def _choose(
    conn: Connection, sql: dict[str, _Statement], candidates: list[int], held_segment_id: int | None
) -> tuple[int, int, SegmentRecord] | None:
    """The first candidate segment with a pending point no concurrent claim holds and room under
    its limits: (segment id, point id, the segment after its counters moved). With
    ``held_segment_id``, other segments are locked without waiting, or passed over."""
    for segment_id in candidates:
        others_segment = held_segment_id is not None and segment_id != held_segment_id
        if others_segment and conn.execute(sql["try_lock"], {"p_segment_id": segment_id}).scalar() is None:
            continue  # another transaction holds it: waiting could close a cycle of waits
        point_id = conn.execute(sql["pick"], {"p_segment_id": segment_id}).scalar()
        if point_id is None:
            continue  # every pending point of the segment is being claimed right now
        segment_row = conn.execute(sql["segment"], {"p_segment_id": segment_id}).first()
        if segment_row is None:
            continue  # the segment reached a limit since it was chosen: nothing was changed
        return segment_id, int(point_id), from_row(SegmentRecord, segment_row)
    return None


def claim_of(conn: Connection, attempt_id: int) -> Claim | None:
    """The claim an earlier call made, rebuilt from its attempt (an idempotent retry's answer)."""
    row = conn.execute(
        select(
            attempts.c.id, attempts.c.lease_token, attempts.c.lease_expires_at, attempts.c.number,
            attempts.c.job_number, attempts.c.point_id, attempts.c.segment_id, attempts.c.job_step,
        ).where(attempts.c.id == attempt_id)
    ).first()  # fmt: skip
    if row is None:
        return None
    point = from_row(PointRecord, conn.execute(select(points).where(points.c.id == row.point_id)).one())
    segment = from_row(SegmentRecord, conn.execute(select(segments).where(segments.c.id == row.segment_id)).one())
    task_columns = [getattr(tasks.c, f.name) for f in fields(ClaimedTask)]
    task = from_row(ClaimedTask, conn.execute(select(*task_columns).where(tasks.c.id == point.task_id)).one())
    return Claim(
        attempt_id=int(row.id),
        lease_token=str(row.lease_token),
        lease_expires_at=float(row.lease_expires_at),
        attempt_number=int(row.number),
        job_number=int(row.job_number),
        point=point,
        task=task,
        segment=segment,
        job_step=int(row.job_step),
    )
