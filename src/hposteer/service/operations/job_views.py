"""What the pilot use cases answer: a registration, a job, a completion (the API serialises these).

Each view has exactly the fields of its response body in ``api/schemas.py`` (``JobView`` and
``JobOut``, ...), in the order they are sent; tests/api/test_views_match_schemas.py holds them
together. They are plain dataclasses: a job is built on the claim's hot path, and FastAPI
validates it against the response model once, while serialising it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RegistrationView:
    pilot_id: int
    lease_ttl_s: float
    heartbeat_interval_s: float
    idle_poll_s: float


@dataclass(frozen=True, slots=True)
class SandboxRefView:
    sha256: str
    size: int
    url: str


@dataclass(frozen=True, slots=True)
class SegmentRefView:
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class RestoreRefView:
    """The checkpoint a retried attempt restores (downloaded from ``url`` with the lease token)."""

    sha256: str
    size: int
    url: str


@dataclass(frozen=True, slots=True)
class JobCheckpointView:
    save: list[str]
    load_as: str | None
    interval_s: float
    max_bytes: int
    upload_url: str
    restore: RestoreRefView | None


@dataclass(frozen=True, slots=True)
class JobMetaView:
    file: str
    max_bytes: int


@dataclass(frozen=True, slots=True)
class JobMetricsView:
    file: str
    archive_name: str
    max_bytes: int
    upload_url: str


@dataclass(frozen=True, slots=True)
class JobTrainingFileView:
    name: str
    size: int | None
    sha256: str | None
    url: str | None
    location: str | None


@dataclass(frozen=True, slots=True)
class JobTrainingView:
    file: str
    files: list[JobTrainingFileView]


@dataclass(frozen=True, slots=True)
class JobArtifactsView:
    """The job's checkpoint, metadata and metrics entries (operations.artifacts.job_fields)."""

    checkpoint: JobCheckpointView | None
    meta: JobMetaView | None
    metrics: JobMetricsView | None


@dataclass(frozen=True, slots=True)
class JobView:
    attempt_id: int
    lease_token: str
    lease_ttl_s: float
    heartbeat_interval_s: float
    task_id: int
    task_name: str
    point_id: int
    attempt_number: int
    job_number: int
    segment: SegmentRefView
    params: Any
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sandbox: SandboxRefView | None
    evaluation_timeout_s: float | None
    job_step: int
    max_points_per_job: int
    checkpoint: JobCheckpointView | None
    meta: JobMetaView | None
    metrics: JobMetricsView | None
    training: JobTrainingView | None
    report_file: str  # --reportFile: the payload's intermediate reports (docs/multi-fidelity.md)


@dataclass(frozen=True, slots=True)
class AcquireView:
    job: JobView | None
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class CompletionView:
    accepted: bool
    point_state: str
    next_job: JobView | None
    repeated: bool = False  # this answers a retry of a completion already recorded (R4)
