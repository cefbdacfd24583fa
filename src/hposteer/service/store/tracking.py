"""One evaluated point with what an experiment tracker records of it (hposteer.service.events.mlflow_handler).

Read off the request path, by an event handler's thread, in one read transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from hposteer.service.store.attempt_reports import StoredReport, point_reports
from hposteer.service.store.tables import artifacts, attempts, pilots, points, segments, tasks

ENDED = ("done", "failed")  # the points an experiment tracker records
REPORTS_TRACKED = 100_000  # a point's intermediate reports read for its run (10,000 per attempt at most)


@dataclass(frozen=True)
class TrackedAttempt:
    number: int
    state: str
    site: str
    pilot: str | None
    failure_class: str | None
    exit_code: int | None
    started_at: float
    ended_at: float | None
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class TrackedPoint:
    task_id: int
    task_name: str
    owner: str
    optimizer: str
    optimizer_mode: str
    segment: int
    segment_name: str
    segmented: bool
    number: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: tuple[TrackedAttempt, ...]
    metrics_name: str | None  # the metrics tarball, as users download it
    metrics_sha256: str | None
    reports: tuple[StoredReport, ...] = ()  # intermediate reports of every attempt, in arrival order


def tracked_point(conn: Connection, task_id: int, number: int) -> TrackedPoint | None:
    row = conn.execute(
        select(
            points.c.id,
            points.c.number,
            points.c.iteration,
            points.c.params,
            points.c.state,
            points.c.loss,
            points.c.is_failure,
            points.c.created_at,
            points.c.finished_at,
            tasks.c.name.label("task_name"),
            tasks.c.owner,
            tasks.c.optimizer,
            tasks.c.optimizer_mode,
            segments.c.idx,
            segments.c.name.label("segment_name"),
            segments.c.segmented,
        )
        .join(tasks, tasks.c.id == points.c.task_id)
        .join(segments, segments.c.id == points.c.segment_id)
        .where(points.c.task_id == task_id, points.c.number == number)
    ).first()
    if row is None:
        return None
    tried = conn.execute(
        select(
            attempts.c.number,
            attempts.c.state,
            attempts.c.site,
            pilots.c.name.label("pilot"),
            attempts.c.failure_class,
            attempts.c.exit_code,
            attempts.c.started_at,
            attempts.c.ended_at,
            attempts.c.meta,
        )
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.point_id == row.id)
        .order_by(attempts.c.number)
    )
    metrics = conn.execute(
        select(artifacts.c.name, artifacts.c.sha256).where(
            artifacts.c.point_id == row.id, artifacts.c.kind == "metrics"
        )
    ).first()
    return TrackedPoint(
        task_id=task_id,
        task_name=row.task_name,
        owner=row.owner,
        optimizer=row.optimizer,
        optimizer_mode=row.optimizer_mode,
        segment=row.idx,
        segment_name=row.segment_name,
        segmented=bool(row.segmented),
        number=row.number,
        iteration=row.iteration,
        params=row.params,
        state=row.state,
        loss=row.loss,
        is_failure=bool(row.is_failure),
        created_at=row.created_at,
        finished_at=row.finished_at,
        attempts=tuple(TrackedAttempt(**a._mapping) for a in tried),
        metrics_name=metrics.name if metrics is not None else None,
        metrics_sha256=metrics.sha256 if metrics is not None else None,
        reports=tuple(point_reports(conn, row.id, after=0, limit=REPORTS_TRACKED)),
    )


@dataclass(frozen=True)
class TrackedTask:
    id: int
    name: str
    ended_points: dict[int, str]  # point number -> done | failed


def tracked_task(conn: Connection, task_id: int) -> TrackedTask | None:
    """A task with the state of each of its evaluated (done or failed) points; None if there is no such task."""
    name = conn.execute(select(tasks.c.name).where(tasks.c.id == task_id)).scalar_one_or_none()
    if name is None:
        return None
    rows = conn.execute(
        select(points.c.number, points.c.state).where(points.c.task_id == task_id, points.c.state.in_(ENDED))
    ).all()
    return TrackedTask(task_id, name, {row.number: row.state for row in rows})


def tasks_with_ended_points(conn: Connection, since: float | None = None) -> list[int]:
    """Tasks with a done or failed point (one that ended at or after ``since``, wall-clock seconds, if given)."""
    where: list[ColumnElement[bool]] = [points.c.state.in_(ENDED)]
    if since is not None:
        where.append(points.c.finished_at >= since)
    return list(conn.execute(select(points.c.task_id).where(*where).distinct().order_by(points.c.task_id)).scalars())
