"""What the UI changes: logging in and out, and a task owner's kill and retry.

Every POST is a plain HTML form answered with a redirect (303), so the browser's back button and
reload never repeat it. Kill and retry call the same use cases as the API (operations.tasks), and
only for the task's owner: an admin sees every task but acts on other users' tasks with the CLI.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from hposteer.service.operations import tasks as task_ops
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Conflict, Forbidden, Unauthorized
from hposteer.service.ui.pages import safe_next
from hposteer.service.ui.rendering import SECURITY_HEADERS, PageRoute, render
from hposteer.service.ui.session import (
    Viewer,
    ViewerDep,
    check_csrf,
    check_login_nonce,
    clear_session,
    new_login_nonce,
    principal_for,
    read_form,
    services_of,
    set_login_nonce,
    set_session,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _login_again(request: Request, status: int, error: str, next_page: str) -> Response:
    nonce = new_login_nonce()
    response = render("login.html", status, viewer=None, next=next_page, reason="", nonce=nonce, error=error)
    set_login_nonce(response, request, nonce)
    return response


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    check_login_nonce(request, form)
    next_page = safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return _login_again(request, 422, "Paste your user token.", next_page)
    try:
        principal = await principal_for(services_of(request), token)
    except Unauthorized:
        return _login_again(request, 401, "This token is unknown, expired or revoked.", next_page)
    if principal.role not in ("user", "admin"):
        return _login_again(request, 403, f"A {principal.role} token cannot log in: use a user token.", next_page)
    response = RedirectResponse(next_page, status_code=303, headers=SECURITY_HEADERS)
    set_session(response, request, token)
    return response


@router.post("/ui/logout")
async def logout(request: Request, current: ViewerDep) -> Response:
    check_csrf(request, await read_form(request), current)
    response = RedirectResponse("/ui/login?reason=You+are+logged+out.", status_code=303, headers=SECURITY_HEADERS)
    clear_session(response)
    return response


def _owner_only(svc: Services, current: Viewer, task_id: int, verb: str) -> None:
    task = task_ops.show_task(svc, current.principal, task_id)  # 404 unless the viewer may see it
    if task.owner != current.owner:
        raise Forbidden(f"only the task's owner ({task.owner}) can {verb} task {task_id} here")


@router.post("/ui/tasks/{task_id}/kill")
async def kill(task_id: int, request: Request, current: ViewerDep) -> Response:
    check_csrf(request, await read_form(request), current)
    svc = services_of(request)
    await run_in_threadpool(_owner_only, svc, current, task_id, "kill")
    try:
        await run_in_threadpool(task_ops.kill_task, svc, current.principal, task_id)
        notice = "killed"
    except Conflict as exc:
        notice = exc.code
    return RedirectResponse(f"/ui/tasks/{task_id}?notice={notice}", status_code=303, headers=SECURITY_HEADERS)


@router.post("/ui/tasks/{task_id}/retry")
async def retry(task_id: int, request: Request, current: ViewerDep) -> Response:
    check_csrf(request, await read_form(request), current)
    svc = services_of(request)
    await run_in_threadpool(_owner_only, svc, current, task_id, "retry")
    try:
        _, requeued = await run_in_threadpool(task_ops.retry_task, svc, current.principal, task_id)
        target = f"/ui/tasks/{task_id}?notice=retried&n={requeued}"
    except Conflict as exc:
        target = f"/ui/tasks/{task_id}?notice={exc.code}"
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
