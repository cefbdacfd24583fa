"""Request and response bodies of the REST API (separate from the tables and the use cases)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from hposteer.service.api.artifact_schemas import JobCheckpointOut, JobMetaOut, JobMetricsOut
from hposteer.service.api.dataset_schemas import JobTrainingOut
from hposteer.service.api.response_body import ResponseBody


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(ResponseBody):
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
    failures_as_losses: bool = Field(
        False, description="tell failed points to the optimiser as the failure loss (PanDA) instead of as failures"
    )
    max_points_per_job: int | None = Field(None, ge=1, le=100_000, description="maxPointsPerEvaluationJob")
    evaluation_timeout_s: float | None = Field(
        None,
        gt=0,
        le=30 * 86400,
        description="--evaluationTimeout (minutes) in seconds: a longer evaluation is stopped",
    )
    checkpoint_to_save: list[str] | None = Field(None, max_length=64, description="--checkPointToSave, split at ','")
    checkpoint_to_load: str | None = None
    checkpoint_interval_s: float | None = Field(None, ge=0.5, le=86400, description="--checkPointInterval in seconds")
    evaluation_meta: str | None = None
    evaluation_metrics: str | None = None
    evaluation_training_data: str = "input_ds.json"
    training_ds: str | None = Field(None, description="--trainingDS: a dataset of yours (hposteer dataset ...)")
    report_file: str = Field(
        "hposteer_report.jsonl",
        description="--reportFile: the file in the working directory the payload appends its intermediate "
        "reports to (docs/multi-fidelity.md); a plain file name",
    )
    sandbox_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    options: dict[str, Any] = Field(default_factory=dict, description="every phpo option as given")
    dry_run: bool = False


class ProgressOut(ResponseBody):
    max_points: int
    generated: int
    pending: int
    running: int
    done: int
    failed: int
    cancelled: int
    jobs: int


class BestOut(ResponseBody):
    point_id: int
    segment: int
    params: Any
    loss: float


class SegmentOut(ResponseBody):
    index: int
    name: str
    state: str
    end_reason: str | None
    iteration: int
    progress: ProgressOut
    best: BestOut | None


class TaskSummaryOut(ResponseBody):
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
    brokerage: str | None = Field(None, description="set by `task show` when no recently seen pilot can run the task")
    warnings: list[str] = Field(
        default_factory=list, description="set by a submission: what was accepted but changed (repeated categories)"
    )


class TaskListOut(ResponseBody):
    tasks: list[TaskSummaryOut]


class AttemptOut(ResponseBody):
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


class AttemptDetailOut(AttemptOut):
    log_tail: str | None = Field(None, description="the last 64 KiB of the payload's output")
    meta: dict[str, Any] | None = Field(None, description="the evaluation's metadata (--evaluationMeta)")
    heartbeat_at: float | None = None
    lease_expires_at: float | None = None
    report_count: int = Field(0, description="intermediate reports stored for this attempt")
    last_report: ReportOut | None = Field(None, description="the attempt's last intermediate report to arrive")
    report_refusals: list[str] = Field(
        default_factory=list, description="the pilot's last refused report lines (at most 20)"
    )


class ReportOut(ResponseBody):
    seq: int = Field(description="the arrival order, across the point's attempts")
    attempt_number: int
    step: int
    metrics: dict[str, float]
    reported_at: float


class ReportListOut(ResponseBody):
    reports: list[ReportOut]
    next_after: int | None = Field(description="pass as ?after= for the next page; null: this page is the last")


class PointDetailOut(ResponseBody):
    id: int
    segment: int
    iteration: int
    params: Any
    state: str
    loss: float | None
    is_failure: bool
    created_at: float
    finished_at: float | None
    attempts: list[AttemptDetailOut]


class RetryOut(ResponseBody):
    requeued: int = Field(description="failed points put back to pending, each with a fresh round of attempts")
    task: TaskDetailOut


class PointOut(ResponseBody):
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


class PointListOut(ResponseBody):
    points: list[PointOut]
    next_after: int | None


class SandboxOut(ResponseBody):
    sha256: str
    size: int


# -- pilots ------------------------------------------------------------------------------------


_VERSION = r"^\d{1,6}(\.\d{1,6}){0,3}$"
_FLAG = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.]{1,64}$")]


class GpuIn(_In):
    """One GPU of a slot, as the pilot detected it (nvidia-smi) or its admin declared it."""

    index: str = Field(..., min_length=1, max_length=16)
    vendor: Literal["nvidia", "amd", "intel"] | None = None
    model: str | None = Field(None, min_length=1, max_length=128)
    memory_mb: int | None = Field(None, ge=1, le=10_000_000)
    driver_version: str | None = Field(None, pattern=_VERSION)
    cuda_version: str | None = Field(None, pattern=_VERSION)
    uarch: str | None = Field(None, pattern=r"^[A-Za-z0-9_.]{1,32}$")


class SlotIn(_In):
    name: str = Field(..., min_length=1, max_length=64)
    gpus: list[str] = Field(default_factory=list, max_length=64)
    gpu_info: list[GpuIn] = Field(default_factory=list, max_length=64, description="details of the slot's GPUs")


class CpuIn(_In):
    arch: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    vendor: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    flags: list[_FLAG] = Field(default_factory=list, max_length=512)


class CapabilitiesIn(_In):
    cpu: CpuIn | None = None
    network: bool = Field(False, description="payloads may use the network at this site")


class RegisterIn(_In):
    name: str = Field(..., min_length=1, max_length=256)
    site: str = Field(..., min_length=1, max_length=128)
    hostname: str = Field("", max_length=256)
    slots: list[SlotIn] = Field(..., min_length=1, max_length=1024)
    runtimes: list[str] = Field(default_factory=lambda: ["local"])
    version: str = Field("", max_length=64)
    capabilities: CapabilitiesIn | None = None


class RegisterOut(ResponseBody):
    pilot_id: int
    lease_ttl_s: float
    heartbeat_interval_s: float
    idle_poll_s: float


_KEY = Field(
    None,
    min_length=8,
    max_length=64,
    pattern=r"^[A-Za-z0-9_-]+$",
    description="idempotency key: a retried call with the same key gets the first call's answer",
)


class AcquireIn(_In):
    pilot_id: int
    slot: str = Field(..., min_length=1, max_length=64)
    request_key: str | None = _KEY


class SandboxRefOut(ResponseBody):
    sha256: str
    size: int
    url: str


class SegmentRefOut(ResponseBody):
    index: int
    name: str


class JobOut(ResponseBody):
    attempt_id: int
    lease_token: str
    lease_ttl_s: float
    heartbeat_interval_s: float
    task_id: int
    task_name: str
    point_id: int
    attempt_number: int
    job_number: int = Field(
        description="the job's number in its task, from 0, distinct per job (what %RNDM:n adds to n)"
    )
    segment: SegmentRefOut
    params: Any
    evaluation_exec: str
    evaluation_container: str | None
    evaluation_input: str
    evaluation_output: str
    sandbox: SandboxRefOut | None
    evaluation_timeout_s: float | None = Field(None, description="stop the evaluation after this long (timeout)")
    job_step: int = Field(1, description="this point's place in its job (1..max_points_per_job)")
    max_points_per_job: int = 1
    checkpoint: JobCheckpointOut | None = None
    meta: JobMetaOut | None = None
    metrics: JobMetricsOut | None = None
    training: JobTrainingOut | None = Field(None, description="training files to stage (docs/datasets.md)")
    report_file: str = Field(
        description="the file in the working directory to read intermediate reports from (docs/multi-fidelity.md)"
    )


class AcquireOut(ResponseBody):
    job: JobOut | None
    retry_after_s: float


class IntermediateReportIn(_In):
    """One intermediate report; checked by core.intermediate_reports.parse_report (its messages), not here."""

    step: Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 0})]
    metrics: Annotated[Any, WithJsonSchema({"type": "object", "additionalProperties": {"type": "number"}})]


class HeartbeatIn(_In):
    lease_token: str = Field(..., min_length=1, max_length=128)
    reports: list[IntermediateReportIn] = Field(
        default_factory=list,
        description="intermediate reports read from the payload's report file since the last acknowledged step, "
        "steps strictly increasing; at most 100 per call (docs/multi-fidelity.md)",
    )
    refused: list[str] = Field(
        default_factory=list,
        description="report lines the pilot refused, for the attempt's record: at most 20 of 500 characters",
    )


class HeartbeatOut(ResponseBody):
    action: Literal["continue", "kill"]
    lease_expires_in_s: float
    reports_stored: int = Field(..., description="reports newly stored by this call (re-sent ones do not count)")
    last_step: int | None = Field(
        ...,
        description="the highest step the service holds for this attempt; null when it holds none "
        "or this heartbeat carried no reports (then it is not looked up)",
    )


class CompleteIn(_In):
    lease_token: str = Field(..., min_length=1, max_length=128)
    outcome: Literal["success", "failure"]
    loss: float | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    message: str | None = Field(None, max_length=65536)
    log_tail: str | None = Field(None, max_length=262144)
    duration_s: float | None = None
    meta: dict[str, Any] | None = Field(None, description="the evaluation's metadata object (at most 1 MB)")
    request_key: str | None = _KEY
    acquire_next: bool = Field(False, description="also claim this slot's next job and return it")


class CompleteOut(ResponseBody):
    # ``repeated`` is sent only when true (a first report's answer never carried it).
    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    accepted: bool
    point_state: str
    next_job: JobOut | None
    repeated: bool = Field(
        False,
        exclude_if=lambda repeated: not repeated,
        description="true when this answers a retry of a completion already recorded; absent otherwise",
    )


class HealthOut(ResponseBody):
    status: str
    database: str
    version: str
