"""User routes: submit, list, show, points, kill; sandbox upload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hposteer.service.api.deps import ServicesDep, UserDep
from hposteer.service.api.schemas import (
    PointDetailOut,
    PointListOut,
    ReportListOut,
    RetryOut,
    SandboxOut,
    TaskDetailOut,
    TaskListOut,
    TaskSubmission,
)
from hposteer.service.api.uploads import receive_blob
from hposteer.service.operations import tasks as task_ops
from hposteer.service.operations.errors import NotFound
from hposteer.service.operations.sandboxes import has_sandbox, record_sandbox
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.operations.views import (
    PointListView,
    PointView,
    ReportListView,
    RetryView,
    SandboxView,
    TaskListView,
    TaskView,
)

router = APIRouter(prefix="/api/v1", tags=["tasks"])


@router.post("/tasks", status_code=201, response_model=TaskDetailOut)
def post_task(body: TaskSubmission, svc: ServicesDep, principal: UserDep, response: Response) -> TaskView:
    fields = body.model_dump(exclude={"dry_run", "segments"})
    segments = [s.model_dump(exclude_none=True) for s in body.segments] if body.segments is not None else None
    view = submit_task(svc, principal, TaskRequest(**fields, segments=segments), dry_run=body.dry_run)
    if body.dry_run:
        response.status_code = 200
    return view


@router.get("/tasks", response_model=TaskListOut)
def get_tasks(
    svc: ServicesDep,
    principal: UserDep,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TaskListView:
    return TaskListView(task_ops.list_tasks(svc, principal, state=state, limit=limit))


@router.get("/tasks/{task_id}", response_model=TaskDetailOut)
def get_task(task_id: int, svc: ServicesDep, principal: UserDep) -> TaskView:
    return task_ops.show_task(svc, principal, task_id)


@router.get("/tasks/{task_id}/points", response_model=PointListOut)
def get_points(
    task_id: int,
    svc: ServicesDep,
    principal: UserDep,
    state: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PointListView:
    points, next_after = task_ops.list_points(svc, principal, task_id, state=state, after=after, limit=limit)
    return PointListView(points, next_after)


@router.get("/tasks/{task_id}/points/{point_id}", response_model=PointDetailOut)
def get_point(task_id: int, point_id: int, svc: ServicesDep, principal: UserDep) -> PointView:
    return task_ops.show_point(svc, principal, task_id, point_id)


@router.get("/tasks/{task_id}/points/{point_id}/reports", response_model=ReportListOut)
def get_point_reports(
    task_id: int,
    point_id: int,
    svc: ServicesDep,
    principal: UserDep,
    after: Annotated[int, Query(ge=0, description="the seq of the last report already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ReportListView:
    """The point's intermediate reports (docs/multi-fidelity.md) in arrival order, every attempt's."""
    return task_ops.point_reports(svc, principal, task_id, point_id, after=after, limit=limit)


@router.post("/tasks/{task_id}/retry", response_model=RetryOut)
def post_retry(task_id: int, svc: ServicesDep, principal: UserDep) -> RetryView:
    task, requeued = task_ops.retry_task(svc, principal, task_id)
    return RetryView(requeued, task)


@router.post("/tasks/{task_id}/kill", response_model=TaskDetailOut)
def post_kill(task_id: int, svc: ServicesDep, principal: UserDep) -> TaskView:
    return task_ops.kill_task(svc, principal, task_id)


@router.post("/sandboxes", response_model=SandboxOut, status_code=201)
async def post_sandbox(
    request: Request,
    svc: ServicesDep,
    principal: UserDep,
    response: Response,
    x_content_sha256: Annotated[str | None, Header()] = None,
) -> SandboxView:
    """Stream the body to the blob store (size-capped while it streams), then record it."""
    blob = await receive_blob(request, svc, svc.settings.sandbox_max_bytes, x_content_sha256)
    created = await run_in_threadpool(record_sandbox, svc, principal, blob)
    if not created:
        response.status_code = 200
    return SandboxView(blob.sha256, blob.size)


@router.head("/sandboxes/{sha256}")
def head_sandbox(sha256: str, svc: ServicesDep, principal: UserDep) -> Response:
    if not has_sandbox(svc, sha256):
        raise NotFound(f"no sandbox {sha256}")
    return Response(status_code=200)
