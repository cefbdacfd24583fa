"""Points: insertion by steering, settlement, retry, history and listings (the claim: store.claims).

Every change of a point's state also moves its segment's counters (generated, pending,
running, evaluated) in the same transaction, so the claim and the end-of-segment checks
read one row instead of counting points. The segment row is the hot row of a task: a completion
settles its point with ``end_point`` and hands the :class:`CounterMove` to the claim of the slot's
next job, which applies it in its own segment UPDATE as the last write before the commit
(store.claims), so the row is locked for one statement and the commit, not for the whole
transaction. Hot-path statements are built once per process
(``functools.cache``) with bound parameters: building SQLAlchemy expressions costs more
than running them on SQLite.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Delete,
    Insert,
    Select,
    Update,
    bindparam,
    insert,
    select,
    update,
)

from hposteer.core.searchspace import Params
from hposteer.service.core.states import PointState
from hposteer.service.core.steering import Observation
from hposteer.service.store.attempts import RECORD_COLUMNS
from hposteer.service.store.database import database_time, now_expr
from hposteer.service.store.records import AttemptRecord, PointRecord, SegmentRecord, from_row
from hposteer.service.store.tables import attempts, pilots, points, segments, tasks
from hposteer.service.store.transitions import may_enter

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


@dataclass(frozen=True)
class CounterMove:
    """A change of one segment's point counters, not yet written."""

    segment_id: int
    pending: int = 0
    running: int = 0
    evaluated: int = 0

    def params(self) -> dict[str, int]:
        """The deltas as the ``p_carry_*`` parameters of the claim's segment UPDATE."""
        return {"p_carry_pending": self.pending, "p_carry_running": self.running, "p_carry_evaluated": self.evaluated}


def move_counters(conn: Connection, move: CounterMove) -> SegmentRecord:
    """Write a counter move; returns the segment as it is now."""
    return _move_counters(conn, move.segment_id, pending=move.pending, running=move.running, evaluated=move.evaluated)


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
            points.c.attempts - points.c.retry_base >= bindparam("p_max_attempts"),
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
            points.c.attempts - points.c.retry_base < bindparam("p_max_attempts"),
            may_enter(points.c.state, PointState.PENDING),
        )
        .values(state=PointState.PENDING.value, updated_at=now),
    }


@dataclass(frozen=True)
class Settled:
    state: PointState
    segment: SegmentRecord  # with its counters after the move


@dataclass(frozen=True)
class PointEnd:
    """A settled point whose segment counters still have to move (``move``)."""

    state: PointState
    move: CounterMove


def end_point(
    conn: Connection,
    *,
    point_id: int,
    segment_id: int,
    loss: float | None,
    max_attempts: int,
    failure_loss: float,
) -> PointEnd | None:
    """After an attempt ended: done with its loss, back to pending, or failed after the last attempt.

    ``loss`` None means the attempt failed (or its lease was lost). Returns the new state and the
    counter move the caller must write in the same transaction (``move_counters``, or the next
    claim's segment UPDATE), or None if the point had already left ``running`` (e.g. the task was
    killed meanwhile).
    """
    sql = _settle_statements()
    if loss is not None:
        if conn.execute(sql["done"], {"p_point_id": point_id, "p_loss": loss}).rowcount == 1:
            return PointEnd(PointState.DONE, CounterMove(segment_id, running=-1, evaluated=1))
        return None
    params = {"p_point_id": point_id, "p_max_attempts": max_attempts, "p_failure_loss": failure_loss}
    if conn.execute(sql["failed"], params).rowcount == 1:
        return PointEnd(PointState.FAILED, CounterMove(segment_id, running=-1, evaluated=1))
    if conn.execute(sql["retry"], params).rowcount == 1:
        return PointEnd(PointState.PENDING, CounterMove(segment_id, running=-1, pending=1))
    return None


def requeue_failed_points(conn: Connection, task_id: int) -> dict[int, int]:
    """Failed points back to pending with a fresh round of attempts; how many, by segment id."""
    now = now_expr()
    rows = conn.execute(
        update(points)
        .where(
            points.c.task_id == task_id,
            points.c.state == PointState.FAILED.value,
            may_enter(points.c.state, PointState.PENDING),
        )
        .values(
            state=PointState.PENDING.value,
            loss=None,
            is_failure=False,
            retry_base=points.c.attempts,
            finished_at=None,
            updated_at=now,
        )
        .returning(points.c.segment_id)
    ).all()
    by_segment: dict[int, int] = defaultdict(int)
    for row in rows:
        by_segment[int(row.segment_id)] += 1
    for segment_id, count in by_segment.items():
        _move_counters(conn, segment_id, evaluated=-count, pending=count)
    return dict(by_segment)


def point_state(conn: Connection, point_id: int) -> str:
    return str(conn.execute(select(points.c.state).where(points.c.id == point_id)).scalar_one())


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


def point_by_number(conn: Connection, task_id: int, number: int) -> PointRecord | None:
    row = conn.execute(select(points).where(points.c.task_id == task_id, points.c.number == number)).first()
    return None if row is None else from_row(PointRecord, row)


def attempt_details(conn: Connection, point_id: int) -> list[dict[str, Any]]:
    """Every column of the point's attempts (log tail and metadata included), with the pilot's name."""
    rows = conn.execute(
        select(attempts, pilots.c.name.label("pilot_name"))
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.point_id == point_id)
        .order_by(attempts.c.number)
    )
    return [dict(row._mapping) for row in rows]
