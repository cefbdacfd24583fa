"""Counts for the database gauges of ``/metrics``: points and tasks by state, active pilots.

Read at scrape time (cached for a second by the caller): each is one aggregate over an index
((task_id, state, ...) for points, (state, priority) for tasks, (state, lease_expires_at) for
the running attempts), so a scrape costs the same whoever else is scraping.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, or_, select

from hposteer.service.core.states import AttemptState
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import attempts, pilots, points, tasks


@dataclass(frozen=True)
class Gauges:
    points: dict[str, int]  # by state
    tasks: dict[str, int]  # by state
    active_pilots: int
    running_attempts: int


def read_gauges(conn: Connection, pilot_window_s: float) -> Gauges:
    by_point_state = {
        str(s): int(n) for s, n in conn.execute(select(points.c.state, func.count()).group_by(points.c.state))
    }
    by_task_state = {
        str(s): int(n) for s, n in conn.execute(select(tasks.c.state, func.count()).group_by(tasks.c.state))
    }
    running = select(attempts.c.pilot_id).where(
        attempts.c.state == AttemptState.RUNNING.value, attempts.c.pilot_id.is_not(None)
    )
    active = conn.execute(
        select(func.count())
        .select_from(pilots)
        .where(or_(pilots.c.last_seen_at >= now_expr() - pilot_window_s, pilots.c.id.in_(running)))
    ).scalar_one()
    running_attempts = conn.execute(
        select(func.count()).where(attempts.c.state == AttemptState.RUNNING.value)
    ).scalar_one()
    return Gauges(by_point_state, by_task_state, int(active), int(running_attempts))
