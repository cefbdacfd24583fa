"""``hposteer mlflow sync``: record in MLflow the evaluated points whose run is missing or out of date.

The ``mlflow`` handler records points as their ``end_job`` events arrive, at most once: points ended
while the service was stopped, or while MLflow was down past what the handler's backlog keeps, have
no run. This compares each task's done and failed points with its experiment's runs (by their
``hposteer.point`` and ``hposteer.state`` tags) and records the missing or changed ones through the
handler's own ``record``, so a synced run is the run the handler would have made. Running it again
changes nothing. It is safe while services run: a point's run is looked up by its tag before one is
made, so only a point that a service and this record in the same instant could get a second run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.events.mlflow_handler import POINT_TAG, experiment_name
from service.store.database import Database
from service.store.tracking import tasks_with_ended_points, tracked_task

if TYPE_CHECKING:
    from service.events.mlflow_handler import MlflowHandler

PAGE = 1000


class UnknownTask(LookupError):
    pass


@dataclass(frozen=True)
class TaskSync:
    task_id: int
    evaluated: int  # done and failed points in the database
    recorded: int  # runs made or brought up to date now
    up_to_date: int


def sync_tasks(handler: MlflowHandler, db: Database, task_ids: list[int] | None = None) -> list[TaskSync]:
    """Sync the given tasks (every task with an evaluated point when None), in order."""
    if task_ids is None:
        with db.read() as conn:
            task_ids = tasks_with_ended_points(conn)
    return [sync_task(handler, db, task_id) for task_id in task_ids]


def sync_task(handler: MlflowHandler, db: Database, task_id: int) -> TaskSync:
    evaluated, stale = stale_points(handler, db, task_id)
    for number in stale:
        handler.record(task_id, number)
    return TaskSync(task_id, evaluated, len(stale), evaluated - len(stale))


def stale_points(handler: MlflowHandler, db: Database, task_id: int) -> tuple[int, list[int]]:
    """How many points of the task are evaluated, and which of them have no run or a run of another state."""
    with db.read() as conn:
        task = tracked_task(conn, task_id)
    if task is None:
        raise UnknownTask(f"task {task_id} does not exist")
    recorded = _recorded_states(handler, experiment_name(handler.prefix, task.id, task.name))
    return len(task.ended_points), sorted(n for n, state in task.ended_points.items() if recorded.get(n) != state)


def _recorded_states(handler: MlflowHandler, experiment: str) -> dict[int, str]:
    """Point number -> the state its run records, for every run of the experiment (none if it does not exist)."""
    client = handler.client()
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        return {}
    states: dict[int, str] = {}
    token: str | None = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=PAGE, page_token=token)
        for run in page:
            point = run.data.tags.get(POINT_TAG, "")
            if point.isdigit():
                states[int(point)] = run.data.tags.get("hposteer.state", "")
        token = page.token
        if not token:
            return states
