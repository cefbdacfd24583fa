"""Claiming a pilot slot's next job inside a claim-ending write, and rendering it for the pilot.

Shared by the two use cases whose transaction ends with a claim (``Database.write_ending_with_claim``):
acquire (operations.pilot_jobs) and complete, then claim (operations.completion). Nothing here
opens or ends a transaction; ``claim_job`` is the transaction's last write, and what runs after it
(``render``) only reads.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection

from hposteer.core.placeholders import fill_evaluation_exec
from hposteer.service.core.job_settings import JobSettings
from hposteer.service.operations import artifacts, datasets
from hposteer.service.operations.context import Services
from hposteer.service.operations.job_views import JobView, SandboxRefView, SegmentRefView
from hposteer.service.operations.outbox import Outbox
from hposteer.service.store import claims
from hposteer.service.store import pilots as pilot_store
from hposteer.service.store.claim_write import ClaimWrite
from hposteer.service.store.claims import Claim, ClaimRequest
from hposteer.service.store.pilots import PilotRecord
from hposteer.service.store.records import AttemptRecord


def pilot_of(conn: Connection, services: Services, pilot_id: int, owner: str) -> PilotRecord | None:
    """The pilot if this owner registered it (remembered: pilots never change)."""
    pilot = services.pilots.get(pilot_id)
    if pilot is None:
        pilot = pilot_store.get_pilot(conn, pilot_id, owner)
        if pilot is not None and len(services.pilots) < 100_000:
            services.pilots[pilot_id] = pilot
    return pilot if pilot is not None and pilot.owner == owner else None


def claim_job(
    tx: ClaimWrite,
    services: Services,
    pilot: PilotRecord,
    slot: str,
    *,
    request_key: str | None = None,
    after: AttemptRecord | None = None,
    carry: claims.CarriedMove | None = None,
    outbox: Outbox | None = None,
) -> JobView | None:
    """Claim a job for the slot, the transaction's last write, and render it; ``after`` (a
    just-finished attempt) lets its job take its next point when the task allows several points
    per job (maxPointsPerEvaluationJob), ``carry`` is its counter move (written by the claim, or
    left for the caller); ``outbox`` records it as a started job."""
    conn = tx.conn
    continuation = _continuation(conn, services, after) if after is not None else None
    services.brokerage.seen(conn, pilot.id)
    request = ClaimRequest(
        site=pilot.site,
        pilot_id=pilot.id,
        slot=slot,
        lease_ttl_s=services.settings.lease_ttl_s,
        request_key=request_key,
        continuation=continuation,
        allowed_task_ids=services.brokerage.allowed_tasks(conn, pilot.id, slot),
        carry=carry,
        task_of=services.claimed_task,
    )
    claim = claims.claim_next(tx, request)
    if claim is None and continuation is not None:  # the job's segment has no point for it: a new job
        claim = claims.claim_next(tx, replace(request, continuation=None))
    if claim is None:
        return None
    if outbox is not None:
        outbox.job_started(claim, pilot, slot)
    return render(conn, services, claim)


def job_again(conn: Connection, services: Services, attempt_id: int) -> JobView | None:
    """The job an earlier call claimed, rendered again (an idempotent retry's answer, R4)."""
    claim = claims.claim_of(conn, attempt_id)
    return None if claim is None else render(conn, services, claim)


def _continuation(conn: Connection, services: Services, after: AttemptRecord) -> claims.JobContinuation | None:
    per_job = services.points_per_job(conn, after.task_id)
    if per_job <= 1 or after.job_step >= per_job:
        return None
    return claims.JobContinuation(after.segment_id, after.job_number, after.job_step + 1)


def render(conn: Connection, services: Services, claim: Claim) -> JobView:
    """The job handed to the pilot for a claim (reads only: it may run after the claim's commit)."""
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
        report_file=job_settings.report_file,
    )
