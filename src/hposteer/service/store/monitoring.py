"""Read-only queries of the web UI, shaped so that a page of a task with 100,000 points reads a few
thousand index entries instead of every row.

How each stays small (indexes in store.tables):

* the running best: a window function over the task's done points in number order, read from
  ``(task_id, state, number, loss)`` alone, returns only the points that improved on every earlier
  one; afterwards only the points done since are read (``done_since``, by update time);
* samples: explicit lists of point numbers (numbers are dense from 1 per task), each one seek on
  the unique ``(task_id, number)`` index;
* the points table: one state at a time in number order ``(task_id, state, number, loss)`` or in
  loss order ``(task_id, state, loss, number)``, with LIMIT/OFFSET inside that state;
* counts per state and attempts per site: grouped scans of covering indexes.

Functions take a Connection and never write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Row, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from hposteer.service.core.states import AttemptState, PointState
from hposteer.service.store.tables import artifacts, attempts, pilots, points, steering_runs

# What the UI shows of a point, without its attempts (``params`` only where asked for).
_POINT_COLUMNS = (
    points.c.id,
    points.c.number,
    points.c.segment_id,
    points.c.iteration,
    points.c.state,
    points.c.loss,
    points.c.is_failure,
    points.c.attempts,
    points.c.created_at,
    points.c.finished_at,
)


def state_counts(conn: Connection, task_id: int) -> dict[str, int]:
    """Points of the task per state (a grouped scan of the (task_id, state, ...) index)."""
    rows = conn.execute(
        select(points.c.state, func.count()).where(points.c.task_id == task_id).group_by(points.c.state)
    )
    return {str(state): int(count) for state, count in rows}


def count_in_state(conn: Connection, task_id: int, state: str) -> int:
    """How many of the task's points are in ``state`` (a range count of the (task_id, state, ...) index)."""
    query = select(func.count()).where(points.c.task_id == task_id, points.c.state == state)
    return int(conn.execute(query).scalar_one())


def failed_by_segment(conn: Connection, task_ids: Sequence[int]) -> dict[int, int]:
    """Failed points per segment of these tasks (the failed range of the (task_id, state, ...) index)."""
    if not task_ids:
        return {}
    rows = conn.execute(
        select(points.c.segment_id, func.count())
        .where(points.c.task_id.in_(bindparam("ids", expanding=True)), points.c.state == PointState.FAILED.value)
        .group_by(points.c.segment_id),
        {"ids": list(task_ids)},
    )
    return {int(segment_id): int(count) for segment_id, count in rows}


def improvements(conn: Connection, task_id: int, mode: str) -> list[tuple[int, float]]:
    """(number, loss) of every done point that beat all done points before it: the exact steps of the
    best-so-far curve in point-number order (a handful of rows, however many points the task has)."""
    best_before = (func.max if mode == "max" else func.min)(points.c.loss).over(
        order_by=points.c.number, rows=(None, -1)
    )
    inner = (
        select(points.c.number, points.c.loss, best_before.label("before"))
        .where(points.c.task_id == task_id, points.c.state == PointState.DONE.value)
        .subquery()
    )
    better = inner.c.loss > inner.c.before if mode == "max" else inner.c.loss < inner.c.before
    rows = conn.execute(
        select(inner.c.number, inner.c.loss).where(or_(inner.c.before.is_(None), better)).order_by(inner.c.number)
    )
    return [(int(number), float(loss)) for number, loss in rows]


def done_since(conn: Connection, segment_ids: Sequence[int], since: float) -> list[tuple[int, float]]:
    """(number, loss) of the segments' done points changed at or after database time ``since``
    (the (segment_id, updated_at) index): what completed since an earlier read."""
    if not segment_ids:
        return []
    rows = conn.execute(
        select(points.c.number, points.c.loss).where(
            points.c.segment_id.in_(bindparam("ids", expanding=True)),
            points.c.updated_at >= since,
            points.c.state == PointState.DONE.value,
        ),
        {"ids": list(segment_ids)},
    )
    return [(int(number), float(loss)) for number, loss in rows]


def points_by_number(
    conn: Connection, task_id: int, numbers: Sequence[int], *, with_params: bool = False
) -> list[Row[Any]]:
    """The task's points with these numbers, in number order.

    On PostgreSQL the numbers go as one array (``= ANY``): with an IN list of 1,500-2,000
    parameters, planning and binding them cost more than the scan (48-55 ms against 15-34 ms at
    100,000 points, bench (f)); SQLite looks each one up in the index either way.
    """
    if not numbers:
        return []
    columns = (*_POINT_COLUMNS, points.c.params) if with_params else _POINT_COLUMNS
    if conn.dialect.name == "postgresql":
        wanted = points.c.number == func.any(bindparam("numbers", type_=ARRAY(Integer)))
    else:
        wanted = points.c.number.in_(bindparam("numbers", expanding=True))
    query = select(*columns).where(points.c.task_id == task_id, wanted).order_by(points.c.number)
    return list(conn.execute(query, {"numbers": list(numbers)}))


def finished_in_range(conn: Connection, task_id: int, low: int, high: int) -> list[Row[Any]]:
    """Done and failed points with numbers in [low, high] (a range of the unique index)."""
    query = (
        select(*_POINT_COLUMNS)
        .where(
            points.c.task_id == task_id,
            points.c.number.between(low, high),
            points.c.state.in_((PointState.DONE.value, PointState.FAILED.value)),
        )
        .order_by(points.c.number)
    )
    return list(conn.execute(query))


def best_points(conn: Connection, task_id: int, mode: str, limit: int) -> list[Row[Any]]:
    """The ``limit`` best done points with their parameters (the head of the loss index)."""
    order = (points.c.loss.desc(), points.c.number.desc()) if mode == "max" else (points.c.loss, points.c.number)
    query = (
        select(*_POINT_COLUMNS, points.c.params)
        .where(points.c.task_id == task_id, points.c.state == PointState.DONE.value)
        .order_by(*order)
        .limit(limit)
    )
    return list(conn.execute(query))


def points_of_state(
    conn: Connection,
    task_id: int,
    state: str | None,
    *,
    by_loss: bool,
    descending: bool,
    offset: int,
    limit: int,
) -> list[Row[Any]]:
    """One page of the task's points of ``state`` (every state: None, number order only), ordered
    by number or by loss (then number).

    First the page's numbers, from an index alone (the OFFSET walks index entries, not rows), then
    those points by number: a deep page costs what the first one does plus the skipped entries.
    """
    page = select(points.c.number).where(points.c.task_id == task_id)
    if state is not None:
        page = page.where(points.c.state == state)
    keys = [points.c.loss, points.c.number] if by_loss else [points.c.number]
    page = page.order_by(*(k.desc() if descending else k for k in keys)).offset(offset).limit(limit)
    numbers = [int(n) for n in conn.execute(page).scalars()]
    rows = {int(r.number): r for r in points_by_number(conn, task_id, numbers, with_params=True)}
    return [rows[n] for n in numbers if n in rows]


def last_attempts(conn: Connection, point_ids: Sequence[int]) -> dict[int, Any]:
    """The latest attempt of each point (by row id), with its pilot's name: what the table shows."""
    if not point_ids:
        return {}
    rows = conn.execute(
        select(
            attempts.c.point_id,
            attempts.c.number,
            attempts.c.state,
            attempts.c.site,
            attempts.c.failure_class,
            attempts.c.exit_code,
            pilots.c.name.label("pilot"),
        )
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.point_id.in_(bindparam("ids", expanding=True)))
        .order_by(attempts.c.point_id, attempts.c.number),
        {"ids": list(point_ids)},
    )
    return {int(row.point_id): row for row in rows}


def site_mix(conn: Connection, task_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Attempts per site of each task (a grouped scan of the (task_id, site) index)."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    if task_ids:
        rows = conn.execute(
            select(attempts.c.task_id, attempts.c.site, func.count())
            .where(attempts.c.task_id.in_(bindparam("ids", expanding=True)))
            .group_by(attempts.c.task_id, attempts.c.site),
            {"ids": list(task_ids)},
        )
        for task_id, site, count in rows:
            out[int(task_id)][str(site) or "?"] = int(count)
    return out


def point_artifacts(conn: Connection, point_id: int) -> list[dict[str, Any]]:
    """The point's latest checkpoint and metrics tarball, with the number of the attempt that sent each."""
    rows = conn.execute(
        select(
            artifacts.c.id,
            artifacts.c.kind,
            artifacts.c.name,
            artifacts.c.size,
            artifacts.c.sha256,
            artifacts.c.created_at,
            attempts.c.number.label("attempt"),
        )
        .outerjoin(attempts, attempts.c.id == artifacts.c.attempt_id)
        .where(artifacts.c.point_id == point_id)
        .order_by(artifacts.c.kind)
    )
    return [dict(row._mapping) for row in rows]


# -- steering runs ------------------------------------------------------------------------------


def steering_totals(conn: Connection, segment_ids: Sequence[int]) -> list[Row[Any]]:
    """Per segment and outcome: runs, points produced, mean / max / total duration (ms)."""
    if not segment_ids:
        return []
    d = steering_runs.c.duration_ms
    return list(
        conn.execute(
            select(
                steering_runs.c.segment_id,
                steering_runs.c.outcome,
                func.count().label("runs"),
                func.sum(steering_runs.c.produced).label("produced"),
                func.avg(d).label("mean_ms"),
                func.max(d).label("max_ms"),
                func.sum(d).label("total_ms"),
            )
            .where(steering_runs.c.segment_id.in_(bindparam("ids", expanding=True)))
            .group_by(steering_runs.c.segment_id, steering_runs.c.outcome),
            {"ids": list(segment_ids)},
        )
    )


def steering_runs_of(conn: Connection, segment_id: int, iterations: Sequence[int] | None, limit: int) -> list[Row[Any]]:
    """The segment's runs with these iterations (a sample), or else its latest ``limit`` runs."""
    query = select(steering_runs).where(steering_runs.c.segment_id == segment_id)
    if iterations is not None:
        query = query.where(steering_runs.c.iteration.in_(bindparam("its", expanding=True))).order_by(
            steering_runs.c.iteration
        )
        return list(conn.execute(query, {"its": list(iterations)}))
    return list(conn.execute(query.order_by(steering_runs.c.iteration.desc()).limit(limit)))


# -- pilots -----------------------------------------------------------------------------------


def pilots_seen_since(conn: Connection, since: float | None, limit: int) -> list[Row[Any]]:
    """Pilots seen (registered or asking for work) since database time ``since`` (None: ever), newest first."""
    query = select(
        pilots.c.id,
        pilots.c.name,
        pilots.c.site,
        pilots.c.hostname,
        pilots.c.slots,
        pilots.c.runtimes,
        pilots.c.version,
        pilots.c.registered_at,
        pilots.c.last_seen_at,
    )
    if since is not None:
        query = query.where(pilots.c.last_seen_at >= since)
    return list(conn.execute(query.order_by(pilots.c.last_seen_at.desc()).limit(limit)))


def running_attempts_by_pilot(conn: Connection, owner: str | None) -> dict[int, tuple[int, float | None]]:
    """Per pilot: its running attempts (of tasks of ``owner``; None: everyone's) and their latest heartbeat."""
    query = (
        select(attempts.c.pilot_id, func.count(), func.max(attempts.c.heartbeat_at))
        .where(attempts.c.state == AttemptState.RUNNING.value, attempts.c.pilot_id.is_not(None))
        .group_by(attempts.c.pilot_id)
    )
    if owner is not None:
        query = query.where(attempts.c.owner == owner)
    return {int(pid): (int(n), None if hb is None else float(hb)) for pid, n, hb in conn.execute(query)}
