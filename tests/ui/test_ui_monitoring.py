"""The monitoring use cases on both backends: the points table's paging, sorting and filtering
against a plain sort of every point, the exact best-so-far (also incrementally), samples, and
owner scoping. The task comes from the UI benchmark's filler (bench/ui_data.py), small."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from bench.ui_data import fill
from hposteer.service.core import analysis
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.monitoring import charts as monitoring_charts
from hposteer.service.operations.monitoring import pilots as monitoring_pilots
from hposteer.service.operations.monitoring import points as monitoring_points
from hposteer.service.operations.monitoring import tasks as monitoring_tasks
from hposteer.service.operations.monitoring.cache import MonitoringCache
from hposteer.service.operations.monitoring.views import counted_views
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import task_views
from hposteer.service.store import monitoring as monitoring_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import points, segments

BENCH = Principal("bench", "user", 0)
STATE_ORDER = ["running", "pending", "done", "failed", "cancelled"]


def _all_points(services: Services, task_id: int) -> list[Any]:
    with services.db.read() as conn:
        return list(conn.execute(select(points).where(points.c.task_id == task_id)))


def _expected(rows: list[Any], sort: str, order: str, state: str | None) -> list[int]:
    rows = [r for r in rows if state is None or r.state == state]
    desc = order == "desc"
    if sort == "number":
        return sorted((r.number for r in rows), reverse=desc)
    if sort == "state":
        states = list(reversed(STATE_ORDER)) if desc else STATE_ORDER
        return [
            r.number
            for s in states
            for r in sorted((r for r in rows if r.state == s), key=lambda r: r.number, reverse=desc)
        ]
    out = []
    for s in ["done", "failed", "running", "pending", "cancelled"]:
        group = [r for r in rows if r.state == s]
        key = (lambda r: (r.loss, r.number)) if s in ("done", "failed") else (lambda r: r.number)
        out += [r.number for r in sorted(group, key=key, reverse=desc)]
    return out


def _table(services: Services, task_id: int, cache: MonitoringCache, **args: Any) -> dict[str, Any]:
    _, value = monitoring_points.points_table(services, BENCH, task_id, cache=cache, known_etag=None, **args)
    assert value is not None
    return value


@pytest.fixture
def small_task(backend_services: Services) -> int:
    return fill(backend_services.settings, 600, seed=5).task_id


def test_points_table_pages_through_every_order_and_filter(backend_services: Services, small_task: int) -> None:
    cache = MonitoringCache()
    rows = _all_points(backend_services, small_task)
    for sort, order, state in [
        ("number", "asc", None), ("number", "desc", "done"), ("loss", "asc", None), ("loss", "desc", None),
        ("loss", "asc", "failed"), ("state", "asc", None), ("state", "desc", None), ("loss", "asc", "pending"),
    ]:  # fmt: skip
        seen: list[int] = []
        first = _table(backend_services, small_task, cache, state=state, sort=sort, order=order, page=1, size=100)
        for page in range(1, first["pages"] + 1):
            got = _table(backend_services, small_task, cache, state=state, sort=sort, order=order, page=page, size=100)
            seen += [r["id"] for r in got["rows"]]
        assert seen == _expected(rows, sort, order, state), (sort, order, state)
        assert first["total"] == len(seen)
    counts = _table(backend_services, small_task, cache, state=None, sort="number", order="asc", page=1, size=25)[
        "counts"
    ]
    assert counts == {s: sum(r.state == s for r in rows) for s in STATE_ORDER}


def test_points_table_rows_carry_the_latest_attempt_and_refuse_bad_arguments(
    backend_services: Services, small_task: int
) -> None:
    cache = MonitoringCache()
    failed = _table(backend_services, small_task, cache, state="failed", sort="number", order="asc", page=1, size=25)
    assert failed["rows"] and all(r["attempts"] == 3 and r["failure_class"] and r["site"] for r in failed["rows"])
    assert set(failed["columns"]) == {"x", "lr", "depth", "dropout", "act"}
    for bad in ({"state": "lost"}, {"sort": "params"}, {"order": "up"}, {"size": 7}, {"page": 0}):
        args: dict[str, Any] = {"state": None, "sort": "number", "order": "asc", "page": 1, "size": 25, **bad}
        with pytest.raises(Invalid):
            _table(backend_services, small_task, cache, **args)
    with pytest.raises(NotFound):
        monitoring_points.points_table(
            backend_services, Principal("eve", "user", 0), small_task, state=None, sort="number", order="asc",
            page=1, size=25, cache=cache, known_etag=None,
        )  # fmt: skip


def test_history_best_so_far_is_exact_and_follows_new_completions(backend_services: Services, small_task: int) -> None:
    cache = MonitoringCache()

    def history() -> dict[str, Any]:
        _, value = monitoring_charts.history(backend_services, BENCH, small_task, cache=cache, known_etag=None)
        assert value is not None
        return value

    def expected() -> list[list[float]]:
        done = [(r.number, r.loss) for r in _all_points(backend_services, small_task) if r.state == "done"]
        return [[n, loss] for n, loss in analysis.records(done, "min")]

    first = history()
    assert first["best"] == expected() and not first["sampled"]
    assert len(first["points"]) == sum(r.state in ("done", "failed") for r in _all_points(backend_services, small_task))
    # A pending point with a low number completes with the best loss so far: a new first step, and
    # the later steps it beats disappear. Read incrementally (the cache holds the steps).
    with backend_services.db.write() as conn:
        row = conn.execute(select(points).where(points.c.task_id == small_task, points.c.state == "pending")).first()
        assert row is not None
        conn.execute(update(points).where(points.c.id == row.id).values(state="done", loss=-1.0, updated_at=now_expr()))
        conn.execute(
            update(segments).where(segments.c.id == row.segment_id)
            .values(pending=segments.c.pending - 1, evaluated=segments.c.evaluated + 1)
        )  # fmt: skip
    second = history()
    assert second["best"] == expected() and second["best"][-1] == [row.number, -1.0]
    assert monitoring_charts.history(
        backend_services, BENCH, small_task, cache=cache, known_etag=monitoring_charts.history(
            backend_services, BENCH, small_task, cache=cache, known_etag=None)[0]
    )[1] is None  # fmt: skip


def test_big_task_history_is_sampled_and_the_charts_small(backend_services: Services) -> None:
    task_id = fill(backend_services.settings, 5000, seed=2).task_id
    with backend_services.db.write() as conn:  # the filler leaves the newest points pending: finish two of them
        conn.execute(
            update(points)
            .where(points.c.task_id == task_id, points.c.number.in_((4990, 5000)))
            .values(state="done", loss=0.5, updated_at=now_expr(), finished_at=now_expr())
        )
    cache = MonitoringCache()
    _, hist = monitoring_charts.history(backend_services, BENCH, task_id, cache=cache, known_etag=None)
    assert hist is not None and hist["sampled"] and hist["total"] == 5000
    assert len(hist["points"]) <= monitoring_charts.HISTORY_SAMPLE + monitoring_charts.RECENT
    with backend_services.db.read() as conn:  # the latest RECENT numbers: every finished one, read every time
        recent = monitoring_store.finished_in_range(conn, task_id, 5000 - monitoring_charts.RECENT + 1, 5000)
    shown = {p[0] for p in hist["points"]}
    assert {int(r.number) for r in recent} == {4990, 5000} and {4990, 5000} <= shown
    assert len([n for n in shown if n <= 5000 - monitoring_charts.RECENT]) > 1000, "and the even sample before them"
    _, par = monitoring_charts.parallel_coordinates(
        backend_services, BENCH, task_id, segment=None, cache=cache, known_etag=None
    )
    assert par is not None and len(par["lines"]) <= monitoring_charts.LINES + monitoring_charts.BEST
    assert sum(line["best"] for line in par["lines"]) == monitoring_charts.BEST
    assert {a["name"]: a["kind"] for a in par["axes"]} == {
        "x": "linear", "lr": "log", "depth": "linear", "dropout": "linear", "act": "category",
    }  # fmt: skip
    _, imp = monitoring_charts.parameter_importance(
        backend_services, BENCH, task_id, segment=None, cache=cache, known_etag=None
    )
    assert imp is not None
    ranked = [p["name"] for p in imp["parameters"]]
    assert set(ranked[:2]) == {"x", "lr"} and ranked[-1] == "dropout"  # the filler's objective
    with pytest.raises(NotFound):
        monitoring_charts.parallel_coordinates(
            backend_services, BENCH, task_id, segment=4, cache=cache, known_etag=None
        )


def test_task_list_and_pilots_are_scoped(backend_services: Services, small_task: int) -> None:
    cache = MonitoringCache()
    views, sites, _ = monitoring_tasks.task_rows(backend_services, BENCH, state=None, limit=10, cache=cache)
    assert [v.id for v in views] == [small_task] and set(sites[small_task]) == {"SITE-A", "SITE-B", "SITE-C"}
    assert (
        monitoring_tasks.task_rows(backend_services, Principal("eve", "user", 0), state=None, limit=10, cache=cache)[0]
        == []
    )
    admin = monitoring_tasks.task_rows(
        backend_services, Principal("root", "admin", 0), state="running", limit=10, cache=cache
    )
    assert [v.id for v in admin[0]] == [small_task]
    overview = monitoring_pilots.pilots_overview(backend_services, Principal("eve", "user", 0), hours=None)
    assert len(overview["pilots"]) == 12 and sum(p["busy"] for p in overview["pilots"]) == 40
    assert sum(p["mine"] for p in overview["pilots"]) == 0  # eve runs nothing
    mine = monitoring_pilots.pilots_overview(backend_services, BENCH, hours=24)
    assert sum(s["mine"] for s in mine["sites"]) == 40 and {s["site"] for s in mine["sites"]} == {
        "SITE-A",
        "SITE-B",
        "SITE-C",
    }


def test_views_from_the_counters_equal_the_api_views(backend_services: Services, small_task: int) -> None:
    other = fill(backend_services.settings, 50, seed=9).task_id
    with backend_services.db.read() as conn:
        records = task_store.list_tasks(conn, None, None, 10)
        assert {t.id for t in records} == {small_task, other}
        segments = task_store.segments_of_tasks(conn, [t.id for t in records])
        for detail in (False, True):
            assert counted_views(conn, records, segments, detail=detail) == task_views(conn, records, detail=detail)
