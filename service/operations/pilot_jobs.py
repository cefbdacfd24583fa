"""Pilot use cases: register, acquire a job, heartbeat, complete.

These are the hot path: each is one short write transaction. Every write after acquire
is fenced by (attempt id, lease token) and a live lease by the database clock; anything
else is refused with Conflict (409) and changes nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from service.core.placeholders import fill_evaluation_exec
from service.core.states import AttemptState
from service.operations.context import Services
from service.operations.errors import Conflict, Invalid, NotFound
from service.operations.lifecycle import attempt_ended
from service.operations.principal import Principal
from service.store import attempts as attempt_store
from service.store import pilots as pilot_store
from service.store import points as point_store
from service.store.pilots import PilotRecord
from service.store.points import Claim

FAILURE_CLASSES = (
    "payload_error",
    "missing_output",
    "invalid_output",
    "timeout",
    "killed",
    "pilot_error",
)
LOG_TAIL_MAX = 64 * 1024
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def register_pilot(
    services: Services,
    principal: Principal,
    *,
    name: str,
    site: str,
    hostname: str,
    slots: list[dict[str, Any]],
    runtimes: list[str],
    version: str,
) -> dict[str, Any]:
    if not _SITE.match(site):
        raise Invalid(f"invalid site name {site!r}: use letters, digits, '.', '_' and '-'")
    if not slots:
        raise Invalid("a pilot needs at least one slot")
    with services.db.write() as conn:
        pilot_id = pilot_store.register_pilot(
            conn,
            name=name,
            site=site,
            owner=principal.owner,
            hostname=hostname,
            slots=slots,
            runtimes=runtimes,
            version=version,
        )
    settings = services.settings
    return {
        "pilot_id": pilot_id,
        "lease_ttl_s": settings.lease_ttl_s,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "idle_poll_s": settings.idle_poll_s,
    }


def acquire(services: Services, principal: Principal, *, pilot_id: int, slot: str) -> dict[str, Any] | None:
    """Claim the next job for this pilot slot, or None when there is no work for it."""
    with services.db.write() as conn:
        pilot = _pilot(conn, services, pilot_id, principal.owner)
        if pilot is None:
            raise NotFound(
                f"pilot {pilot_id} is not registered with this token; register again", code="pilot_not_found"
            )
        return _claim_job(conn, services, pilot, slot)


def _pilot(conn: Connection, services: Services, pilot_id: int, owner: str) -> PilotRecord | None:
    """The pilot if this owner registered it (remembered: pilots never change)."""
    pilot = services.pilots.get(pilot_id)
    if pilot is None:
        pilot = pilot_store.get_pilot(conn, pilot_id, owner)
        if pilot is not None and len(services.pilots) < 100_000:
            services.pilots[pilot_id] = pilot
    return pilot if pilot is not None and pilot.owner == owner else None


def _claim_job(conn: Connection, services: Services, pilot: PilotRecord, slot: str) -> dict[str, Any] | None:
    settings = services.settings
    claim = point_store.claim_next(
        conn,
        site=pilot.site,
        pilot_id=pilot.id,
        slot=slot,
        lease_ttl_s=settings.lease_ttl_s,
        skip_locked=not services.db.is_sqlite,
    )
    if claim is None:
        return None
    sandbox = None
    if claim.task.sandbox_sha256 is not None:
        size = services.sandbox_size(conn, claim.task.sandbox_sha256)
        sandbox = {
            "sha256": claim.task.sandbox_sha256,
            "size": size or 0,
            "url": f"/api/v1/pilot/sandboxes/{claim.task.sandbox_sha256}",
        }
    return _job(claim, sandbox, settings.lease_ttl_s, settings.heartbeat_interval_s)


def _job(claim: Claim, sandbox: dict[str, Any] | None, ttl: float, heartbeat: float) -> dict[str, Any]:
    task, segment = claim.task, claim.segment
    params = [segment.idx, claim.point.params] if segment.segmented else claim.point.params
    return {
        "attempt_id": claim.attempt_id,
        "lease_token": claim.lease_token,
        "lease_ttl_s": ttl,
        "heartbeat_interval_s": heartbeat,
        "task_id": task.id,
        "task_name": task.name,
        "point_id": claim.point.number,
        "attempt_number": claim.attempt_number,
        "job_number": claim.job_number,
        "segment": {"index": segment.idx, "name": segment.name},
        "params": params,
        "evaluation_exec": fill_evaluation_exec(
            task.evaluation_exec, job_number=claim.job_number, segment_name=segment.name
        ),
        "evaluation_container": task.evaluation_container,
        "evaluation_input": task.evaluation_input,
        "evaluation_output": task.evaluation_output,
        "sandbox": sandbox,
    }


def _refusal(services: Services, attempt_id: int, lease_token: str) -> Conflict | NotFound:
    with services.db.read() as conn:
        view = attempt_store.lease_view(conn, attempt_id, lease_token)
    if view is None:
        return NotFound(f"attempt {attempt_id} does not exist", code="attempt_not_found")
    if not view.token_matches:
        return Conflict(f"attempt {attempt_id} is leased to someone else (wrong lease token)", code="lease_foreign")
    if view.state == AttemptState.CANCELLED.value:
        return Conflict(f"attempt {attempt_id} was cancelled (the task was killed)", code="attempt_cancelled")
    if view.state != AttemptState.RUNNING.value:
        return Conflict(f"attempt {attempt_id} has already ended ({view.state})", code="attempt_ended")
    return Conflict(f"the lease of attempt {attempt_id} expired; its result will not be used", code="lease_expired")


@dataclass(frozen=True)
class HeartbeatAnswer:
    action: str  # continue | kill
    lease_expires_in_s: float


def heartbeat(services: Services, *, attempt_id: int, lease_token: str) -> HeartbeatAnswer:
    with services.db.write() as conn:
        remaining = attempt_store.extend_lease(conn, attempt_id, lease_token, services.settings.lease_ttl_s)
    if remaining is not None:
        return HeartbeatAnswer("continue", remaining)
    refusal = _refusal(services, attempt_id, lease_token)
    if refusal.code == "attempt_cancelled":
        return HeartbeatAnswer("kill", 0.0)
    raise refusal


@dataclass(frozen=True)
class Report:
    """What the pilot says about a finished attempt."""

    lease_token: str
    outcome: str  # success | failure
    loss: float | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    message: str | None = None
    log_tail: str | None = None


def _check(report: Report) -> None:
    if report.outcome == "success":
        if report.loss is None or not math.isfinite(report.loss):
            raise Invalid("a successful attempt needs a finite loss", [{"field": "loss", "message": "finite number"}])
    elif report.outcome == "failure":
        if report.failure_class not in FAILURE_CLASSES:
            raise Invalid(
                f"failure_class must be one of: {', '.join(FAILURE_CLASSES)}",
                [{"field": "failure_class", "message": f"got {report.failure_class!r}"}],
            )
    else:
        raise Invalid("outcome must be 'success' or 'failure'", [{"field": "outcome", "message": report.outcome}])


def complete(
    services: Services, principal: Principal, *, attempt_id: int, report: Report, acquire_next: bool = False
) -> dict[str, Any]:
    """Record an attempt's end; with ``acquire_next``, claim the slot's next job in the same transaction.

    Handing the next job back with the completion saves the pilot a round trip per point.
    """
    _check(report)
    success = report.outcome == "success"
    tail = report.log_tail[-LOG_TAIL_MAX:] if report.log_tail else report.log_tail
    next_job = None
    with services.db.write() as conn:
        attempt = attempt_store.finish_attempt(
            conn,
            attempt_id=attempt_id,
            lease_token=report.lease_token,
            target=AttemptState.SUCCEEDED if success else AttemptState.FAILED,
            loss=report.loss if success else None,
            exit_code=report.exit_code,
            failure_class=None if success else report.failure_class,
            message=report.message,
            log_tail=tail,
        )
        if attempt is not None:
            settled = attempt_ended(conn, services, attempt, report.loss if success else None)
            if acquire_next and attempt.pilot_id is not None:
                pilot = _pilot(conn, services, attempt.pilot_id, principal.owner)
                if pilot is not None:
                    next_job = _claim_job(conn, services, pilot, attempt.slot)
    if attempt is None:
        raise _refusal(services, attempt_id, report.lease_token)
    services.steering.notify([attempt.segment_id])
    return {
        "accepted": True,
        "point_state": settled.state.value if settled else "cancelled",
        "next_job": next_job,
    }
