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
from typing import Any, cast

import httpx

from hposteer.client.wire import (
    Acquired,
    AcquireRequest,
    Completed,
    CompletionReport,
    Health,
    Heartbeat,
    HeartbeatRequest,
    IntermediateReportBody,
    PilotRegistration,
    PointDetail,
    PointList,
    Registration,
    ReportList,
    Retried,
    StoredSandbox,
    TaskDetail,
    TaskList,
    TaskSummary,
)

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
