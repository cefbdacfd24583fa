"""The web UI's charts of a task, aggregated and downsampled in the service so that a task of
100,000 points draws from about 2,000 values:

* **history**: every finished point while the task has at most ``FULL_HISTORY`` points; beyond,
  an even sample of ``HISTORY_SAMPLE`` point numbers, read at most every ``SAMPLE_REFRESH_S``
  seconds, plus the latest ``RECENT`` numbers, read every time (what a viewer watches arrive;
  one range of the index). The best-so-far curve is always exact: the window function in
  store.monitoring returns every point that improved on all done points before it, once per task
  and process; later reads add only the points done since (done is final, so the steps of the
  grown set are the steps of the old steps plus the new points: hposteer.service.core.analysis.records);
* **parallel coordinates**: up to ``LINES`` done points of a segment from an even sample, plus its
  ``BEST`` best points (highlighted);
* **importance**: ω² of the loss ranks per parameter (hposteer.service.core.analysis) over up to
  ``IMPORTANCE_SAMPLE`` done points of a segment from an even sample;
* **steering runs**: the duration and outcome of up to ``RUNS_SAMPLE`` runs per segment.

Each is cached under the task's signature (monitoring.cache); the sampled ones of a task
beyond ``FULL_HISTORY`` points are recomputed at most every ``SAMPLE_REFRESH_S`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from hposteer.service.core import analysis
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import NotFound
from hposteer.service.operations.monitoring.cache import MonitoringCache, TaskContext, cached_read
from hposteer.service.operations.monitoring.points import plain_params
from hposteer.service.operations.principal import Principal
from hposteer.service.store import monitoring as store
from hposteer.service.store.database import database_time
from hposteer.service.store.records import SegmentRecord

FULL_HISTORY = 2000
HISTORY_SAMPLE = 1500
RECENT = 300
LINES = 1000
BEST = 25
IMPORTANCE_SAMPLE = 2000
RUNS_SAMPLE = 400
SAMPLE_REFRESH_S = 10.0

Result = tuple[str, dict[str, Any] | None]


def _total(ctx: TaskContext) -> int:
    """Points of the task so far: numbers are dense from 1, so the highest number."""
    return sum(s.generated for s in ctx.segments)


def _stale_ok(ctx: TaskContext) -> float:
    return SAMPLE_REFRESH_S if _total(ctx) > FULL_HISTORY else 0.0


def best_so_far(
    conn: Connection, ctx: TaskContext, cache: MonitoringCache, overlap_s: float
) -> list[tuple[int, float]]:
    """The exact steps of the best-so-far curve, kept up to date from the points done since the last read.

    Points are read again from ``overlap_s`` before the previous read, so that a point whose update
    time was stamped by a transaction that committed only after that read is not missed; done points
    never change, so reading one twice is harmless.
    """
    now = database_time(conn)
    key = (ctx.task.id, "records")
    entry = cache.lookup(key)
    if entry is None:
        steps = store.improvements(conn, ctx.task.id, ctx.task.optimizer_mode)
    else:
        old, since = entry[1]
        new = store.done_since(conn, [s.id for s in ctx.segments], since)
        steps = analysis.records([*old, *new], ctx.task.optimizer_mode)
    cache.put(key, "", (steps, now - overlap_s))
    return steps


def history(
    services: Services, principal: Principal, task_id: int, *, cache: MonitoringCache, known_etag: str | None
) -> Result:
    """Loss per point number (done: flag 0, failed: flag 1) and the exact best-so-far steps."""
    # No write transaction outlives a statement timeout plus a lock wait: the overlap to re-read.
    overlap = services.settings.db_statement_timeout_s + services.settings.busy_timeout_s

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        total = _total(ctx)
        sampled = total > FULL_HISTORY
        if sampled:
            recent = total - RECENT + 1
            older = [r for r in _history_sample(conn, ctx, cache, total) if r.number < recent]
            rows = older + store.finished_in_range(conn, task_id, recent, total)
        else:
            rows = store.finished_in_range(conn, task_id, 1, total)
        index = ctx.segment_index
        return {
            "total": total,
            "sampled": sampled,
            "mode": ctx.task.optimizer_mode,
            "failure_loss": ctx.task.failure_loss,
            "points": [
                [int(r.number), float(r.loss), int(r.state == "failed"), index.get(int(r.segment_id), 0)]
                for r in rows
                if r.loss is not None
            ],
            "best": [[n, loss] for n, loss in best_so_far(conn, ctx, cache, overlap)],
        }

    return cached_read(services, principal, task_id, ("history",), cache=cache, known_etag=known_etag, compute=compute)


def _history_sample(conn: Connection, ctx: TaskContext, cache: MonitoringCache, total: int) -> list[Any]:
    """The finished points among an even sample of the task's point numbers, read again only after
    ``SAMPLE_REFRESH_S`` (on PostgreSQL the 1,500 lookups cost tens of ms; the sample barely moves)."""
    key = (ctx.task.id, "history-sample")
    entry = cache.lookup(key)
    if entry is not None and time.monotonic() - entry[2] < SAMPLE_REFRESH_S:
        return list(entry[1])
    numbers = analysis.even_numbers(total, HISTORY_SAMPLE)
    rows = [r for r in store.points_by_number(conn, ctx.task.id, numbers) if r.state in ("done", "failed")]
    cache.put(key, "", rows)
    return rows


def _segment(ctx: TaskContext, index: int | None) -> SegmentRecord:
    if not ctx.segments:
        raise NotFound(f"task {ctx.task.id} has no segments", code="segment_not_found")
    if index is None:
        return ctx.segments[0]
    for segment in ctx.segments:
        if segment.idx == index:
            return segment
    raise NotFound(f"task {ctx.task.id} has no segment {index}", code="segment_not_found")


def _done_sample(conn: Connection, ctx: TaskContext, segment: SegmentRecord, count: int) -> list[Any]:
    numbers = analysis.even_numbers(_total(ctx), count)
    rows = store.points_by_number(conn, ctx.task.id, numbers, with_params=True)
    return [r for r in rows if r.state == "done" and int(r.segment_id) == segment.id and r.loss is not None]


def parallel_coordinates(
    services: Services,
    principal: Principal,
    task_id: int,
    *,
    segment: int | None,
    cache: MonitoringCache,
    known_etag: str | None,
) -> Result:
    """Axes (from the segment's search space and the values) and one line per sampled done point."""

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        seg = _segment(ctx, segment)
        sample = _done_sample(conn, ctx, seg, 2 * LINES)
        chosen = {int(sample[i - 1].number): sample[i - 1] for i in analysis.even_numbers(len(sample), LINES)}
        width = BEST * max(1, len(ctx.segments))
        best = [r for r in store.best_points(conn, task_id, ctx.task.optimizer_mode, width) if r.segment_id == seg.id]
        best_numbers = {int(r.number) for r in best[:BEST]}
        for r in best[:BEST]:
            chosen[int(r.number)] = r
        rows = [chosen[n] for n in sorted(chosen)]
        params = [plain_params(r.params) for r in rows]
        space = seg.search_space if isinstance(seg.search_space, dict) else {}
        names = list(space) or sorted({k for p in params for k in p})
        axes = [analysis.axis(name, space.get(name), [p.get(name) for p in params]) for name in names]
        losses = [float(r.loss) for r in rows]
        return {
            "segment": seg.idx,
            "segments": [s.idx for s in ctx.segments],
            "mode": ctx.task.optimizer_mode,
            "axes": axes,
            "loss": _loss_axis(losses),
            "lines": [
                {
                    "id": int(r.number),
                    "loss": float(r.loss),
                    "best": int(r.number) in best_numbers,
                    "values": [analysis.axis_value(ax, p.get(ax["name"])) for ax in axes],
                }
                for r, p in zip(rows, params, strict=True)
            ],
        }

    key = ("parcoords", segment)
    return cached_read(
        services, principal, task_id, key, cache=cache, known_etag=known_etag, compute=compute, stale_ok_s=_stale_ok
    )


def _loss_axis(losses: list[float]) -> dict[str, Any]:
    lo, hi = min(losses, default=0.0), max(losses, default=1.0)
    kind = "log" if lo > 0 and hi / lo > 1000 else "linear"
    return {"name": "loss", "kind": kind, "min": lo, "max": hi}


def parameter_importance(
    services: Services,
    principal: Principal,
    task_id: int,
    *,
    segment: int | None,
    cache: MonitoringCache,
    known_etag: str | None,
) -> Result:
    """ω² of the loss ranks per parameter of a segment, most important first (hposteer.service.core.analysis)."""

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        seg = _segment(ctx, segment)
        sample = _done_sample(conn, ctx, seg, IMPORTANCE_SAMPLE)
        pairs = [(plain_params(r.params), float(r.loss)) for r in sample]
        space = seg.search_space if isinstance(seg.search_space, dict) else {}
        names = list(space) or sorted({k for p, _ in pairs for k in p})
        return {
            "segment": seg.idx,
            "method": "omega-squared of loss ranks by parameter bin (first-order)",
            "points": len(pairs),
            "min_points": analysis.MIN_POINTS,
            "parameters": [vars(i) for i in analysis.importance(names, pairs)],
        }

    key = ("importance", segment)
    return cached_read(
        services, principal, task_id, key, cache=cache, known_etag=known_etag, compute=compute, stale_ok_s=_stale_ok
    )


def steering_chart(
    services: Services, principal: Principal, task_id: int, *, cache: MonitoringCache, known_etag: str | None
) -> Result:
    """Per segment: [iteration, duration ms, outcome] of up to RUNS_SAMPLE runs spread over its iterations."""

    def compute(conn: Connection, ctx: TaskContext) -> dict[str, Any]:
        segments = []
        for seg in ctx.segments:
            iterations = analysis.even_numbers(seg.iteration, RUNS_SAMPLE)
            runs = store.steering_runs_of(conn, seg.id, iterations, 0)
            segments.append(
                {
                    "index": seg.idx,
                    "name": seg.name,
                    "iterations": seg.iteration,
                    "runs": [[int(r.iteration), round(float(r.duration_ms), 2), r.outcome] for r in runs],
                }
            )
        return {"segments": segments}

    return cached_read(
        services,
        principal,
        task_id,
        ("steering",),
        cache=cache,
        known_etag=known_etag,
        compute=compute,
        stale_ok_s=_stale_ok,
    )
