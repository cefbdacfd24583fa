"""Typed rows handed from the store to the use cases."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import Row

from hposteer.service.core.scheduling import SegmentCounts

T = TypeVar("T")


def from_row(cls: type[T], row: Row[Any] | Row[*tuple[Any, ...]]) -> T:
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class TaskRecord:
    id: int
    owner: str
    name: str
    state: str
    end_reason: str | None
    message: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    optimizer: str
    optimizer_mode: str
    seed: int
    max_points: int
    n_points_per_iteration: int
    min_unevaluated_points: int
    n_parallel_evaluation: int
    max_evaluation_jobs: int
    max_attempts: int
    failure_loss: float
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sites: str | None
    architecture: str
    priority: int
    sandbox_sha256: str | None
    options: dict[str, Any]
    failures_as_losses: bool
    requirements: dict[str, Any] | None
    job_settings: dict[str, Any] | None
    max_points_per_job: int | None


@dataclass(frozen=True)
class TaskLimits:
    """The few task columns the hot path needs; none of them ever changes after submission."""

    id: int
    max_points: int
    n_points_per_iteration: int
    min_unevaluated_points: int
    max_evaluation_jobs: int
    max_attempts: int
    failure_loss: float
    max_points_per_job: int | None


@dataclass(frozen=True)
class ClaimedTask:
    """What a job needs to know of its task."""

    id: int
    owner: str
    name: str
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sandbox_sha256: str | None
    job_settings: dict[str, Any] | None
    max_points_per_job: int | None
    n_segments: int  # numbers the jobs (store.claims.job_number)


@dataclass(frozen=True)
class SegmentRecord:
    id: int
    task_id: int
    idx: int
    name: str
    search_space: Any
    segmented: bool
    state: str
    end_reason: str | None
    iteration: int
    jobs: int
    extra_jobs: int
    generated: int
    pending: int
    running: int
    evaluated: int
    created_at: float
    finished_at: float | None

    @property
    def counts(self) -> SegmentCounts:
        return SegmentCounts(
            generated=self.generated,
            pending=self.pending,
            running=self.running,
            evaluated=self.evaluated,
            jobs=self.jobs - self.extra_jobs,  # against maxEvaluationJobs
        )


@dataclass(frozen=True)
class PointRecord:
    id: int
    task_id: int
    segment_id: int
    number: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    attempts: int
    retry_base: int
    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    point_id: int
    task_id: int
    segment_id: int
    number: int
    job_number: int
    pilot_id: int | None
    slot: str
    site: str
    state: str
    started_at: float
    ended_at: float | None
    lease_expires_at: float
    loss: float | None
    exit_code: int | None
    failure_class: str | None
    message: str | None
    job_step: int
