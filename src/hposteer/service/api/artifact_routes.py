"""Artifact routes: pilots upload checkpoints and metrics tarballs and fetch the checkpoint to
restore; users list and download them and read attempts' metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from hposteer.service.api.artifact_schemas import ArtifactListOut, MetaListOut, UploadOut
from hposteer.service.api.deps import PilotDep, ServicesDep, UserDep
from hposteer.service.api.uploads import receive_blob
from hposteer.service.operations import artifacts as artifact_ops
from hposteer.service.operations.context import Services
from hposteer.service.operations.views import ArtifactListView, MetaListView, UploadView

pilot_router = APIRouter(prefix="/api/v1/pilot", tags=["pilots"])
user_router = APIRouter(prefix="/api/v1", tags=["tasks"])

LeaseToken = Annotated[str, Header(min_length=1, max_length=128, description="the attempt's lease token")]
Sha256 = Annotated[str, Header(pattern=r"^[0-9a-fA-F]{64}$", description="sha256 of the body, hex")]


async def _receive(
    request: Request, svc: Services, target: artifact_ops.UploadTarget, sha256: str
) -> tuple[UploadView, bool]:
    """Stream the body into the blob store (capped while it streams), then record it (R5)."""
    blob = await receive_blob(request, svc, target.max_bytes, sha256)
    return await run_in_threadpool(artifact_ops.record_upload, svc, target, blob)


async def _upload(
    kind: str, attempt_id: int, request: Request, svc: Services, response: Response, token: str, sha256: str
) -> UploadView:
    target = await run_in_threadpool(
        lambda: artifact_ops.upload_target(svc, attempt_id=attempt_id, lease_token=token, kind=kind)
    )
    answer, created = await _receive(request, svc, target, sha256.lower())
    response.status_code = 201 if created else 200
    return answer


@pilot_router.put("/attempts/{attempt_id}/checkpoint", response_model=UploadOut, status_code=201)
async def put_checkpoint(
    attempt_id: int,
    request: Request,
    svc: ServicesDep,
    principal: PilotDep,
    response: Response,
    x_lease_token: LeaseToken,
    x_content_sha256: Sha256,
) -> UploadView:
    return await _upload("checkpoint", attempt_id, request, svc, response, x_lease_token, x_content_sha256)


@pilot_router.put("/attempts/{attempt_id}/metrics", response_model=UploadOut, status_code=201)
async def put_metrics(
    attempt_id: int,
    request: Request,
    svc: ServicesDep,
    principal: PilotDep,
    response: Response,
    x_lease_token: LeaseToken,
    x_content_sha256: Sha256,
) -> UploadView:
    return await _upload("metrics", attempt_id, request, svc, response, x_lease_token, x_content_sha256)


@pilot_router.get("/attempts/{attempt_id}/checkpoint")
def get_checkpoint(attempt_id: int, svc: ServicesDep, principal: PilotDep, x_lease_token: LeaseToken) -> FileResponse:
    path, name = artifact_ops.checkpoint_for_restore(svc, attempt_id=attempt_id, lease_token=x_lease_token)
    return FileResponse(path, media_type="application/gzip", filename=name)


@user_router.get("/tasks/{task_id}/artifacts", response_model=ArtifactListOut)
def get_artifacts(task_id: int, svc: ServicesDep, principal: UserDep, kind: str | None = None) -> ArtifactListView:
    return ArtifactListView(artifact_ops.list_artifacts(svc, principal, task_id, kind))


@user_router.get("/tasks/{task_id}/artifacts/{artifact_id}")
def get_artifact(task_id: int, artifact_id: int, svc: ServicesDep, principal: UserDep) -> FileResponse:
    path, name = artifact_ops.artifact_content(svc, principal, task_id, artifact_id)
    return FileResponse(path, media_type="application/gzip", filename=name)


@user_router.get("/tasks/{task_id}/meta", response_model=MetaListOut)
def get_meta(
    task_id: int,
    svc: ServicesDep,
    principal: UserDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> MetaListView:
    return artifact_ops.task_metadata(svc, principal, task_id, after=after, limit=limit)


router = APIRouter()
router.include_router(pilot_router)
router.include_router(user_router)
