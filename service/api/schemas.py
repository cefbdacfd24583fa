"""Request and response bodies of the REST API (separate from the tables and the use cases)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- tasks -------------------------------------------------------------------------------------


class SegmentSpecIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    files: list[str] | None = None
    datasets: list[str] | None = None


class TaskSubmission(_In):
    name: str = Field(..., min_length=1, max_length=500, description="outDS; a trailing '/' is added")
    evaluation_exec: str = Field(..., description="evaluationExec")
    evaluation_container: str | None = None
    evaluation_input: str = "input.json"
    evaluation_output: str = "output.json"
    search_space: dict[str, Any] | list[Any] | None = Field(
        None, description="hpogrid search space, or a list of {model_id, search_space} for segments"
    )
    segments: list[SegmentSpecIn] | None = None
    optimizer: str | None = Field(None, description="builtin optimiser LIB[:METHOD], e.g. tpe, nevergrad:NGOpt")
    steering_exec: str | None = None
    steering_container: str | None = None
    max_points: int = Field(10, ge=1, le=1_000_000)
    n_points_per_iteration: int = Field(2, ge=1, le=100_000)
    min_unevaluated_points: int | None = Field(None, ge=0)
    n_parallel_evaluation: int = Field(1, ge=1, le=100_000)
    max_evaluation_jobs: int | None = Field(None, ge=1)
    max_attempts: int = Field(3, ge=1, le=10)
    site: str | None = None
    architecture: str = ""
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    priority: int = Field(0, ge=-1000, le=1000)
    sandbox_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    options: dict[str, Any] = Field(default_factory=dict, description="every phpo option as given")
    dry_run: bool = False


class ProgressOut(_Out):
    max_points: int
    generated: int
    pending: int
    running: int
    done: int
    failed: int
    cancelled: int
    jobs: int


class BestOut(_Out):
    point_id: int
    segment: int
    params: Any
    loss: float


class SegmentOut(_Out):
    index: int
    name: str
    state: str
    end_reason: str | None
    iteration: int
    progress: ProgressOut
    best: BestOut | None


class TaskSummaryOut(_Out):
    id: int
    name: str
    owner: str
    state: str
    end_reason: str | None
    optimizer: str
    created_at: float
    updated_at: float
    finished_at: float | None
    progress: ProgressOut
    best: BestOut | None


class TaskDetailOut(TaskSummaryOut):
    message: str | None
    seed: int | None
    settings: dict[str, Any]
    options: dict[str, Any]
    segments: list[SegmentOut]


class TaskListOut(BaseModel):
    tasks: list[TaskSummaryOut]


class AttemptOut(_Out):
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


class PointOut(_Out):
    id: int
    segment: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: list[AttemptOut]


class PointListOut(BaseModel):
    points: list[PointOut]
    next_after: int | None


class SandboxOut(BaseModel):
    sha256: str
    size: int


# -- pilots ------------------------------------------------------------------------------------


class SlotIn(_In):
    name: str = Field(..., min_length=1, max_length=64)
    gpus: list[str] = Field(default_factory=list)


class RegisterIn(_In):
    name: str = Field(..., min_length=1, max_length=256)
    site: str = Field(..., min_length=1, max_length=128)
    hostname: str = Field("", max_length=256)
    slots: list[SlotIn] = Field(..., min_length=1, max_length=1024)
    runtimes: list[str] = Field(default_factory=lambda: ["local"])
    version: str = Field("", max_length=64)


class RegisterOut(BaseModel):
    pilot_id: int
    lease_ttl_s: float
    heartbeat_interval_s: float
    idle_poll_s: float


class AcquireIn(_In):
    pilot_id: int
    slot: str = Field(..., min_length=1, max_length=64)


class SandboxRefOut(BaseModel):
    sha256: str
    size: int
    url: str


class SegmentRefOut(BaseModel):
    index: int
    name: str


class JobOut(BaseModel):
    attempt_id: int
    lease_token: str
    lease_ttl_s: float
    heartbeat_interval_s: float
    task_id: int
    task_name: str
    point_id: int
    attempt_number: int
    job_number: int = Field(description="the task's job counter, from 0 (what %RNDM:n adds to n)")
    segment: SegmentRefOut
    params: Any
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sandbox: SandboxRefOut | None


class AcquireOut(BaseModel):
    job: JobOut | None
    retry_after_s: float


class HeartbeatIn(_In):
    lease_token: str = Field(..., min_length=1, max_length=128)


class HeartbeatOut(BaseModel):
    action: Literal["continue", "kill"]
    lease_expires_in_s: float


class CompleteIn(_In):
    lease_token: str = Field(..., min_length=1, max_length=128)
    outcome: Literal["success", "failure"]
    loss: float | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    message: str | None = Field(None, max_length=65536)
    log_tail: str | None = Field(None, max_length=262144)
    duration_s: float | None = None
    acquire_next: bool = Field(False, description="also claim this slot's next job and return it")


class CompleteOut(BaseModel):
    accepted: bool
    point_state: str
    next_job: JobOut | None = None


class HealthOut(BaseModel):
    status: str
    database: str
    version: str
