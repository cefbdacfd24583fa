"""Pilot routes: register, acquire, heartbeat, complete, sandbox download.

Each route returns its use case's typed view and FastAPI validates it against the declared
response model once, while serialising it (so the OpenAPI document is what is sent). The hot
routes are ``async`` and hand the use case to the thread pool themselves: a plain ``def`` route
would have FastAPI validate its answer in a second thread-pool hop.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from hposteer.service import __version__
from hposteer.service.api.deps import PilotDep, ServicesDep
from hposteer.service.api.schemas import (
    AcquireIn,
    AcquireOut,
    CompleteIn,
    CompleteOut,
    HeartbeatIn,
    HeartbeatOut,
    RegisterIn,
    RegisterOut,
)
from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.job_views import AcquireView, CompletionView, RegistrationView
from hposteer.service.operations.sandboxes import sandbox_path

router = APIRouter(prefix="/api/v1/pilot", tags=["pilots"])


@router.post("/register", response_model=RegisterOut)
def post_register(body: RegisterIn, svc: ServicesDep, principal: PilotDep) -> RegistrationView:
    return pilot_jobs.register_pilot(
        svc,
        principal,
        name=body.name,
        site=body.site,
        hostname=body.hostname,
        slots=[s.model_dump(exclude_none=True) for s in body.slots],
        runtimes=body.runtimes,
        version=body.version or __version__,
        capabilities=body.capabilities.model_dump(exclude_none=True) if body.capabilities else None,
    )


@router.post("/acquire", response_model=AcquireOut)
async def post_acquire(body: AcquireIn, svc: ServicesDep, principal: PilotDep) -> AcquireView:
    job = await run_in_threadpool(
        lambda: pilot_jobs.acquire(svc, principal, pilot_id=body.pilot_id, slot=body.slot, request_key=body.request_key)
    )
    return AcquireView(job, svc.settings.idle_poll_s)


@router.post("/attempts/{attempt_id}/heartbeat", response_model=HeartbeatOut)
async def post_heartbeat(
    attempt_id: int, body: HeartbeatIn, svc: ServicesDep, principal: PilotDep
) -> pilot_jobs.HeartbeatAnswer:
    return await run_in_threadpool(
        lambda: pilot_jobs.heartbeat(
            svc,
            attempt_id=attempt_id,
            lease_token=body.lease_token,
            reports=[r.model_dump() for r in body.reports],
            refused=body.refused,
        )
    )


@router.post("/attempts/{attempt_id}/complete", response_model=CompleteOut)
async def post_complete(attempt_id: int, body: CompleteIn, svc: ServicesDep, principal: PilotDep) -> CompletionView:
    report = completion.Report(
        lease_token=body.lease_token,
        outcome=body.outcome,
        loss=body.loss,
        failure_class=body.failure_class,
        exit_code=body.exit_code,
        message=body.message,
        log_tail=body.log_tail,
        meta=body.meta,
        request_key=body.request_key,
    )
    return await run_in_threadpool(
        lambda: completion.complete(
            svc, principal, attempt_id=attempt_id, report=report, acquire_next=body.acquire_next
        )
    )


@router.get("/sandboxes/{sha256}")
def get_sandbox(sha256: str, svc: ServicesDep, principal: PilotDep) -> FileResponse:
    return FileResponse(sandbox_path(svc, sha256), media_type="application/gzip", filename=f"{sha256}.tar.gz")
