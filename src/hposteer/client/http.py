"""Typed client of the hposteer REST API (docs/api.md), shared by `phpo`, `hposteer` and pilots.

It sends the API-version header, turns error answers into exceptions that carry the
server's message, and retries what is safe to retry: requests that never reached the
server, and 503 answers (after their ``Retry-After``), with exponential backoff.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

import httpx

API_VERSION = "1"
API_PREFIX = "/api/v1"
VERSION_HEADER = "X-Hposteer-Api"


class ApiError(Exception):
    """The server answered with an error; ``message`` is the server's explanation."""

    def __init__(self, status: int, code: str, message: str, issues: list[dict[str, Any]] | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.issues = issues or []
        super().__init__(message)

    def describe(self) -> str:
        """The message plus one line per validation issue, for a terminal."""
        return "\n".join([self.message, *(issue_line(issue) for issue in self.issues)])


def issue_line(issue: Mapping[str, Any]) -> str:
    """One validation issue for a terminal: ``  - parameter 'lr', key 'high': must be greater than low``."""
    where = ", ".join(f"{k} {issue[k]!r}" for k in ("parameter", "key", "field") if issue.get(k) is not None)
    return f"  - {where}: {issue.get('message', '')}" if where else f"  - {issue.get('message')}"


class Unauthorized(ApiError):
    """401: the token is missing, unknown, expired or revoked."""


class Forbidden(ApiError):
    """403: the token's role may not call this route."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: e.g. a stale lease, or killing a task that already ended."""


class ServerUnreachable(Exception):
    """No answer from the server at all (refused, DNS, timeout) after the retries."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the hposteer server at {url}: {reason}. Check --server (or "
            "HPOSTEER_SERVER) and that the service is running (`hposteer serve`)."
        )


# -- the wire model ----------------------------------------------------------------------------
# One TypedDict per request or response body of docs/api.md: the client's side of the API's
# OpenAPI document (tests/client/test_wire_contract.py checks every field, its JSON type and
# whether it is required against the schema that create_app(...).openapi() publishes). Every
# field of an answer is sent, so every key of a response type is required; request types mark
# what the server lets a client leave out as NotRequired.


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
    last_step: int | None  # the highest step the service holds for the attempt: drop what is at or below it


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


@dataclass
class RetryPolicy:
    attempts: int = 5
    first_delay_s: float = 0.2
    max_delay_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def delays(self) -> Iterator[float]:
        delay = self.first_delay_s
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay_s)


_ERRORS: dict[int, type[ApiError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict}


class ApiClient:
    """One server, one token. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.server = server.rstrip("/")
        self.retry = retry or RetryPolicy()
        headers = {VERSION_HEADER: API_VERSION, "User-Agent": "hposteer-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        retry_unsafe: bool = False,
    ) -> httpx.Response:
        """Send a request; retry when it never reached the server, or on 503.

        ``content`` may be an iterable of chunks (streamed; it must be iterable again for a retry).

        ``retry_unsafe`` also retries on read timeouts and broken connections, where the server
        may have acted: only for calls whose repetition is harmless (idempotency keys, heartbeats).
        """
        delays = self.retry.delays()
        while True:
            try:
                response = self._http.request(method, path, json=json, content=content, headers=headers, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the request never left: always safe
                delay = next(delays, None)
                if delay is None:
                    raise ServerUnreachable(self.server, _reason(exc)) from exc
                self.retry.sleep(delay)
                continue
            except httpx.TimeoutException as exc:
                delay = next(delays, None) if retry_unsafe else None
                if delay is None:
                    raise ServerUnreachable(self.server, f"no answer in time ({exc.__class__.__name__})") from exc
                self.retry.sleep(delay)
                continue
            except httpx.TransportError as exc:
                # The connection broke after the request went out (a reset, a server killed mid-call):
                # the server may have acted, so only calls that are safe to repeat are repeated.
                delay = next(delays, None) if retry_unsafe else None
                if delay is None:
                    raise ServerUnreachable(self.server, f"the connection broke ({_reason(exc)})") from exc
                self.retry.sleep(delay)
                continue
            if response.status_code == 503:
                delay = next(delays, None)
                if delay is not None:
                    self.retry.sleep(max(delay, _retry_after(response)))
                    continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, API_PREFIX + path, **kw).json()

    # -- user routes ------------------------------------------------------------------------

    def health(self) -> Health:
        return cast(Health, self.request("GET", "/healthz", retry_unsafe=True).json())

    def has_sandbox(self, sha256: str) -> bool:
        try:
            self.request("HEAD", f"{API_PREFIX}/sandboxes/{sha256}", retry_unsafe=True)
        except NotFound:
            return False
        return True

    def upload_sandbox(self, data: bytes, sha256: str) -> StoredSandbox:
        return cast(
            StoredSandbox,
            self._json(
                "POST",
                "/sandboxes",
                content=data,
                headers={"Content-Type": "application/gzip", "X-Content-SHA256": sha256},
                retry_unsafe=True,  # content-addressed: storing the same bytes twice is harmless
            ),
        )

    def submit_task(self, submission: dict[str, Any]) -> TaskDetail:
        return cast(TaskDetail, self._json("POST", "/tasks", json=submission))

    def list_tasks(self, state: str | None = None, limit: int = 100) -> list[TaskSummary]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        return cast(TaskList, self._json("GET", "/tasks", params=params, retry_unsafe=True))["tasks"]

    def get_task(self, task_id: int) -> TaskDetail:
        return cast(TaskDetail, self._json("GET", f"/tasks/{task_id}", retry_unsafe=True))

    def list_points(self, task_id: int, state: str | None = None, after: int = 0, limit: int = 100) -> PointList:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if state:
            params["state"] = state
        return cast(PointList, self._json("GET", f"/tasks/{task_id}/points", params=params, retry_unsafe=True))

    def get_point(self, task_id: int, point_id: int) -> PointDetail:
        return cast(PointDetail, self._json("GET", f"/tasks/{task_id}/points/{point_id}", retry_unsafe=True))

    def point_reports(self, task_id: int, point_id: int, *, after: int = 0, limit: int = 1000) -> ReportList:
        path = f"/tasks/{task_id}/points/{point_id}/reports"
        return cast(ReportList, self._json("GET", path, params={"after": after, "limit": limit}, retry_unsafe=True))

    def retry_task(self, task_id: int) -> Retried:
        return cast(Retried, self._json("POST", f"/tasks/{task_id}/retry"))

    def kill_task(self, task_id: int) -> TaskDetail:
        return cast(TaskDetail, self._json("POST", f"/tasks/{task_id}/kill"))

    # -- pilot routes -----------------------------------------------------------------------

    def register_pilot(self, registration: PilotRegistration) -> Registration:
        return cast(Registration, self._json("POST", "/pilot/register", json=registration))

    def acquire(self, pilot_id: int, slot: str, *, request_key: str | None = None) -> Acquired:
        """Claim the slot's next job. The idempotency key makes a retry after a lost answer safe:
        the server hands back the job the first call claimed instead of claiming another."""
        body: AcquireRequest = {"pilot_id": pilot_id, "slot": slot, "request_key": request_key or new_request_key()}
        return cast(Acquired, self._json("POST", "/pilot/acquire", json=body, retry_unsafe=True))

    def heartbeat(
        self,
        attempt_id: int,
        lease_token: str,
        *,
        reports: Sequence[IntermediateReportBody] | None = None,
        refused: Sequence[str] | None = None,
    ) -> Heartbeat:
        """Extend the lease, sending the intermediate reports (and refused report lines) read since the last call.

        Re-sending reports is safe (the service ignores steps it holds); the answer's ``last_step`` says what it holds.
        """
        body: HeartbeatRequest = {"lease_token": lease_token}
        if reports:
            body["reports"] = list(reports)
        if refused:
            body["refused"] = list(refused)
        return cast(
            Heartbeat,
            self._json(
                "POST",
                f"/pilot/attempts/{attempt_id}/heartbeat",
                json=body,
                retry_unsafe=True,
            ),
        )

    def complete(
        self, attempt_id: int, report: CompletionReport, *, acquire_next: bool = False, request_key: str | None = None
    ) -> Completed:
        """Report an attempt's end; with ``acquire_next`` the answer carries the slot's next job (or null).

        Pass the same ``request_key`` when repeating a report whose answer was lost: the server
        then answers as it did the first time instead of refusing the repeat (R4).
        """
        body: CompletionReport = {**report, "request_key": request_key or new_request_key()}
        if acquire_next:
            body["acquire_next"] = True
        return cast(
            Completed, self._json("POST", f"/pilot/attempts/{attempt_id}/complete", json=body, retry_unsafe=True)
        )

    def download_sandbox(self, url_path: str, dest: Path) -> None:
        """Stream a sandbox to ``dest`` (written whole or not at all)."""
        self.download(url_path, dest)

    def download(self, url_path: str, dest: Path, *, headers: dict[str, str] | None = None) -> None:
        """Stream a GET's body to ``dest`` (written whole or not at all)."""
        tmp = dest.with_name(dest.name + ".part")
        with self._http.stream("GET", url_path, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _error_from(response)
            with tmp.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        tmp.replace(dest)


def new_request_key() -> str:
    """A fresh idempotency key for one pilot call (and all its retries)."""
    return secrets.token_urlsafe(18)


def _reason(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    if "Connection refused" in text or "ConnectError" in text:
        return "connection refused"
    return text


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0


# For answers without a body (HEAD) or from something that is not hposteer.
_DEFAULT_MESSAGES = {
    401: "the token is unknown, expired or revoked (401)",
    403: "this token's role may not do that (403)",
    404: "not found (404)",
}


def _error_from(response: httpx.Response) -> ApiError:
    code = f"http_{response.status_code}"
    message = _DEFAULT_MESSAGES.get(
        response.status_code, f"the server answered {response.status_code} {response.reason_phrase}"
    )
    issues: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", code))
        message = str(err.get("message", message))
        issues = list(err.get("issues") or [])
    return _ERRORS.get(response.status_code, ApiError)(response.status_code, code, message, issues)
