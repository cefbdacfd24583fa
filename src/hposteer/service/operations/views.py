"""Read models of tasks, points, datasets and artifacts, built from store records (the API serialises these).

Each view has exactly the fields of its response body in ``api/schemas.py`` (``TaskView`` and
``TaskDetailOut``, ...); tests/api/test_views_match_schemas.py holds them together. FastAPI validates
a route's view against its response model while serialising it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection

from hposteer.service.core.datasets import DatasetFile
from hposteer.service.core.job_settings import DEFAULT_REPORT_FILE
from hposteer.service.core.states import PointState
from hposteer.service.store import attempt_reports as report_store
from hposteer.service.store import points as point_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.attempt_reports import StoredReport
from hposteer.service.store.records import PointRecord, SegmentRecord, TaskRecord


@dataclass(frozen=True)
class ProgressView:
    max_points: int
    generated: int
    pending: int
    running: int
    done: int
    failed: int
    cancelled: int
    jobs: int


@dataclass(frozen=True)
class BestView:
    point_id: int
    segment: int
    params: Any
    loss: float


@dataclass(frozen=True)
class SegmentView:
    index: int
    name: str
    state: str
    end_reason: str | None
    iteration: int
    progress: ProgressView
    best: BestView | None


@dataclass(frozen=True)
class TaskView:
    id: int
    name: str
    owner: str
    state: str
    end_reason: str | None
    optimizer: str
    created_at: float
    updated_at: float
    finished_at: float | None
    progress: ProgressView
    best: BestView | None
    message: str | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    segments: list[SegmentView] = field(default_factory=list)
    brokerage: str | None = None  # `task show` only: why no pilot can run the task (operations.brokerage)
    warnings: list[str] = field(default_factory=list)  # submission only: what was accepted but changed


@dataclass(frozen=True)
class AttemptView:
    number: int
    state: str
    pilot: str | None
    site: str
    slot: str
    started_at: float
    ended_at: float | None
    exit_code: int | None
    failure_class: str | None
    message: str | None
    duration_s: float | None = None
    job_number: int | None = None


@dataclass(frozen=True)
class AttemptDetailView(AttemptView):
    """An attempt with what only a single point's page needs: the payload's log tail and metadata."""

    log_tail: str | None = None
    meta: dict[str, Any] | None = None
    heartbeat_at: float | None = None
    lease_expires_at: float | None = None
    report_count: int = 0  # intermediate reports stored (docs/multi-fidelity.md)
    last_report: ReportView | None = None
    report_refusals: list[str] = field(default_factory=list)  # the pilot's last refused report lines


@dataclass(frozen=True)
class ReportView:
    """One intermediate report of a point, as the reports route and the point's page show it."""

    seq: int
    attempt_number: int
    step: int
    metrics: dict[str, float]
    reported_at: float


@dataclass(frozen=True)
class ReportListView:
    reports: list[ReportView]
    next_after: int | None  # the seq to ask after for more, or None when this page is the last


def report_view(report: StoredReport) -> ReportView:
    return ReportView(report.seq, report.attempt_number, report.step, report.metrics, report.reported_at)


A = TypeVar("A", bound="AttemptView")


@dataclass(frozen=True)
class PointView:
    id: int
    segment: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: list[AttemptView]


@dataclass(frozen=True)
class TaskListView:
    tasks: list[TaskView]


@dataclass(frozen=True)
class PointListView:
    points: list[PointView]
    next_after: int | None


@dataclass(frozen=True)
class RetryView:
    requeued: int
    task: TaskView


@dataclass(frozen=True)
class SandboxView:
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSummaryView:
    name: str
    kind: str  # uploaded | registered
    created_at: float
    in_use: bool
    file_count: int
    size: int


@dataclass(frozen=True)
class DatasetView(DatasetSummaryView):
    files: list[DatasetFile]


@dataclass(frozen=True)
class DatasetListView:
    datasets: list[DatasetSummaryView]


@dataclass(frozen=True)
class UploadView:
    """A checkpoint or metrics tarball just stored for a running attempt."""

    id: int
    kind: str
    point_id: int
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ArtifactView:
    id: int
    kind: str
    point_id: int
    attempt: int | None
    name: str
    sha256: str
    size: int
    created_at: float
    url: str


@dataclass(frozen=True)
class ArtifactListView:
    artifacts: list[ArtifactView]


@dataclass(frozen=True)
class AttemptMetaView:
    number: int
    state: str
    meta: Any


@dataclass(frozen=True)
class PointMetaView:
    point_id: int
    attempts: list[AttemptMetaView]


@dataclass(frozen=True)
class MetaListView:
    points: list[PointMetaView]
    next_after: int | None


def _progress(by_state: dict[str, int], jobs: int, max_points: int) -> ProgressView:
    return ProgressView(
        max_points=max_points,
        generated=sum(by_state.values()),
        pending=by_state.get(PointState.PENDING.value, 0),
        running=by_state.get(PointState.RUNNING.value, 0),
        done=by_state.get(PointState.DONE.value, 0),
        failed=by_state.get(PointState.FAILED.value, 0),
        cancelled=by_state.get(PointState.CANCELLED.value, 0),
        jobs=jobs,
    )


def sum_progress(views: Sequence[ProgressView]) -> ProgressView:
    return ProgressView(*(sum(getattr(v, f) for v in views) for f in ProgressView.__dataclass_fields__))


def best_view(point: PointRecord | None, segment_index: dict[int, int]) -> BestView | None:
    if point is None or point.loss is None:
        return None
    return BestView(point.number, segment_index.get(point.segment_id, 0), point.params, point.loss)


def settings_of(task: TaskRecord) -> dict[str, Any]:
    return {
        "max_points": task.max_points,
        "n_points_per_iteration": task.n_points_per_iteration,
        "min_unevaluated_points": task.min_unevaluated_points,
        "n_parallel_evaluation": task.n_parallel_evaluation,
        "max_evaluation_jobs": task.max_evaluation_jobs,
        "max_attempts": task.max_attempts,
        "failure_loss": task.failure_loss,
        "failures_as_losses": task.failures_as_losses,
        "max_points_per_job": task.max_points_per_job or 1,
        **_job_settings(task.job_settings or {}),
    }


def _job_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The job settings the task set (the training-data file name only with a training dataset)."""
    shown = {k: v for k, v in values.items() if v is not None}
    if "training_dataset" not in shown:
        shown.pop("training_data_file", None)
    if shown.get("report_file") == DEFAULT_REPORT_FILE:
        shown.pop("report_file")
    return shown


def task_views(conn: Connection, records: Sequence[TaskRecord], *, detail: bool) -> list[TaskView]:
    segments_by_task = task_store.segments_of_tasks(conn, [t.id for t in records])
    all_segments = [s for segs in segments_by_task.values() for s in segs]
    counts = task_store.state_counts(conn, [s.id for s in all_segments])
    views = []
    for task in records:
        segments = segments_by_task.get(task.id, [])
        index = {s.id: s.idx for s in segments}
        seg_progress = {s.id: _progress(counts.get(s.id, {}), s.jobs, task.max_points) for s in segments}
        best = best_view(task_store.best_point(conn, task_id=task.id, segment_id=None, mode=task.optimizer_mode), index)
        base: dict[str, Any] = {
            "id": task.id,
            "name": task.name,
            "owner": task.owner,
            "state": task.state,
            "end_reason": task.end_reason,
            "optimizer": task.optimizer,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "finished_at": task.finished_at,
            "progress": sum_progress(list(seg_progress.values())) if segments else _progress({}, 0, 0),
            "best": best,
        }
        if detail:
            base.update(
                message=task.message,
                seed=task.seed,
                settings=settings_of(task),
                options=task.options,
                segments=[segment_view(conn, task, s, seg_progress[s.id], index) for s in segments],
            )
        views.append(TaskView(**base))
    return views


def segment_view(
    conn: Connection, task: TaskRecord, segment: SegmentRecord, progress: ProgressView, index: dict[int, int]
) -> SegmentView:
    best = task_store.best_point(conn, task_id=task.id, segment_id=segment.id, mode=task.optimizer_mode)
    return SegmentView(
        index=segment.idx,
        name=segment.name,
        state=segment.state,
        end_reason=segment.end_reason,
        iteration=segment.iteration,
        progress=progress,
        best=best_view(best, index),
    )


def _attempt_view(cls: type[A], row: Mapping[str, Any], pilot: str | None, **extra: Any) -> A:
    """An attempt's view from its columns (a record's fields or a row), timing derived."""
    return cls(
        number=row["number"],
        state=row["state"],
        pilot=pilot,
        site=row["site"],
        slot=row["slot"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        failure_class=row["failure_class"],
        message=row["message"],
        duration_s=None if row["ended_at"] is None else round(row["ended_at"] - row["started_at"], 3),
        job_number=row["job_number"],
        **extra,
    )


def _point_view(p: PointRecord, segment_index: dict[int, int], attempts: list[AttemptView]) -> PointView:
    return PointView(
        id=p.number,
        segment=segment_index.get(p.segment_id, 0),
        iteration=p.iteration,
        params=p.params,
        state=p.state,
        loss=p.loss,
        is_failure=p.is_failure,
        created_at=p.created_at,
        finished_at=p.finished_at,
        attempts=attempts,
    )


def point_views(conn: Connection, records: Sequence[PointRecord], segment_index: dict[int, int]) -> list[PointView]:
    """Points with their attempts as listings show them (no log tails, no metadata)."""
    attempts = point_store.attempts_of(conn, [p.id for p in records])
    return [
        _point_view(
            p,
            segment_index,
            [_attempt_view(AttemptView, asdict(a["record"]), a["pilot"]) for a in attempts.get(p.id, [])],
        )
        for p in records
    ]


def point_detail_view(conn: Connection, point: PointRecord, segment_index: dict[int, int]) -> PointView:
    """One point with each attempt in full (``AttemptDetailView``: log tail, metadata, lease times, reports)."""
    rows = point_store.attempt_details(conn, point.id)
    reports = report_store.summaries(conn, [row["id"] for row in rows])
    attempts: list[AttemptView] = []
    for row in rows:
        summary = reports.get(row["id"])
        attempts.append(
            _attempt_view(
                AttemptDetailView,
                row,
                row["pilot_name"],
                log_tail=row["log_tail"],
                meta=row["meta"],
                heartbeat_at=row["heartbeat_at"],
                lease_expires_at=row["lease_expires_at"],
                report_count=summary.count if summary else 0,
                last_report=report_view(summary.last) if summary and summary.last else None,
                report_refusals=list(row["report_refusals"] or []),
            )
        )
    return _point_view(point, segment_index, attempts)
