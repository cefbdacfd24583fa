"""Artifacts of points (the latest checkpoint and metrics tarball of each) and attempts' metadata.

One row per (point, kind): an upload replaces the previous one. Blobs are content-addressed
and may be shared (two points with the same bytes, a sandbox with the same bytes), so a
replaced blob is dropped only when nothing references it any more.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, exists, insert, select, update

from hposteer.service.core.states import AttemptState
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import artifacts, attempts, blobs, dataset_files, points, segments, tasks


@dataclass(frozen=True)
class LiveAttempt:
    """A running attempt with a live lease, and what an upload of it needs to know."""

    attempt_id: int
    task_id: int
    point_id: int  # row id
    point_number: int
    segment_name: str
    owner: str
    job_settings: dict[str, Any] | None


@dataclass(frozen=True)
class ArtifactRecord:
    id: int
    task_id: int
    point_id: int  # row id
    point_number: int
    attempt_id: int
    attempt_number: int | None
    kind: str
    name: str
    sha256: str
    size: int
    created_at: float


@cache
def _live_attempt() -> Select[Any]:
    return (
        select(
            attempts.c.id.label("attempt_id"),
            attempts.c.task_id,
            attempts.c.point_id,
            points.c.number.label("point_number"),
            segments.c.name.label("segment_name"),
            tasks.c.owner,
            tasks.c.job_settings,
        )
        .join(points, points.c.id == attempts.c.point_id)
        .join(segments, segments.c.id == attempts.c.segment_id)
        .join(tasks, tasks.c.id == attempts.c.task_id)
        .where(
            attempts.c.id == bindparam("p_attempt_id"),
            attempts.c.lease_token == bindparam("p_lease_token"),
            attempts.c.state == AttemptState.RUNNING.value,
            attempts.c.lease_expires_at >= now_expr(),
        )
    )


def live_attempt(conn: Connection, attempt_id: int, lease_token: str) -> LiveAttempt | None:
    """The attempt if ``lease_token`` holds it, it runs and its lease is alive (database clock)."""
    row = conn.execute(_live_attempt(), {"p_attempt_id": attempt_id, "p_lease_token": lease_token}).first()
    return None if row is None else LiveAttempt(**row._mapping)


def _records() -> Select[Any]:
    return (
        select(
            artifacts.c.id,
            artifacts.c.task_id,
            artifacts.c.point_id,
            points.c.number.label("point_number"),
            artifacts.c.attempt_id,
            attempts.c.number.label("attempt_number"),
            artifacts.c.kind,
            artifacts.c.name,
            artifacts.c.sha256,
            artifacts.c.size,
            artifacts.c.created_at,
        )
        .join(points, points.c.id == artifacts.c.point_id)
        .outerjoin(attempts, attempts.c.id == artifacts.c.attempt_id)
    )


@cache
def _latest_sha() -> Select[Any]:
    return select(artifacts.c.id, artifacts.c.sha256, artifacts.c.size, artifacts.c.attempt_id).where(
        artifacts.c.point_id == bindparam("p_point_id"), artifacts.c.kind == bindparam("p_kind")
    )


def latest_blob(conn: Connection, point_id: int, kind: str) -> tuple[str, int] | None:
    """(sha256, size) of the point's artifact of this kind: one lookup on the unique (point, kind) index."""
    row = conn.execute(_latest_sha(), {"p_point_id": point_id, "p_kind": kind}).first()
    return None if row is None else (str(row.sha256), int(row.size))


def put_artifact(
    conn: Connection, *, task_id: int, point_id: int, attempt_id: int, kind: str, name: str, sha256: str, size: int
) -> tuple[int, str | None, bool]:
    """Make this the point's artifact of ``kind``; returns (artifact id, the sha256 it replaced, created).

    The blob's row must exist already (foreign key). ``created`` is False when the point already
    had these very bytes (a repeated upload), True otherwise.
    """
    row = conn.execute(_latest_sha(), {"p_point_id": point_id, "p_kind": kind}).first()
    if row is None:
        new_id = conn.execute(
            insert(artifacts)
            .values(
                task_id=task_id,
                point_id=point_id,
                attempt_id=attempt_id,
                kind=kind,
                name=name,
                sha256=sha256,
                size=size,
                created_at=now_expr(),
            )
            .returning(artifacts.c.id)
        ).scalar_one()
        return int(new_id), None, True
    same = row.sha256 == sha256
    if same and row.attempt_id == attempt_id:
        return int(row.id), None, False
    conn.execute(
        update(artifacts)
        .where(artifacts.c.id == row.id)
        .values(attempt_id=attempt_id, name=name, sha256=sha256, size=size, created_at=now_expr())
    )
    return int(row.id), None if same else str(row.sha256), not same


def blob_in_use(conn: Connection, sha256: str) -> bool:
    """Whether any artifact, task sandbox or dataset file still refers to the blob."""
    query = select(
        exists().where(artifacts.c.sha256 == sha256)
        | exists().where(tasks.c.sandbox_sha256 == sha256)
        | exists().where(dataset_files.c.sha256 == sha256)
    )
    return bool(conn.execute(query).scalar())


def drop_blob_row(conn: Connection, sha256: str) -> None:
    conn.execute(delete(blobs).where(blobs.c.sha256 == sha256))


def has_blob_row(conn: Connection, sha256: str) -> bool:
    return conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == sha256)).first() is not None


def artifacts_of_task(conn: Connection, task_id: int, kind: str | None = None) -> list[ArtifactRecord]:
    query = _records().where(artifacts.c.task_id == task_id).order_by(points.c.number, artifacts.c.kind)
    if kind is not None:
        query = query.where(artifacts.c.kind == kind)
    return [ArtifactRecord(**row._mapping) for row in conn.execute(query)]


def get_artifact(conn: Connection, task_id: int, artifact_id: int) -> ArtifactRecord | None:
    row = conn.execute(_records().where(artifacts.c.task_id == task_id, artifacts.c.id == artifact_id)).first()
    return None if row is None else ArtifactRecord(**row._mapping)


def metadata_of_task(
    conn: Connection, task_id: int, *, after: int, limit: int
) -> tuple[dict[int, list[dict[str, Any]]], int | None]:
    """Attempts' metadata by point number, for a page of the task's points (those after ``after``).

    Returns the points that have any metadata, and the ``after`` of the next page (None at the end).
    """
    numbers = list(
        conn.execute(
            select(points.c.id, points.c.number)
            .where(points.c.task_id == task_id, points.c.number > after)
            .order_by(points.c.number)
            .limit(limit)
        )
    )
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not numbers:
        return out, None
    by_id = {int(r.id): int(r.number) for r in numbers}
    rows = conn.execute(
        select(attempts.c.point_id, attempts.c.number, attempts.c.state, attempts.c.meta)
        .where(attempts.c.point_id.in_(list(by_id)))
        .order_by(attempts.c.point_id, attempts.c.number)
    )
    for row in rows:
        if row.meta is not None:  # JSON null and SQL NULL alike
            out[by_id[int(row.point_id)]].append({"number": int(row.number), "state": row.state, "meta": row.meta})
    next_after = int(numbers[-1].number) if len(numbers) == limit else None
    return dict(sorted(out.items())), next_after
