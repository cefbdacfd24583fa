"""Intermediate reports of attempts (docs/multi-fidelity.md): stored with the heartbeat, read back in arrival order.

The writes here run inside the heartbeat's own write transaction, after its fenced lease extension
succeeded: a refused heartbeat stores nothing. Re-sent reports (same attempt and step) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hposteer.core.intermediate_reports import IntermediateReport
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import attempt_reports, attempts

MAX_REFUSALS_KEPT = 20


@dataclass(frozen=True)
class Stored:
    reports_stored: int
    last_step: int | None


@dataclass(frozen=True)
class StoredReport:
    seq: int
    attempt_id: int
    attempt_number: int
    step: int
    metrics: dict[str, float]
    reported_at: float


@dataclass(frozen=True)
class AttemptReportSummary:
    count: int
    last: StoredReport | None


def last_step(conn: Connection, attempt_id: int) -> int | None:
    value = conn.execute(
        select(func.max(attempt_reports.c.step)).where(attempt_reports.c.attempt_id == attempt_id)
    ).scalar_one()
    return None if value is None else int(value)


def _insert_ignoring_duplicates(conn: Connection) -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(attempt_reports).on_conflict_do_nothing(index_elements=["attempt_id", "step"])
    return sqlite.insert(attempt_reports).on_conflict_do_nothing(index_elements=["attempt_id", "step"])


def store_reports(
    conn: Connection, attempt_id: int, reports: Sequence[IntermediateReport], *, max_per_attempt: int
) -> Stored:
    """Store the reports the attempt does not hold yet, up to ``max_per_attempt`` in all.

    Called after the heartbeat's lease extension, which locked the attempt's row: two heartbeats of
    one attempt never interleave here, so the counts read are the counts written against.
    """
    if not reports:  # a plain heartbeat (every PanDA payload's): no lookup, the pilot has nothing to drop
        return Stored(0, None)
    owner = conn.execute(select(attempts.c.task_id, attempts.c.point_id).where(attempts.c.id == attempt_id)).one()
    held = conn.execute(select(func.count()).where(attempt_reports.c.attempt_id == attempt_id)).scalar_one()
    steps = [r.step for r in reports]
    known = set(
        conn.execute(
            select(attempt_reports.c.step).where(
                attempt_reports.c.attempt_id == attempt_id, attempt_reports.c.step.in_(steps)
            )
        ).scalars()
    )
    room = max(0, max_per_attempt - int(held))
    fresh = [r for r in reports if r.step not in known][:room]
    if fresh:
        now = conn.execute(select(now_expr())).scalar_one()
        rows: list[dict[str, Any]] = [
            {
                "attempt_id": attempt_id,
                "task_id": owner.task_id,
                "point_id": owner.point_id,
                "step": r.step,
                "metrics": dict(r.metrics),
                "reported_at": float(now),
            }
            for r in fresh
        ]
        conn.execute(_insert_ignoring_duplicates(conn), rows)
    return Stored(len(fresh), last_step(conn, attempt_id))


def add_refusals(conn: Connection, attempt_id: int, messages: Sequence[str]) -> None:
    """Append the pilot's refused report lines to the attempt's record, keeping the last few."""
    if not messages:
        return
    earlier = conn.execute(select(attempts.c.report_refusals).where(attempts.c.id == attempt_id)).scalar_one()
    kept = [*(earlier or []), *messages][-MAX_REFUSALS_KEPT:]
    conn.execute(update(attempts).where(attempts.c.id == attempt_id).values(report_refusals=kept))


def _report(row: Any) -> StoredReport:
    return StoredReport(
        seq=int(row.seq),
        attempt_id=int(row.attempt_id),
        attempt_number=int(row.number),
        step=int(row.step),
        metrics=dict(row.metrics),
        reported_at=float(row.reported_at),
    )


_COLUMNS = (
    attempt_reports.c.seq,
    attempt_reports.c.attempt_id,
    attempts.c.number,
    attempt_reports.c.step,
    attempt_reports.c.metrics,
    attempt_reports.c.reported_at,
)


def point_reports(conn: Connection, point_id: int, *, after: int, limit: int) -> list[StoredReport]:
    """A point's reports with ``seq > after``, in arrival order."""
    rows = conn.execute(
        select(*_COLUMNS)
        .join(attempts, attempts.c.id == attempt_reports.c.attempt_id)
        .where(attempt_reports.c.point_id == point_id, attempt_reports.c.seq > after)
        .order_by(attempt_reports.c.seq)
        .limit(limit)
    ).all()
    return [_report(row) for row in rows]


def summaries(conn: Connection, attempt_ids: Sequence[int]) -> dict[int, AttemptReportSummary]:
    """Per attempt that has reports: how many, and the last one to arrive."""
    if not attempt_ids:
        return {}
    counts = conn.execute(
        select(attempt_reports.c.attempt_id, func.count(), func.max(attempt_reports.c.seq))
        .where(attempt_reports.c.attempt_id.in_(attempt_ids))
        .group_by(attempt_reports.c.attempt_id)
    ).all()
    if not counts:
        return {}
    last_rows = conn.execute(
        select(*_COLUMNS)
        .join(attempts, attempts.c.id == attempt_reports.c.attempt_id)
        .where(attempt_reports.c.seq.in_([int(c[2]) for c in counts]))
    ).all()
    last = {int(r.attempt_id): _report(r) for r in last_rows}
    return {int(c[0]): AttemptReportSummary(int(c[1]), last.get(int(c[0]))) for c in counts}
