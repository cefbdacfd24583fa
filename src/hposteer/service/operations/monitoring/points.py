"""The web UI's points table (server-side paging, sorting and filtering) and a point's own page.

The table is read one state at a time, each state straight from an index in the order asked for
(store.monitoring), with LIMIT/OFFSET inside it; the counts per state (from the segments' point
counters) say which states a page spans. Orders:

* ``number``: point numbers (every state together, or one state);
* ``loss``: done points by loss, then failed points (their loss is the failure loss, not a
  measurement) by loss, then points without a loss (running, pending, cancelled) by number;
  descending reverses the losses and numbers, never that order of groups;
* ``state``: running, pending, done, failed, cancelled (descending: the reverse), by number within.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection

from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.monitoring.cache import MonitoringCache, TaskContext, cached_read, open_task
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import PointView, point_detail_view
from hposteer.service.store import monitoring as store
from hposteer.service.store import points as point_store
from hposteer.service.store.database import database_time

POINT_STATES = ("running", "pending", "done", "failed", "cancelled")
SORTS = ("number", "loss", "state")
PAGE_SIZES = (25, 50, 100, 200)
_WITHOUT_LOSS = ("running", "pending", "cancelled")


def _plan(sort: str, state: str | None, descending: bool) -> list[tuple[str | None, bool]]:
    """The (state, by loss) groups that the order reads, one after the other."""
    if state is not None:
        return [(state, sort == "loss" and state in ("done", "failed"))]
    if sort == "number":
        return [(None, False)]
    if sort == "loss":
        return [("done", True), ("failed", True), *((s, False) for s in _WITHOUT_LOSS)]
    order = list(reversed(POINT_STATES)) if descending else list(POINT_STATES)
    return [(s, False) for s in order]


def check_table_args(*, state: str | None, sort: str, order: str, page: int, size: int) -> None:
    if state is not None and state not in POINT_STATES:
        raise Invalid(f"unknown point state {state!r}; choose one of: {', '.join(POINT_STATES)}")
    if sort not in SORTS:
        raise Invalid(f"cannot sort points by {sort!r}; choose one of: {', '.join(SORTS)}")
    if order not in ("asc", "desc"):
        raise Invalid(f"order must be asc or desc, not {order!r}")
    if size not in PAGE_SIZES or page < 1:
        raise Invalid(f"page must be 1 or more and size one of {', '.join(map(str, PAGE_SIZES))}")


def points_table(
    services: Services,
    principal: Principal,
    task_id: int,
    *,
    state: str | None,
    sort: str,
    order: str,
    page: int,
    size: int,
    cache: MonitoringCache,
    known_etag: str | None,
) -> tuple[str, dict[str, Any] | None]:
    """One page of the task's points with their latest attempt, the counts per state, and the
    parameter names (the columns)."""
    check_table_args(state=state, sort=sort, order=order, page=page, size=size)

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        counts = _counts(conn, ctx)
        total = counts.get(state, 0) if state is not None else sum(counts.values())
        rows = _read_page(conn, task_id, counts, _plan(sort, state, order == "desc"), order == "desc", page, size)
        latest = store.last_attempts(conn, [int(r.id) for r in rows])
        index = ctx.segment_index
        return {
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / size)),
            "size": size,
            "sort": sort,
            "order": order,
            "state": state,
            "counts": {s: counts.get(s, 0) for s in POINT_STATES},
            "columns": _columns(ctx),
            "log_columns": _log_columns(ctx),
            "rows": [_row(r, index, latest.get(int(r.id))) for r in rows],
        }

    key = ("points", state, sort, order, page, size)
    return cached_read(services, principal, task_id, key, cache=cache, known_etag=known_etag, compute=compute)


def _counts(conn: Connection, ctx: TaskContext) -> dict[str, int]:
    """Points per state from the segments' counters (which the hot path moves with every point), plus
    one count of the failed ones: done = evaluated - failed, cancelled = the rest."""
    total = {name: sum(getattr(s, name) for s in ctx.segments) for name in ("generated", "pending", "running")}
    evaluated = sum(s.evaluated for s in ctx.segments)
    failed = store.count_in_state(conn, ctx.task.id, "failed")
    return {
        "running": total["running"],
        "pending": total["pending"],
        "done": evaluated - failed,
        "failed": failed,
        "cancelled": total["generated"] - total["pending"] - total["running"] - evaluated,
    }


def _read_page(
    conn: Connection,
    task_id: int,
    counts: dict[str, int],
    plan: list[tuple[str | None, bool]],
    descending: bool,
    page: int,
    size: int,
) -> list[Any]:
    skip, wanted, rows = (page - 1) * size, size, []
    for group_state, by_loss in plan:
        available = sum(counts.values()) if group_state is None else counts.get(group_state, 0)
        if skip >= available:
            skip -= available
            continue
        got = store.points_of_state(
            conn, task_id, group_state, by_loss=by_loss, descending=descending, offset=skip, limit=wanted
        )
        rows += got
        wanted -= len(got)
        skip = 0
        if wanted <= 0:
            break
    return rows


def _columns(ctx: TaskContext) -> list[str]:
    names: list[str] = []
    for segment in ctx.segments:
        space = segment.search_space if isinstance(segment.search_space, dict) else {}
        names += [n for n in space if n not in names]
    return names


LOG_METHODS = frozenset({"loguniform", "qloguniform", "lognormal", "qlognormal"})


def _log_columns(ctx: TaskContext) -> list[str]:
    """The parameters searched on a log scale (in any segment): the UI shows them as 3.2e-04."""
    names: list[str] = []
    for segment in ctx.segments:
        space = segment.search_space if isinstance(segment.search_space, dict) else {}
        for name, spec in space.items():
            if isinstance(spec, dict) and spec.get("method") in LOG_METHODS and name not in names:
                names.append(name)
    return names


def plain_params(params: Any) -> dict[str, Any]:
    """A point's parameters as a dict (segmented tasks store ``[model_id, {...}]``)."""
    if isinstance(params, list) and len(params) == 2 and isinstance(params[1], dict):
        return dict(params[1])
    return dict(params) if isinstance(params, dict) else {"value": params}


def _row(r: Any, index: dict[int, int], attempt: Any | None) -> dict[str, Any]:
    return {
        "id": int(r.number),
        "segment": index.get(int(r.segment_id), 0),
        "iteration": int(r.iteration),
        "state": r.state,
        "loss": r.loss,
        "is_failure": bool(r.is_failure),
        "attempts": int(r.attempts),
        "params": plain_params(r.params),
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "site": None if attempt is None else attempt.site,
        "pilot": None if attempt is None else attempt.pilot,
        "failure_class": None if attempt is None else attempt.failure_class,
        "exit_code": None if attempt is None else attempt.exit_code,
    }


def point_page(services: Services, principal: Principal, task_id: int, number: int) -> dict[str, Any]:
    """One point in full: parameters, every attempt (pilot, site, class, exit code, timing, log tail,
    metadata) and its latest checkpoint and metrics tarball, with the task's name and state."""
    with services.db.read() as conn:
        ctx = open_task(conn, principal, task_id)
        record = point_store.point_by_number(conn, task_id, number)
        if record is None:
            raise NotFound(f"task {task_id} has no point {number}", code="point_not_found")
        point: PointView = point_detail_view(conn, record, ctx.segment_index)
        artifacts = store.point_artifacts(conn, record.id)
        return {
            "task": ctx.task,
            "point": point,
            "params": plain_params(point.params),
            "artifacts": artifacts,
            "now": database_time(conn),
        }
