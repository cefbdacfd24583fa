"""The UI's pages (server-rendered HTML) and the fragments their scripts poll for live updates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from hposteer.service.operations import artifacts as artifact_ops
from hposteer.service.operations.errors import NotFound
from hposteer.service.operations.monitoring import pilots as pilots_ops
from hposteer.service.operations.monitoring import points as points_ops
from hposteer.service.operations.monitoring import tasks as tasks_ops
from hposteer.service.ui.formatting import timeline
from hposteer.service.ui.rendering import PageRoute, render
from hposteer.service.ui.session import ViewerDep, new_login_nonce, services_of, set_login_nonce
from hposteer.service.ui.state import cache_of, etag_header, known_etag

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NOTICES = {
    "killed": "Task killed: its pending points are cancelled and its running attempts are told to stop.",
    "retried": "Failed points re-queued; each gets a fresh round of attempts.",
    "task_ended": "The task had already ended: nothing to kill.",
    "nothing_to_retry": "No point of this task has failed: nothing to retry.",
    "task_not_retryable": (
        "Only a running or finished task, or one that failed because all its points failed, "
        "can retry its failed points."
    ),
}


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a page of this UI only (never another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/tasks"


@router.get("/")
@router.get("/ui")
@router.get("/ui/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/tasks", status_code=303)


@router.get("/ui/login")
def login_page(request: Request, next: str = "/ui/tasks", reason: str = "") -> HTMLResponse:
    nonce = new_login_nonce()
    response = render("login.html", viewer=None, next=safe_next(next), reason=reason[:300], nonce=nonce, error=None)
    set_login_nonce(response, request, nonce)
    return response


@router.get("/ui/tasks")
def tasks_page(
    request: Request,
    current: ViewerDep,
    state: str | None = None,
    partial: bool = False,
) -> HTMLResponse:
    views, sites, now = tasks_ops.task_rows(
        services_of(request), current.principal, state=state or None, limit=200, cache=cache_of(request)
    )
    return render(
        "_tasks_table.html" if partial else "tasks.html",
        viewer=current,
        tasks=views,
        sites=sites,
        now=now,
        state=state or "",
        states=tasks_ops.TASK_STATES,
    )


@router.get("/ui/tasks/{task_id}")
def task_page(
    task_id: int,
    request: Request,
    current: ViewerDep,
    notice: str | None = None,
    n: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    _, overview = tasks_ops.task_overview(
        services_of(request), current.principal, task_id, cache=cache_of(request), known_etag=None
    )
    assert overview is not None
    message = NOTICES.get(notice or "")
    if notice == "retried" and n is not None:
        message = f"{n} failed point{'s' if n != 1 else ''} re-queued; each gets a fresh round of attempts."
    return render("task.html", viewer=current, o=overview, notice=message, notice_kind=notice or "")


@router.get("/ui/tasks/{task_id}/live")
def task_live(task_id: int, request: Request, current: ViewerDep) -> Response:
    """The task page's live part (state, progress, best, segments, steering), 304 while unchanged."""
    etag, overview = tasks_ops.task_overview(
        services_of(request), current.principal, task_id, cache=cache_of(request), known_etag=known_etag(request)
    )
    if overview is None:
        return Response(status_code=304, headers=etag_header(etag))
    return render("_task_live.html", headers=etag_header(etag), viewer=current, o=overview)


@router.get("/ui/tasks/{task_id}/points/{number}")
def point_page(task_id: int, number: int, request: Request, current: ViewerDep) -> HTMLResponse:
    data = points_ops.point_page(services_of(request), current.principal, task_id, number)
    return render("point.html", viewer=current, d=data, tl=timeline(data["point"].attempts, data["now"]))


@router.get("/ui/tasks/{task_id}/artifacts/{artifact_id}")
def artifact(task_id: int, artifact_id: int, request: Request, current: ViewerDep) -> FileResponse:
    path, name = artifact_ops.artifact_content(services_of(request), current.principal, task_id, artifact_id)
    return FileResponse(path, media_type="application/gzip", filename=name)


@router.get("/ui/pilots")
def pilots_page(
    request: Request,
    current: ViewerDep,
    hours: Annotated[float | None, Query(gt=0)] = 24.0,
    all: bool = False,
    partial: bool = False,
) -> HTMLResponse:
    data = pilots_ops.pilots_overview(services_of(request), current.principal, hours=None if all else hours)
    return render(
        "_pilots_body.html" if partial else "pilots.html",
        viewer=current,
        d=data,
        hours=hours,
        all=all,
    )


fallback = APIRouter(route_class=PageRoute, include_in_schema=False)


@fallback.get("/ui/{rest:path}")
def unknown_page(rest: str) -> HTMLResponse:
    raise NotFound(f"there is no page /ui/{rest}; start from the task list at /ui/tasks")
