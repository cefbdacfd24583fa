"""JSON endpoints the task page's scripts poll (cookie session; ETag + 304 while nothing changed).

These are the UI's own: their shapes follow the pages, not the versioned REST API (docs/api.md),
and may change with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from hposteer.service.operations.monitoring import charts
from hposteer.service.operations.monitoring import points as points_ops
from hposteer.service.ui.rendering import DataRoute
from hposteer.service.ui.session import ViewerDep, services_of
from hposteer.service.ui.state import cache_of, etag_header, known_etag

router = APIRouter(prefix="/ui/api", route_class=DataRoute, include_in_schema=False)

Segment = Annotated[int | None, Query(ge=0)]


def _answer(call: Callable[[str | None], tuple[str, dict[str, Any] | None]], request: Request) -> Response:
    etag, value = call(known_etag(request))
    if value is None:
        return Response(status_code=304, headers=etag_header(etag))
    return JSONResponse(value, headers=etag_header(etag))


@router.get("/tasks/{task_id}/history")
def history(task_id: int, request: Request, current: ViewerDep) -> Response:
    svc, cache = services_of(request), cache_of(request)
    return _answer(
        lambda known: charts.history(svc, current.principal, task_id, cache=cache, known_etag=known), request
    )


@router.get("/tasks/{task_id}/parcoords")
def parcoords(task_id: int, request: Request, current: ViewerDep, segment: Segment = None) -> Response:
    svc, cache = services_of(request), cache_of(request)
    return _answer(
        lambda known: charts.parallel_coordinates(
            svc, current.principal, task_id, segment=segment, cache=cache, known_etag=known
        ),
        request,
    )


@router.get("/tasks/{task_id}/importance")
def importance(task_id: int, request: Request, current: ViewerDep, segment: Segment = None) -> Response:
    svc, cache = services_of(request), cache_of(request)
    return _answer(
        lambda known: charts.parameter_importance(
            svc, current.principal, task_id, segment=segment, cache=cache, known_etag=known
        ),
        request,
    )


@router.get("/tasks/{task_id}/steering")
def steering(task_id: int, request: Request, current: ViewerDep) -> Response:
    svc, cache = services_of(request), cache_of(request)
    return _answer(
        lambda known: charts.steering_chart(svc, current.principal, task_id, cache=cache, known_etag=known), request
    )


@router.get("/tasks/{task_id}/points")
def points(
    task_id: int,
    request: Request,
    current: ViewerDep,
    state: str | None = None,
    sort: str = "number",
    order: str = "asc",
    page: Annotated[int, Query(ge=1)] = 1,
    size: int = 50,
) -> Response:
    svc, cache = services_of(request), cache_of(request)
    return _answer(
        lambda known: points_ops.points_table(
            svc,
            current.principal,
            task_id,
            state=state or None,
            sort=sort,
            order=order,
            page=page,
            size=size,
            cache=cache,
            known_etag=known,
        ),
        request,
    )
