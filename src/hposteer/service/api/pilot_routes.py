"""Pilot routes: register, acquire, heartbeat, complete, sandbox download."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

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
from hposteer.service.operations.sandboxes import sandbox_path

router = APIRouter(prefix="/api/v1/pilot", tags=["pilots"])


def _json(body: Any) -> Response:
    """The hot routes build their answers themselves (the use cases return exactly the documented
    shape), which spares FastAPI re-validating them against the response model on every call."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.post("/register", response_model=RegisterOut)
def post_register(body: RegisterIn, svc: ServicesDep, principal: PilotDep) -> Any:
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
def post_acquire(body: AcquireIn, svc: ServicesDep, principal: PilotDep) -> Any:
    job = pilot_jobs.acquire(svc, principal, pilot_id=body.pilot_id, slot=body.slot, request_key=body.request_key)
    return _json({"job": job, "retry_after_s": svc.settings.idle_poll_s})


@router.post("/attempts/{attempt_id}/heartbeat", response_model=HeartbeatOut)
def post_heartbeat(attempt_id: int, body: HeartbeatIn, svc: ServicesDep, principal: PilotDep) -> Any:
    answer = pilot_jobs.heartbeat(svc, attempt_id=attempt_id, lease_token=body.lease_token)
    return _json({"action": answer.action, "lease_expires_in_s": answer.lease_expires_in_s})


@router.post("/attempts/{attempt_id}/complete", response_model=CompleteOut)
def post_complete(attempt_id: int, body: CompleteIn, svc: ServicesDep, principal: PilotDep) -> Any:
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
    return _json(
        completion.complete(svc, principal, attempt_id=attempt_id, report=report, acquire_next=body.acquire_next)
    )


@router.get("/sandboxes/{sha256}")
def get_sandbox(sha256: str, svc: ServicesDep, principal: PilotDep) -> FileResponse:
    return FileResponse(sandbox_path(svc, sha256), media_type="application/gzip", filename=f"{sha256}.tar.gz")
