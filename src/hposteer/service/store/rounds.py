"""Where a point stands in its steering round, for the events of an ended attempt (core.events).

Read only when an event handler listens, inside the transaction that settled the point: its
segment's counter row is locked by then (``points._move_counters``), so of two completions that
end the same round only the later one sees no unfinished point left, and exactly one transaction
reports the round as ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, func, select

from hposteer.service.core.states import PointState
from hposteer.service.store.tables import points, segments

_UNFINISHED = (PointState.PENDING.value, PointState.RUNNING.value)


@dataclass(frozen=True)
class PointPlace:
    number: int  # the per-task point id users see
    iteration: int
    segment_id: int
    segment: int  # the segment's index


@dataclass(frozen=True)
class RoundTally:
    points: int
    done: int
    failed: int
    cancelled: int
    min_loss: float | None
    max_loss: float | None


@cache
def _place_statement() -> Select[Any]:
    return (
        select(points.c.number, points.c.iteration, points.c.segment_id, segments.c.idx)
        .join(segments, segments.c.id == points.c.segment_id)
        .where(points.c.id == bindparam("p_point_id"))
    )


@cache
def _unfinished_statement() -> Select[Any]:
    # (segment_id, state) leads an index: only the segment's pending and running points are read.
    return select(func.count()).where(
        points.c.segment_id == bindparam("p_segment_id"),
        points.c.state.in_(_UNFINISHED),
        points.c.iteration == bindparam("p_iteration"),
    )


@dataclass(frozen=True)
class OpenRound:
    segment_id: int
    segment: int  # the segment's index
    iteration: int


def open_rounds(conn: Connection, task_id: int) -> list[OpenRound]:
    """The task's rounds with a pending or running point: those a kill ends (read before it)."""
    rows = conn.execute(
        select(points.c.segment_id, segments.c.idx, points.c.iteration)
        .join(segments, segments.c.id == points.c.segment_id)
        .where(points.c.task_id == task_id, points.c.state.in_(_UNFINISHED))
        .group_by(points.c.segment_id, segments.c.idx, points.c.iteration)
        .order_by(segments.c.idx, points.c.iteration)
    ).all()
    return [OpenRound(row.segment_id, row.idx, row.iteration) for row in rows]


def point_place(conn: Connection, point_id: int) -> PointPlace | None:
    row = conn.execute(_place_statement(), {"p_point_id": point_id}).first()
    if row is None:
        return None
    return PointPlace(number=row.number, iteration=row.iteration, segment_id=row.segment_id, segment=row.idx)


def round_tally(conn: Connection, segment_id: int, iteration: int) -> RoundTally | None:
    """The round's counts once none of its points is pending or running; None while one still is."""
    unfinished = conn.execute(_unfinished_statement(), {"p_segment_id": segment_id, "p_iteration": iteration})
    if unfinished.scalar_one():
        return None

    def count(state: PointState) -> Any:
        return func.sum(case((points.c.state == state.value, 1), else_=0))

    done_loss = case((points.c.state == PointState.DONE.value, points.c.loss), else_=None)
    row = conn.execute(
        select(
            func.count(),
            count(PointState.DONE),
            count(PointState.FAILED),
            count(PointState.CANCELLED),
            func.min(done_loss),
            func.max(done_loss),
        ).where(points.c.segment_id == segment_id, points.c.iteration == iteration)
    ).one()
    total, done, failed, cancelled, low, high = row
    if not total:
        return None
    return RoundTally(int(total), int(done or 0), int(failed or 0), int(cancelled or 0), low, high)
