"""The atomic claim: one pending point for a pilot slot, its attempt opened in the same transaction.

Eligibility and order are SQL (site, brokerage allow-list, nParallelEvaluation, the job budget,
fair share between owners, then priority); the point's attempt counter moves in the claiming
UPDATE (R2). Statements are built once per process with bound parameters.

Contention (PostgreSQL, many slots on one task): the segment row is hot, every claim and
completion moves its counters, and a transaction holds the row from its UPDATE to its commit. So:

* the segment is chosen without a lock, the point is picked ``FOR UPDATE SKIP LOCKED``
  (concurrent claims take different points, never wait for each other there), and the limits are
  enforced by the conditional counter UPDATE: one that finds a limit reached meanwhile changes
  nothing and the next candidate is tried. (Locking the segment up front made concurrent claims
  skip it and answer "no job" with points pending.)
* On PostgreSQL the counter UPDATE, the point's claim and the attempt's INSERT are one statement
  (``_take_at_once``), the transaction's last before the commit: the row is held for the rest of
  that statement and the commit. (As separate statements it was held for 3 round trips plus a
  completion's 8 before them; figures in docs/benchmarks.md (e).)
* A claim is its transaction's last write: it runs in a ``ClaimWrite`` (store.claim_write) and
  issues its last statement through ``ClaimWrite.last_write``, after which the connection refuses
  writes. On PostgreSQL that statement and the COMMIT go in one round trip (``pipelined``, the
  use cases' first try; ``Database.write_ending_with_claim``): the row is released without waiting
  for the service's thread to read the answer and send the COMMIT, which on a loaded machine was
  most of the hold (docs/benchmarks.md (e)). A claim that meets a limit at that moment rolls its
  whole transaction back, and the use case runs again not pipelined.
* A completion that hands back the slot's next job does not move its segment's counters itself:
  it *carries* the move (``CarriedMove``) into the claim, which adds it to the same UPDATE when the
  next job comes from the same segment (the usual case), so the row is written once.
* The task row is not written: a job's number comes from its segment's job counter
  (``job_number``), and what a job needs of its task never changes after submission.

Deadlocks: a transaction holds at most the segments it already moved. A carried move for another
segment than the candidate's is written first, and from then on that segment is *held*: the
claim may wait for the held segment's row only; any other segment it locks with ``SKIP LOCKED``
first and passes over if another transaction holds it, so two such transactions never wait for
each other's segments. A plain acquire holds no segment and may wait.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, func, select

from hposteer.service.store.claim_statements import Statement, claim_statements
from hposteer.service.store.claim_write import ClaimWrite
from hposteer.service.store.points import CounterMove, move_counters
from hposteer.service.store.records import ClaimedTask, PointRecord, SegmentRecord, from_row
from hposteer.service.store.tables import attempts, points, segments, tasks


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


def claimed_task(conn: Connection, task_id: int) -> ClaimedTask:
    """What a job needs of its task (none of it changes after submission: callers may cache it)."""
    columns = [getattr(tasks.c, f.name) for f in fields(ClaimedTask) if f.name != "n_segments"]
    n_segments = select(func.count()).select_from(segments).where(segments.c.task_id == tasks.c.id)
    row = conn.execute(select(*columns, n_segments.scalar_subquery().label("n_segments")).where(tasks.c.id == task_id))
    return from_row(ClaimedTask, row.one())


def job_number(segment: SegmentRecord, n_segments: int) -> int:
    """The number of the job a claim just started in ``segment`` (its ``jobs`` counted it): unique
    in the task, from 0, what ``%RNDM:n`` adds to n. One segment: 0, 1, 2, ... in start order;
    several: each segment's jobs interleaved (segment idx, idx + n, idx + 2n, ...), so that no
    row but the segment's own is written to number them."""
    return (segment.jobs - 1) * n_segments + segment.idx


class CarriedMove:
    """A completion's counter move handed to the claim of the slot's next job (see the module
    docstring); ``segment`` is the segment as it is after the move, once written. ``then`` runs
    once, right after the move is written by ``write`` (or, when a claim merged it, at the
    first ``write`` call after): the end-of-segment check, in the same transaction as the move."""

    def __init__(self, move: CounterMove, then: Callable[[Connection, SegmentRecord], None] | None = None):
        self.move = move
        self.segment: SegmentRecord | None = None
        self.passed_over = False  # a claim passed over a segment another transaction held
        self._then = then

    def write(self, conn: Connection) -> SegmentRecord:
        """Write the move now, if no claim has; returns the segment after it."""
        if self.segment is None:
            self.segment = move_counters(conn, self.move)
        if self._then is not None:
            then, self._then = self._then, None
            then(conn, self.segment)
        return self.segment


_NO_MOVE = {"p_carry_pending": 0, "p_carry_running": 0, "p_carry_evaluated": 0}


@dataclass(frozen=True)
class JobContinuation:
    """The job a finished attempt belonged to, when it may take another point."""

    segment_id: int
    job_number: int
    next_step: int


def _like_escape(text: str) -> str:
    """A site name matched literally by LIKE (``_`` and ``%`` are wildcards otherwise)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class ClaimRequest:
    """What one claim asks for: a job for a pilot's slot, and what its transaction did before.

    ``request_key``: the idempotency key of the call, kept on the attempt (R4). ``continuation``:
    only that segment is eligible and the attempt joins the same job. ``allowed_task_ids``
    (brokerage): a task with requirements is eligible only if it is among them.
    ``held_segment_id``: a segment whose row the transaction locked already; the claim waits for no
    other segment's row. ``carry``: a completion's counter move, written by the claim (merged into
    its segment UPDATE when the segment is the same); the caller writes it if still unwritten
    (``carry.write``). ``task_of`` reads what the job needs of its task (a cache may stand in).
    """

    site: str
    pilot_id: int
    slot: str
    lease_ttl_s: float
    request_key: str | None = None
    continuation: JobContinuation | None = None
    allowed_task_ids: Sequence[int] = ()
    held_segment_id: int | None = None
    carry: CarriedMove | None = None
    task_of: Callable[[Connection, int], ClaimedTask] = claimed_task


def claim_next(tx: ClaimWrite, request: ClaimRequest) -> Claim | None:
    """Claim one pending point for a pilot slot, or return None when nothing is eligible.

    The point's attempt counter moves in the same UPDATE that claims it. Eligible: the task runs,
    the site matches, the segment has a free evaluation slot (nParallelEvaluation) and job budget
    (maxEvaluationJobs) left. Order: the owner with the fewest running attempts first (fair share),
    then task priority, then age. ``tx.skip_locked`` (PostgreSQL): points are picked
    ``SKIP LOCKED`` and the writes are one statement.

    A returned claim was the transaction's last write (``ClaimWrite.last_write``): with
    ``tx.pipelined`` the transaction is committed by then; a pipelined claim that finds a limit
    reached raises ``FinalStatementMissed`` with everything rolled back. A carried move for
    another segment is written before, so the claim is the last write whatever happens.
    """
    conn = tx.conn
    site, carry, continuation = request.site, request.carry, request.continuation
    skip_locked = tx.skip_locked
    sql = claim_statements(skip_locked, continuation is not None, bool(request.allowed_task_ids))
    candidate_params = _candidate_params(site, carry, request.allowed_task_ids, continuation)
    candidates = [(int(r.id), int(r.task_id)) for r in conn.execute(sql["candidate"], candidate_params)]
    job = {
        "p_pilot_id": request.pilot_id,
        "p_slot": request.slot,
        "p_site": site,
        "p_lease_token": secrets.token_urlsafe(24),
        "p_ttl": request.lease_ttl_s,
        "p_job_step": 1 if continuation is None else continuation.next_step,
        "p_request_key": request.request_key,
        "p_job_number": None if continuation is None else continuation.job_number,
    }
    held = request.held_segment_id
    for segment_id, task_id in candidates:
        merge = carry is not None and carry.segment is None and carry.move.segment_id == segment_id
        if carry is not None and not merge:
            carry.write(conn)  # before any other segment's row: from now on the transaction holds it
            held = carry.move.segment_id
        others = skip_locked and held is not None and segment_id != held
        if others and conn.execute(sql["try_lock"], {"p_segment_id": segment_id}).scalar() is None:
            if carry is not None:
                carry.passed_over = True
            continue  # another transaction holds it: waiting could close a cycle of waits
        point_id = conn.execute(sql["pick"], {"p_segment_id": segment_id}).scalar()
        if point_id is None:
            continue  # every pending point of the segment is being claimed right now
        task = request.task_of(conn, task_id)
        params = {
            **job,
            **(carry.move.params() if merge and carry is not None else _NO_MOVE),
            "p_segment_id": segment_id,
            "p_point_id": int(point_id),
            "p_owner": task.owner,
            "p_n_segments": task.n_segments,
        }
        claim = _take_at_once_row(tx, sql, params, task) if skip_locked else _take_in_steps(tx, sql, params, task)
        if claim is None:
            continue  # the segment reached a limit since it was chosen: nothing was changed
        if merge and carry is not None:
            carry.segment = claim.segment
        return claim
    return None


def _candidate_params(
    site: str, carry: CarriedMove | None, allowed_task_ids: Sequence[int], continuation: JobContinuation | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"p_site_pattern": f"%,{_like_escape(site)},%", "p_carry_segment_id": 0}
    if carry is not None and carry.segment is None:
        params.update(carry.move.params(), p_carry_segment_id=carry.move.segment_id)
    else:
        params.update(_NO_MOVE)
    if allowed_task_ids:
        params["p_allowed"] = list(allowed_task_ids)
    if continuation is not None:
        params["p_segment_id"] = continuation.segment_id
    return params


def _take_at_once_row(
    tx: ClaimWrite, sql: dict[str, Statement], params: dict[str, Any], task: ClaimedTask
) -> Claim | None:
    values = tx.last_write(sql["take"], params, guard=sql["took"])
    if values is None:
        return None
    segment = SegmentRecord(**{f.name: values[f"s_{f.name}"] for f in fields(SegmentRecord)})
    point = PointRecord(**{f.name: values[f"pt_{f.name}"] for f in fields(PointRecord)})
    return _claim(params, task, segment, point, int(values["a_id"]), float(values["a_lease_expires_at"]))


def _take_in_steps(
    tx: ClaimWrite, sql: dict[str, Statement], params: dict[str, Any], task: ClaimedTask
) -> Claim | None:
    """The same writes as ``_take_at_once`` as three statements (SQLite: one writer at a time)."""
    conn = tx.conn
    segment_row = conn.execute(sql["segment"], params).first()
    if segment_row is None:
        return None
    segment = from_row(SegmentRecord, segment_row)
    point_row = conn.execute(sql["claim_point"], params).first()
    if point_row is None:  # the picked point is locked by us: it cannot have moved
        raise RuntimeError(f"point {params['p_point_id']} left 'pending' while this claim held its lock")
    point = from_row(PointRecord, point_row)
    number = job_number(segment, task.n_segments) if params["p_job_number"] is None else params["p_job_number"]
    attempt = tx.last_write(
        sql["attempt"], {**params, "p_task_id": point.task_id, "p_number": point.attempts, "p_job_number": number}
    )
    if attempt is None:
        raise RuntimeError(f"the attempt of point {point.id} was not opened")
    return _claim(params, task, segment, point, int(attempt["id"]), float(attempt["lease_expires_at"]))


def _claim(
    params: dict[str, Any],
    task: ClaimedTask,
    segment: SegmentRecord,
    point: PointRecord,
    attempt_id: int,
    expires: float,
) -> Claim:
    number = job_number(segment, task.n_segments) if params["p_job_number"] is None else params["p_job_number"]
    return Claim(
        attempt_id=attempt_id,
        lease_token=params["p_lease_token"],
        lease_expires_at=expires,
        attempt_number=point.attempts,
        job_number=int(number),
        point=point,
        task=task,
        segment=segment,
        job_step=int(params["p_job_step"]),
    )


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
    task = claimed_task(conn, point.task_id)
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
