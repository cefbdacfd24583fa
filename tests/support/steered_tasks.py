"""A task of one segment whose points are steered already, for the claim tests and the steering-run use-case tests."""

from __future__ import annotations

from typing import Any

from hposteer.service.operations import pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.steer import steer_segment
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.steering.optimizers.warm import WarmRunner
from hposteer.service.store import tasks as task_store

ALICE = Principal("alice", "user", 1)
PILOT = Principal("site", "pilot", 2)
SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


def steered_segment(services: Services, *, points: int, name: str = "claims", **fields: Any) -> tuple[int, int]:
    """Submit a random-search task of ``points`` points (``fields``: more TaskRequest fields, e.g.
    site, n_parallel_evaluation, max_evaluation_jobs), steer all its points; (task id, segment id)."""
    values: dict[str, Any] = {"n_parallel_evaluation": 4, "seed": 1, **fields}
    request = TaskRequest(
        name=name, evaluation_exec="true", search_space=SPACE, optimizer="random",
        max_points=points, n_points_per_iteration=points, **values,
    )  # fmt: skip
    task_id = submit_task(services, ALICE, request, dry_run=False).id
    with services.db.read() as conn:
        segment_id = task_store.segments_of(conn, task_id)[0].id
    runner = WarmRunner()
    try:
        assert steer_segment(services, runner, segment_id).produced == points
    finally:
        runner.close()
    return task_id, segment_id


def one_slot_pilot(services: Services, site: str, *, name: str = "p", slot: str = "0") -> int:
    """Register a pilot with one CPU slot at ``site``; its id."""
    registered = pilot_jobs.register_pilot(
        services, PILOT, name=name, site=site, hostname="h", slots=[{"name": slot, "gpus": []}],
        runtimes=["local"], version="t",
    )  # fmt: skip
    return int(registered.pilot_id)
