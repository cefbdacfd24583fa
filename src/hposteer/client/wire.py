"""The client's side of the API's wire model: one TypedDict per request or response body.

These are the shapes of docs/api.md as plain dictionaries, so what the client sends and receives is
JSON as is; tests/client/test_wire_contract.py checks every field, its JSON type and whether it is
required against the schema that ``create_app(...).openapi()`` publishes. Every field of an answer
is sent, so every key of a response type is required; request types mark what the server lets a
client leave out as ``NotRequired``.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class Progress(TypedDict):
    max_points: int
    generated: int
    pending: int
    running: int
    done: int
    failed: int
    cancelled: int
    jobs: int


class Best(TypedDict):
    point_id: int
    segment: int
    params: Any
    loss: float


class TaskSummary(TypedDict):
    id: int
    name: str
    owner: str
    state: str
    end_reason: str | None
    optimizer: str
    created_at: float
    updated_at: float
    finished_at: float | None
    progress: Progress
    best: Best | None


class Segment(TypedDict):
    index: int
    name: str
    state: str
    end_reason: str | None
    iteration: int
    progress: Progress
    best: Best | None


class TaskDetail(TaskSummary):
    message: str | None
    seed: int | None
    settings: dict[str, Any]
    options: dict[str, Any]
    segments: list[Segment]
    brokerage: str | None  # why no recently seen pilot can run the task (`task show`)
    warnings: list[str]  # what a submission accepted but changed


class TaskList(TypedDict):
    tasks: list[TaskSummary]


class Attempt(TypedDict):
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
    duration_s: float | None
    job_number: int | None


class AttemptDetail(Attempt):
    log_tail: str | None
    meta: dict[str, Any] | None
    heartbeat_at: float | None
    lease_expires_at: float | None
    report_count: int  # intermediate reports stored (docs/multi-fidelity.md)
    last_report: Report | None
    report_refusals: list[str]  # the pilot's last refused report lines


class Report(TypedDict):
    """One intermediate report as the service keeps it; ``seq`` is the arrival order."""

    seq: int
    attempt_number: int
    step: int
    metrics: dict[str, float]
    reported_at: float


class ReportList(TypedDict):
    """GET /tasks/{id}/points/{n}/reports: a page in arrival order."""

    reports: list[Report]
    next_after: int | None


class Point(TypedDict):
    id: int
    segment: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: list[Attempt]


class PointDetail(TypedDict):
    id: int
    segment: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: list[AttemptDetail]


class PointList(TypedDict):
    points: list[Point]
    next_after: int | None


class Retried(TypedDict):
    requeued: int
    task: TaskDetail


class StoredSandbox(TypedDict):
    sha256: str
    size: int


class Health(TypedDict):
    status: str
    database: str
    version: str


# -- pilot bodies


class SandboxRef(TypedDict):
    sha256: str
    size: int
    url: str


class SegmentRef(TypedDict):
    index: int
    name: str


class RestoreRef(TypedDict):
    """The checkpoint a retried attempt restores (GET ``url`` with the lease token)."""

    sha256: str
    size: int
    url: str


class JobCheckpoint(TypedDict):
    save: list[str]
    load_as: str | None
    interval_s: float
    max_bytes: int
    upload_url: str
    restore: RestoreRef | None


class JobMeta(TypedDict):
    file: str
    max_bytes: int


class JobMetrics(TypedDict):
    file: str
    archive_name: str
    max_bytes: int
    upload_url: str


class TrainingFile(TypedDict):
    name: str
    size: int | None
    sha256: str | None
    url: str | None  # the service's download path (uploaded files)
    location: str | None  # registered: absolute path, file:// or http(s):// URL on the site


class Training(TypedDict):
    file: str  # --evaluationTrainingData
    files: list[TrainingFile]


class Job(TypedDict):
    """What a pilot runs (docs/api.md, Job). The pilot reads the later entries with ``.get``:
    a server older than its pilot may not send them."""

    attempt_id: int
    lease_token: str
    lease_ttl_s: float
    heartbeat_interval_s: float
    task_id: int
    task_name: str
    point_id: int
    attempt_number: int
    job_number: int  # the task's job counter (%RNDM offset)
    segment: SegmentRef
    params: Any
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sandbox: SandboxRef | None
    evaluation_timeout_s: float | None  # stop the payload after this long (failure class timeout)
    job_step: int  # this point's place in its job (maxPointsPerEvaluationJob)
    max_points_per_job: int
    checkpoint: JobCheckpoint | None  # parsed by client/pilot/checkpoints.py
    meta: JobMeta | None  # and these two by client/pilot/metrics.py
    metrics: JobMetrics | None
    training: Training | None  # staged by client/pilot/staging.py
    report_file: str  # the payload's intermediate reports, tailed by the pilot (docs/multi-fidelity.md)


class Registration(TypedDict):
    pilot_id: int
    lease_ttl_s: float
    heartbeat_interval_s: float
    idle_poll_s: float


class Acquired(TypedDict):
    job: Job | None
    retry_after_s: float


class Completed(TypedDict):
    accepted: bool
    point_state: str
    next_job: Job | None
    repeated: NotRequired[bool]  # sent (true) only when this answers a retry of a completion already recorded


class Heartbeat(TypedDict):
    action: Literal["continue", "kill"]
    lease_expires_in_s: float
    reports_stored: int  # reports newly stored by this call
    last_step: int | None  # the highest step held (null: none, or no reports sent): drop what is at or below it


# -- pilot requests


class GpuInfo(TypedDict):
    """One GPU of a slot, as detected (nvidia-smi) or declared by the site admin."""

    index: str
    vendor: NotRequired[Literal["nvidia", "amd", "intel"] | None]
    model: NotRequired[str | None]
    memory_mb: NotRequired[int | None]
    driver_version: NotRequired[str | None]
    cuda_version: NotRequired[str | None]
    uarch: NotRequired[str | None]


class SlotDeclaration(TypedDict):
    name: str
    gpus: NotRequired[list[str]]
    gpu_info: NotRequired[list[GpuInfo]]


class CpuDeclaration(TypedDict):
    arch: str
    vendor: NotRequired[str | None]
    flags: NotRequired[list[str]]


class CapabilitiesDeclaration(TypedDict):
    cpu: NotRequired[CpuDeclaration | None]
    network: NotRequired[bool]  # payloads may use the network at this site


class PilotRegistration(TypedDict):
    """POST /pilot/register; ``slots`` and ``capabilities`` come from client/pilot/capabilities.py."""

    name: str
    site: str
    hostname: NotRequired[str]
    slots: list[SlotDeclaration]
    runtimes: NotRequired[list[str]]
    version: NotRequired[str]
    capabilities: NotRequired[CapabilitiesDeclaration | None]


class AcquireRequest(TypedDict):
    pilot_id: int
    slot: str
    request_key: NotRequired[str | None]


class IntermediateReportBody(TypedDict):
    """One intermediate report (docs/multi-fidelity.md): a report line's step and its metrics."""

    step: int
    metrics: dict[str, float]


class HeartbeatRequest(TypedDict):
    lease_token: str
    reports: NotRequired[list[IntermediateReportBody]]  # at most 100, steps strictly increasing
    refused: NotRequired[list[str]]  # the pilot's refused report lines: at most 20 of 500 characters


class CompletionReport(TypedDict):
    """POST /pilot/attempts/{id}/complete: an attempt's end (client/pilot/evaluation.py's Report)."""

    lease_token: str
    outcome: Literal["success", "failure"]
    loss: NotRequired[float | None]
    failure_class: NotRequired[str | None]
    exit_code: NotRequired[int | None]
    message: NotRequired[str | None]
    log_tail: NotRequired[str | None]
    duration_s: NotRequired[float | None]
    meta: NotRequired[dict[str, Any] | None]
    request_key: NotRequired[str | None]
    acquire_next: NotRequired[bool]
