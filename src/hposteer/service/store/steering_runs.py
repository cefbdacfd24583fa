"""The record of every steering run; (segment, iteration) is unique, so a re-run cannot duplicate."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from hposteer.service.store.tables import segments, steering_runs


def record_run(
    conn: Connection,
    *,
    task_id: int,
    segment_id: int,
    iteration: int,
    requested: int,
    produced: int,
    runner: str,
    outcome: str,
    message: str | None,
    started_at: float,
    duration_ms: float,
) -> None:
    conn.execute(
        insert(steering_runs).values(
            task_id=task_id,
            segment_id=segment_id,
            iteration=iteration,
            requested=requested,
            produced=produced,
            runner=runner,
            outcome=outcome,
            message=message,
            started_at=started_at,
            duration_ms=duration_ms,
        )
    )


def advance_iteration(conn: Connection, segment_id: int, expected: int) -> bool:
    """Move the segment from iteration ``expected`` to the next; False if another run got there first."""
    result = conn.execute(
        update(segments)
        .where(segments.c.id == segment_id, segments.c.iteration == expected)
        .values(iteration=expected + 1)
    )
    return result.rowcount == 1


def recent_outcomes(conn: Connection, segment_id: int, limit: int) -> list[str]:
    """Outcomes of the segment's latest runs, newest first."""
    rows = conn.execute(
        select(steering_runs.c.outcome)
        .where(steering_runs.c.segment_id == segment_id)
        .order_by(steering_runs.c.iteration.desc())
        .limit(limit)
    )
    return [str(r.outcome) for r in rows]
