"""Checkpoints, metrics tarballs and metadata of attempts (issue 3 §4-5; docs/evaluation-contract.md).

Uploads are fenced like every pilot write: only the holder of a running attempt's live lease
may upload, checked before the body is read (so a stale pilot does not stream 100 MiB for
nothing) and again in the transaction that records it. A 2xx means the blob is fsynced and
its row committed; a refused or failed upload leaves neither. The service never opens the
tarballs: pilots extract them with their own validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from hposteer.service.core.job_settings import CHECKPOINT_MAX_BYTES, META_MAX_BYTES, METRICS_MAX_BYTES, JobSettings
from hposteer.service.core.job_settings import metrics_archive_name as _metrics_name
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.job_views import (
    JobArtifactsView,
    JobCheckpointView,
    JobMetaView,
    JobMetricsView,
    RestoreRefView,
)
from hposteer.service.operations.leases import lease_refusal
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import ArtifactView, AttemptMetaView, MetaListView, PointMetaView, UploadView
from hposteer.service.store import artifacts as artifact_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.artifacts import ArtifactRecord, LiveAttempt
from hposteer.service.store.blobs.base import StoredBlob
from hposteer.service.store.blobs.rows import record_blob
from hposteer.service.store.claims import Claim

KINDS = ("checkpoint", "metrics")
MAX_BYTES = {"checkpoint": CHECKPOINT_MAX_BYTES, "metrics": METRICS_MAX_BYTES}


def checkpoint_name(task_id: int, point_number: int) -> str:
    """PanDA keys checkpoints ``<taskID>_<sampleID>``; ours carry the extension too."""
    return f"{task_id}_{point_number}.checkpoint.tar.gz"


def _pilot_url(attempt_id: int, kind: str) -> str:
    return f"/api/v1/pilot/attempts/{attempt_id}/{kind}"


def job_fields(conn: Connection, services: Services, claim: Claim, settings: JobSettings) -> JobArtifactsView:
    """The job's ``checkpoint``, ``meta`` and ``metrics`` entries (docs/api.md, Job).

    On the claim's hot path: nothing is read unless the task saves checkpoints and this is a
    retry (a first attempt cannot have one), and then one lookup on the (point, kind) index.
    """
    checkpoint = None
    if settings.checkpoint is not None:
        restore = None
        if claim.attempt_number > 1:
            found = artifact_store.latest_blob(conn, claim.point.id, "checkpoint")
            if found is not None:
                restore = RestoreRefView(found[0], found[1], _pilot_url(claim.attempt_id, "checkpoint"))
        checkpoint = JobCheckpointView(
            save=list(settings.checkpoint.save),
            load_as=settings.checkpoint.load_as,
            interval_s=settings.checkpoint.interval_s,
            max_bytes=CHECKPOINT_MAX_BYTES,
            upload_url=_pilot_url(claim.attempt_id, "checkpoint"),
            restore=restore,
        )
    meta = JobMetaView(settings.meta_file, META_MAX_BYTES) if settings.meta_file else None
    metrics = None
    if settings.metrics_file:
        metrics = JobMetricsView(
            file=settings.metrics_file,
            archive_name=_metrics_name(claim.task.id, claim.point.number, claim.segment.name),
            max_bytes=METRICS_MAX_BYTES,
            upload_url=_pilot_url(claim.attempt_id, "metrics"),
        )
    return JobArtifactsView(checkpoint, meta, metrics)


# -- pilot uploads and the restore download ----------------------------------------------------


@dataclass(frozen=True)
class UploadTarget:
    attempt: LiveAttempt
    lease_token: str
    kind: str
    name: str
    max_bytes: int


def _live(services: Services, attempt_id: int, lease_token: str) -> LiveAttempt:
    with services.db.read() as conn:
        attempt = artifact_store.live_attempt(conn, attempt_id, lease_token)
    if attempt is None:
        raise lease_refusal(services, attempt_id, lease_token, what="upload")
    return attempt


def upload_target(services: Services, *, attempt_id: int, lease_token: str, kind: str) -> UploadTarget:
    """Check, before reading the body, that this upload may happen; what it is stored as."""
    attempt = _live(services, attempt_id, lease_token)
    settings = JobSettings.from_json(attempt.job_settings)
    if kind == "checkpoint":
        if settings.checkpoint is None:
            raise Invalid(
                f"task {attempt.task_id} saves no checkpoints (submit it with --checkPointToSave)",
                code="checkpoints_not_enabled",
            )
        name = checkpoint_name(attempt.task_id, attempt.point_number)
    else:
        if not settings.metrics_file:
            raise Invalid(
                f"task {attempt.task_id} collects no metrics (submit it with --evaluationMetrics)",
                code="metrics_not_enabled",
            )
        name = _metrics_name(attempt.task_id, attempt.point_number, attempt.segment_name)
    return UploadTarget(attempt, lease_token, kind, name, MAX_BYTES[kind])


def record_upload(services: Services, target: UploadTarget, blob: StoredBlob) -> tuple[UploadView, bool]:
    """Record a stored blob as the point's artifact (fenced again); returns (artifact, created)."""
    attempt = target.attempt
    replaced: str | None = None
    with services.db.write() as conn:
        live = artifact_store.live_attempt(conn, attempt.attempt_id, target.lease_token) is not None
        if live:
            record_blob(conn, blob, target.kind, attempt.owner)
            artifact_id, replaced, created = artifact_store.put_artifact(
                conn,
                task_id=attempt.task_id,
                point_id=attempt.point_id,
                attempt_id=attempt.attempt_id,
                kind=target.kind,
                name=target.name,
                sha256=blob.sha256,
                size=blob.size,
            )
            if replaced is not None and not artifact_store.blob_in_use(conn, replaced):
                artifact_store.drop_blob_row(conn, replaced)
            else:
                replaced = None
    if not live:
        discard_blob(services, blob.sha256)
        raise lease_refusal(services, attempt.attempt_id, target.lease_token, what="upload")
    if replaced is not None:
        _unlink(services, replaced)
    answer = UploadView(artifact_id, target.kind, attempt.point_number, target.name, blob.sha256, blob.size)
    return answer, created


def discard_blob(services: Services, sha256: str) -> None:
    """Remove a just-written blob file that no row accounts for (a refused upload leaves nothing)."""
    with services.db.read() as conn:
        known = artifact_store.has_blob_row(conn, sha256)
    if not known:
        _unlink(services, sha256)


def _unlink(services: Services, sha256: str) -> None:
    services.blobs.remove(sha256)


def checkpoint_for_restore(services: Services, *, attempt_id: int, lease_token: str) -> tuple[Path, str]:
    """The point's latest checkpoint, for the holder of one of its running attempts."""
    attempt = _live(services, attempt_id, lease_token)
    with services.db.read() as conn:
        found = artifact_store.latest_blob(conn, attempt.point_id, "checkpoint")
    path = services.blobs.path(found[0]) if found is not None else None
    if path is None:
        raise NotFound(f"point {attempt.point_number} has no checkpoint", code="checkpoint_not_found")
    return path, checkpoint_name(attempt.task_id, attempt.point_number)


# -- user views ----------------------------------------------------------------------------------


def _task_or_404(conn: Connection, principal: Principal, task_id: int) -> None:
    if task_store.get_task(conn, task_id, principal.owner_scope) is None:
        raise NotFound(f"task {task_id} does not exist (or belongs to another user)", code="task_not_found")


def _view(record: ArtifactRecord) -> ArtifactView:
    return ArtifactView(
        id=record.id,
        kind=record.kind,
        point_id=record.point_number,
        attempt=record.attempt_number,
        name=record.name,
        sha256=record.sha256,
        size=record.size,
        created_at=record.created_at,
        url=f"/api/v1/tasks/{record.task_id}/artifacts/{record.id}",
    )


def list_artifacts(services: Services, principal: Principal, task_id: int, kind: str | None) -> list[ArtifactView]:
    if kind is not None and kind not in KINDS:
        raise Invalid(f"unknown artifact kind {kind!r}; choose one of: {', '.join(KINDS)}")
    with services.db.read() as conn:
        _task_or_404(conn, principal, task_id)
        return [_view(r) for r in artifact_store.artifacts_of_task(conn, task_id, kind)]


def artifact_content(services: Services, principal: Principal, task_id: int, artifact_id: int) -> tuple[Path, str]:
    with services.db.read() as conn:
        _task_or_404(conn, principal, task_id)
        record = artifact_store.get_artifact(conn, task_id, artifact_id)
    path = services.blobs.path(record.sha256) if record is not None else None
    if record is None or path is None:
        raise NotFound(f"task {task_id} has no artifact {artifact_id}", code="artifact_not_found")
    return path, record.name


def task_metadata(services: Services, principal: Principal, task_id: int, *, after: int, limit: int) -> MetaListView:
    with services.db.read() as conn:
        _task_or_404(conn, principal, task_id)
        by_point, next_after = artifact_store.metadata_of_task(conn, task_id, after=after, limit=limit)
    points = [
        PointMetaView(number, [AttemptMetaView(a["number"], a["state"], a["meta"]) for a in attempts])
        for number, attempts in by_point.items()
    ]
    return MetaListView(points, next_after)
