"""Pilot use cases: register, acquire a job, heartbeat, complete.

These are the hot path: each is one short write transaction. Every write after acquire
is fenced by (attempt id, lease token) and a live lease by the database clock; anything
else is refused with Conflict (409) and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hposteer.core.placeholders import fill_evaluation_exec
from hposteer.service.core.job_settings import META_MAX_BYTES, JobSettings
from hposteer.service.core.states import AttemptState
from hposteer.service.operations import artifacts, datasets
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.job_views import (
    CompletionView,
    JobView,
    RegistrationView,
    SandboxRefView,
    SegmentRefView,
)
from hposteer.service.operations.leases import lease_refusal
from hposteer.service.operations.lifecycle import begin_ending, finish_ending, may_need_steering
from hposteer.service.operations.outbox import Outbox
from hposteer.service.operations.principal import Principal
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import claims
from hposteer.service.store import pilots as pilot_store
from hposteer.service.store import points as point_store
from hposteer.service.store.claims import Claim
from hposteer.service.store.database import FinalStatementMissed, StoreBusy
from hposteer.service.store.pilots import PilotRecord
from hposteer.service.store.records import AttemptRecord

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
    capabilities: dict[str, Any] | None = None,
) -> RegistrationView:
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
            capabilities=capabilities,
        )
    settings = services.settings
    return RegistrationView(pilot_id, settings.lease_ttl_s, settings.heartbeat_interval_s, settings.idle_poll_s)


def acquire(
    services: Services, principal: Principal, *, pilot_id: int, slot: str, request_key: str | None = None
) -> JobView | None:
    """Claim the next job for this pilot slot, or None when there is no work for it.

    A retried call with the same ``request_key`` gets the job the first call claimed (R4):
    its answer may have been lost after the claim committed.
    """
    try:
        return _acquire(services, principal, pilot_id, slot, request_key, final=not services.db.is_sqlite)
    except FinalStatementMissed:  # a limit was reached meanwhile; everything was rolled back
        return _acquire(services, principal, pilot_id, slot, request_key, final=False)


def _acquire(
    services: Services, principal: Principal, pilot_id: int, slot: str, request_key: str | None, *, final: bool
) -> JobView | None:
    began = time.perf_counter()
    outbox = Outbox(services)
    with services.db.write() as conn:
        pilot = _pilot(conn, services, pilot_id, principal.owner)
        if pilot is None:
            raise NotFound(
                f"pilot {pilot_id} is not registered with this token; register again", code="pilot_not_found"
            )
        if request_key is not None:
            earlier = attempt_store.claimed_with_key(conn, pilot_id, request_key)
            if earlier is not None:
                return _job_again(conn, services, earlier)  # already told as a start_job
        job = _claim_job(conn, services, pilot, slot, request_key=request_key, outbox=outbox, final=final)
    services.meters.acquire(time.perf_counter() - began, job is not None)
    outbox.publish()
    return job


def _job_again(conn: Connection, services: Services, attempt_id: int) -> JobView | None:
    claim = claims.claim_of(conn, attempt_id)
    return None if claim is None else _render(conn, services, claim)


def _pilot(conn: Connection, services: Services, pilot_id: int, owner: str) -> PilotRecord | None:
    """The pilot if this owner registered it (remembered: pilots never change)."""
    pilot = services.pilots.get(pilot_id)
    if pilot is None:
        pilot = pilot_store.get_pilot(conn, pilot_id, owner)
        if pilot is not None and len(services.pilots) < 100_000:
            services.pilots[pilot_id] = pilot
    return pilot if pilot is not None and pilot.owner == owner else None


def _claim_job(
    conn: Connection,
    services: Services,
    pilot: PilotRecord,
    slot: str,
    *,
    request_key: str | None = None,
    after: AttemptRecord | None = None,
    carry: claims.CarriedMove | None = None,
    outbox: Outbox | None = None,
    final: bool = False,
) -> JobView | None:
    """Claim a job for the slot; ``after`` (a just-finished attempt) lets its job take its next point
    when the task allows several points per job (maxPointsPerEvaluationJob), ``carry`` is its
    counter move (written by the claim, or left for the caller); ``outbox`` records it as a
    started job; ``final``: the claim is the transaction's last write (store.claims)."""
    settings = services.settings
    claim = None
    continuation = _continuation(conn, services, after) if after is not None else None
    services.brokerage.seen(conn, pilot.id)
    allowed = services.brokerage.allowed_tasks(conn, pilot.id, slot)
    for attempt_continuation in (continuation, None) if continuation is not None else (None,):
        claim = claims.claim_next(
            conn,
            site=pilot.site,
            pilot_id=pilot.id,
            slot=slot,
            lease_ttl_s=settings.lease_ttl_s,
            skip_locked=not services.db.is_sqlite,
            request_key=request_key,
            continuation=attempt_continuation,
            allowed_task_ids=allowed,
            carry=carry,
            task_of=services.claimed_task,
            final=final,
        )
        if claim is not None:
            break
    if claim is None:
        return None
    if outbox is not None:
        outbox.job_started(claim, pilot, slot)
    return _render(conn, services, claim)


def _continuation(conn: Connection, services: Services, after: AttemptRecord) -> claims.JobContinuation | None:
    per_job = services.points_per_job(conn, after.task_id)
    if per_job <= 1 or after.job_step >= per_job:
        return None
    return claims.JobContinuation(after.segment_id, after.job_number, after.job_step + 1)


def _render(conn: Connection, services: Services, claim: Claim) -> JobView:
    """The job handed to the pilot for a claim."""
    settings = services.settings
    task, segment = claim.task, claim.segment
    sandbox = None
    if task.sandbox_sha256 is not None:
        size = services.sandbox_size(conn, task.sandbox_sha256)
        sandbox = SandboxRefView(task.sandbox_sha256, size or 0, f"/api/v1/pilot/sandboxes/{task.sandbox_sha256}")
    job_settings = JobSettings.from_json(task.job_settings)
    extras = artifacts.job_fields(conn, services, claim, job_settings)
    return JobView(
        attempt_id=claim.attempt_id,
        lease_token=claim.lease_token,
        lease_ttl_s=settings.lease_ttl_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        task_id=task.id,
        task_name=task.name,
        point_id=claim.point.number,
        attempt_number=claim.attempt_number,
        job_number=claim.job_number,
        segment=SegmentRefView(segment.idx, segment.name),
        params=[segment.idx, claim.point.params] if segment.segmented else claim.point.params,
        evaluation_exec=fill_evaluation_exec(
            task.evaluation_exec, job_number=claim.job_number, segment_name=segment.name
        ),
        evaluation_container=task.evaluation_container,
        evaluation_input=task.evaluation_input,
        evaluation_output=task.evaluation_output,
        sandbox=sandbox,
        evaluation_timeout_s=job_settings.evaluation_timeout_s,
        job_step=claim.job_step,
        max_points_per_job=task.max_points_per_job or 1,
        checkpoint=extras.checkpoint,
        meta=extras.meta,
        metrics=extras.metrics,
        training=datasets.job_training(conn, services, claim, job_settings),
    )


def _completed_again(conn: Connection, services: Services, attempt_id: int, report: Report) -> CompletionView | None:
    """The answer to a completion retried with the key that already completed the attempt (R4)."""
    assert report.request_key is not None
    earlier = attempt_store.completed_with_key(conn, attempt_id, report.lease_token, report.request_key)
    if earlier is None:
        return None
    point_state = point_store.point_state(conn, earlier.point_id)
    next_job = None
    if earlier.pilot_id is not None:
        claimed = attempt_store.claimed_with_key(conn, earlier.pilot_id, report.request_key)
        if claimed is not None:
            next_job = _job_again(conn, services, claimed)
    return CompletionView(accepted=True, point_state=point_state, next_job=next_job, repeated=True)


@dataclass(frozen=True)
class HeartbeatAnswer:
    action: str  # continue | kill
    lease_expires_in_s: float


def heartbeat(services: Services, *, attempt_id: int, lease_token: str) -> HeartbeatAnswer:
    with services.db.write() as conn:
        remaining = attempt_store.extend_lease(conn, attempt_id, lease_token, services.settings.lease_ttl_s)
    if remaining is not None:
        return HeartbeatAnswer("continue", remaining)
    refusal = lease_refusal(services, attempt_id, lease_token)
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
    meta: dict[str, Any] | None = None  # --evaluationMeta content
    request_key: str | None = None  # idempotency key (R4)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _check(report: Report) -> None:
    # Measured as compact UTF-8, as the file the pilot read (not json.dumps's padded, escaped default).
    if report.meta is not None and len(_compact(report.meta)) > META_MAX_BYTES:
        raise Invalid(
            f"meta is over {META_MAX_BYTES} bytes as JSON; the evaluation's metadata file must stay within 1 MB",
            [{"field": "meta", "message": "too large"}],
        )
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
) -> CompletionView:
    """Record an attempt's end; with ``acquire_next``, claim the slot's next job in the same transaction.

    Handing the next job back with the completion saves the pilot a round trip per point.
    """
    _check(report)
    final = acquire_next and not services.db.is_sqlite
    try:
        return _complete(services, principal, attempt_id, report, acquire_next, final=final)
    except FinalStatementMissed:  # the next job's claim met a limit; everything was rolled back
        return _complete(services, principal, attempt_id, report, acquire_next, final=False)


def _complete(
    services: Services, principal: Principal, attempt_id: int, report: Report, acquire_next: bool, *, final: bool
) -> CompletionView:
    success = report.outcome == "success"
    tail = report.log_tail[-LOG_TAIL_MAX:] if report.log_tail else report.log_tail
    next_job = None
    outbox = Outbox(services)
    claimed = Outbox(services)  # the next job's start, told after this attempt's end
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
            meta=report.meta,
            completion_key=report.request_key,
        )
        if attempt is not None:
            # The point is settled first; its segment's counters move in the next claim's segment
            # UPDATE (the last write before the commit: the hot row is held briefly), or below.
            ending = begin_ending(conn, services, attempt, report.loss if success else None)
            if acquire_next and attempt.pilot_id is not None:
                pilot = _pilot(conn, services, attempt.pilot_id, principal.owner)
                if pilot is not None:
                    next_job = _claim_job(
                        conn,
                        services,
                        pilot,
                        attempt.slot,
                        request_key=report.request_key,
                        after=attempt,
                        carry=ending.carry,
                        outbox=claimed,
                        final=final,
                    )
            settled = finish_ending(conn, ending, outbox)
        elif report.request_key is not None:
            again = _completed_again(conn, services, attempt_id, report)
            if again is not None:
                return again
    if attempt is None:
        raise lease_refusal(services, attempt_id, report.lease_token)
    outbox.publish()  # before waking steering: a round's end is told before the next round's points
    claimed.publish()
    if next_job is None and ending.carry is not None and ending.carry.passed_over and attempt.pilot_id is not None:
        # The claim passed over segments that other transactions held (it could not wait for them
        # while holding its own): committed now, a plain acquire may wait. Same key: a replay finds it.
        with contextlib.suppress(StoreBusy):  # the report is stored: the pilot then asks on its own
            next_job = acquire(
                services, principal, pilot_id=attempt.pilot_id, slot=attempt.slot, request_key=report.request_key
            )
    if may_need_steering(ending, settled):
        services.steering.notify([attempt.segment_id])
    return CompletionView(accepted=True, point_state=settled.state.value if settled else "cancelled", next_job=next_job)
