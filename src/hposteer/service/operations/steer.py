"""One steering run for one segment, and which segments need one.

The optimiser runs outside any transaction (scikit-optimize's GP can take seconds):
read the history, ask the optimiser, then in one write transaction re-check the segment,
insert the points and record the run under the unique (segment, iteration) key, so that a
run that lost a race, or a re-run after a crash, never duplicates points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hposteer.core.searchspace import Params, SearchSpace
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import OptimizerSpec, parse_optimizer_name
from hposteer.service.core.scheduling import points_to_generate
from hposteer.service.core.states import SegmentState, TaskState
from hposteer.service.core.steering import Observation
from hposteer.service.core.steering_exec import CONTAINER_OPTIMIZER, SteeringCommand, parse_steering
from hposteer.service.operations.context import Services
from hposteer.service.operations.history import HistoryCache
from hposteer.service.operations.lifecycle import budget_of, fail_task, settle_segment
from hposteer.service.operations.outbox import Outbox, recommendations_available
from hposteer.service.store import points as point_store
from hposteer.service.store import steering_runs as run_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.database import database_time
from hposteer.service.store.records import SegmentRecord, TaskRecord


class SegmentRunner(Protocol):
    """Runs an optimiser for a segment, possibly keeping it warm between calls."""

    name: str

    def run(
        self,
        *,
        key: int,
        spec: OptimizerSpec,
        space: SearchSpace,
        history: Sequence[Observation],
        n: int,
        seed: int,
        budget: int,
        parallelism: int,
        failures_as_losses: bool | None = None,
    ) -> list[Params]: ...

    def retain(self, keys: set[int]) -> None:
        """Drop the optimisers of every other key (their segments ended)."""
        ...


class ContainerSteering(Protocol):
    """Runs a task's own steering container for a segment (hposteer.service.steering.containers.runner)."""

    name: str

    def run(
        self,
        *,
        key: int,
        command: SteeringCommand,
        space: SearchSpace,
        raw_space: object,
        segmented: bool,
        model_id: int,
        history: Sequence[Observation],
        n: int,
        max_points: int,
    ) -> list[Params]: ...

    def retain(self, keys: set[int]) -> None:
        """Remove the warm containers of every other segment (their segments ended)."""
        ...

    def close(self) -> None:
        """Remove every warm container."""
        ...

    def sweep(self) -> None:
        """Remove the warm containers a killed service left behind."""
        ...


def default_containers(services: Services, *, warm: bool = True) -> ContainerSteering:
    """The container runner of the settings. With ``warm`` its owner must call ``retain`` and
    ``close`` (the steering loop does); without, every run gets a fresh container."""
    from hposteer.service.steering.containers.runner import ContainerLimits, ContainerRunner

    settings = services.settings
    limits = ContainerLimits(
        timeout_s=settings.steering_container_timeout_s,
        memory_mb=settings.steering_container_memory_mb,
        pids=settings.steering_container_pids,
        cpus=settings.steering_container_cpus,
        warm=settings.steering_container_warm if warm else 0,
        idle_s=settings.steering_container_idle_s,
    )
    return ContainerRunner(settings.data_dir / "steering", limits)


@dataclass(frozen=True)
class SteerResult:
    segment_id: int
    requested: int
    produced: int
    outcome: str  # ok | exhausted | failed | skipped
    message: str | None = None


def spec_of(task: TaskRecord) -> OptimizerSpec:
    spec = parse_optimizer_name(task.optimizer)
    return OptimizerSpec(spec.library, spec.method, "max" if task.optimizer_mode == "max" else "min", spec.source)


@dataclass(frozen=True)
class Scan:
    active: set[int]  # every segment steering may still serve
    wanted: list[int]  # those that need a run now


def segments_needing_steering(services: Services) -> Scan:
    """Active segments of running tasks, and those whose unevaluated points fell below the threshold."""
    with services.db.read() as conn:
        active = task_store.active_segments(conn)
    wanted = [s.id for s, task in active if points_to_generate(budget_of(task), s.counts) > 0]
    return Scan({s.id for s, _ in active}, wanted)


def steer_segment(
    services: Services,
    runner: SegmentRunner,
    segment_id: int,
    histories: HistoryCache | None = None,
    containers: ContainerSteering | None = None,
) -> SteerResult:
    """One steering run: builtin optimisers through ``runner`` (warm), a task's own steering
    container through ``containers`` (default: the settings' container runner, without warm
    containers, which need an owner to remove them). Skipped while another run, in this or another
    service process, holds the segment (``services.steering_gate``)."""
    with services.db.read() as conn:  # most notifications need no run: answer those without the gate
        segment = task_store.get_segment(conn, segment_id)
        task = task_store.get_task(conn, segment.task_id, None) if segment else None
        if segment is None or task is None or not _steerable(task, segment):
            return SteerResult(segment_id, 0, 0, "skipped")
        if points_to_generate(budget_of(task), segment.counts) <= 0:
            return SteerResult(segment_id, 0, 0, "skipped")
    with services.steering_gate.hold(segment_id) as held:
        if not held:
            return SteerResult(segment_id, 0, 0, "skipped", "another steering run holds this segment")
        return _steer_held(services, runner, segment_id, histories, containers)


def _steer_held(
    services: Services,
    runner: SegmentRunner,
    segment_id: int,
    histories: HistoryCache | None,
    containers: ContainerSteering | None,
) -> SteerResult:
    with services.db.read() as conn:
        segment = task_store.get_segment(conn, segment_id)
        task = task_store.get_task(conn, segment.task_id, None) if segment else None
        if segment is None or task is None or not _steerable(task, segment):
            return SteerResult(segment_id, 0, 0, "skipped")
        n = points_to_generate(budget_of(task), segment.counts)
        if n <= 0:
            return SteerResult(segment_id, 0, 0, "skipped")
        history = histories.history(conn, segment_id) if histories else point_store.history(conn, segment_id)
        started_at = database_time(conn)
    began = time.perf_counter()
    container: ContainerSteering | None = None
    if task.optimizer == CONTAINER_OPTIMIZER:
        container = containers or default_containers(services, warm=False)
    runner_name = container.name if container is not None else runner.name
    try:
        space = parse_search_space(segment.search_space)
        if container is not None:
            params = container.run(
                key=segment_id,
                command=parse_steering(task.options.get("steeringExec"), task.options.get("steeringContainer")),
                space=space,
                raw_space=segment.search_space,
                segmented=segment.segmented,
                model_id=segment.idx,
                history=history,
                n=n,
                max_points=task.max_points,
            )
        else:
            params = runner.run(
                key=segment_id,
                spec=spec_of(task),
                space=space,
                history=history,
                n=n,
                seed=task.seed + segment.idx,
                budget=task.max_points,
                parallelism=task.n_parallel_evaluation,
                failures_as_losses=task.failures_as_losses,
            )
        bad = [p for p in params if not space.contains(p)]
        if bad:
            raise ValueError(f"the optimiser proposed a point outside the search space: {bad[0]}")
    except Exception as exc:
        return _record_failure(
            services, runner_name, task, segment, n, started_at, began, f"{type(exc).__name__}: {exc}"
        )
    return _store_points(services, runner_name, segment, n, params, started_at, began)


def _steerable(task: TaskRecord, segment: SegmentRecord) -> bool:
    return task.state == TaskState.RUNNING.value and segment.state == SegmentState.ACTIVE.value


def _store_points(
    services: Services,
    runner_name: str,
    seen: SegmentRecord,
    requested: int,
    params: list[Params],
    started_at: float,
    began: float,
) -> SteerResult:
    with services.db.write() as conn:
        segment = task_store.get_segment(conn, seen.id)
        task = task_store.get_task(conn, seen.task_id, None)
        if segment is None or task is None or not _steerable(task, segment) or segment.iteration != seen.iteration:
            return SteerResult(seen.id, requested, 0, "skipped", "the segment changed during the run")
        room = points_to_generate(budget_of(task), segment.counts)
        chosen = params[: max(room, 0)]
        iteration = segment.iteration + 1
        if not run_store.advance_iteration(conn, segment.id, segment.iteration):
            return SteerResult(seen.id, requested, 0, "skipped", "another run took this iteration")
        numbers = point_store.insert_points(
            conn, task_id=task.id, segment_id=segment.id, iteration=iteration, params=chosen
        )
        outcome = "ok" if params else "exhausted"
        duration_s = time.perf_counter() - began
        run_store.record_run(
            conn,
            task_id=task.id,
            segment_id=segment.id,
            iteration=iteration,
            requested=requested,
            produced=len(chosen),
            runner=runner_name,
            outcome=outcome,
            message=None,
            started_at=started_at,
            duration_ms=duration_s * 1000,
        )
        if not params:
            task_store.set_segment_state(conn, segment.id, SegmentState.EXHAUSTED, end_reason="exhausted")
            exhausted = task_store.get_segment(conn, segment.id)
            assert exhausted is not None
            settle_segment(conn, task, exhausted)
    services.meters.steering_run(duration_s, outcome)
    recommendations_available(services, task.id, segment.idx, iteration, numbers, chosen, runner_name, duration_s)
    return SteerResult(seen.id, requested, len(chosen), outcome)


def _record_failure(
    services: Services,
    runner_name: str,
    task: TaskRecord,
    seen: SegmentRecord,
    requested: int,
    started_at: float,
    began: float,
    message: str,
) -> SteerResult:
    limit = services.settings.steering_max_failures
    outbox = Outbox(services)
    with services.db.write() as conn:
        segment = task_store.get_segment(conn, seen.id)
        if segment is None or segment.iteration != seen.iteration:
            return SteerResult(seen.id, requested, 0, "skipped", message)
        run_store.advance_iteration(conn, segment.id, segment.iteration)
        run_store.record_run(
            conn,
            task_id=task.id,
            segment_id=segment.id,
            iteration=segment.iteration + 1,
            requested=requested,
            produced=0,
            runner=runner_name,
            outcome="failed",
            message=message[:4000],
            started_at=started_at,
            duration_ms=(time.perf_counter() - began) * 1000,
        )
        recent = run_store.recent_outcomes(conn, segment.id, limit)
        if len(recent) >= limit and all(o == "failed" for o in recent):
            fail_task(conn, task.id, f"steering failed {limit} times in a row; last error: {message}", outbox)
    outbox.publish()
    services.meters.steering_run(time.perf_counter() - began, "failed")
    return SteerResult(seen.id, requested, 0, "failed", message)
