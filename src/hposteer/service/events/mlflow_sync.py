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

from hposteer.service.events.mlflow_handler import MlflowHandler
from hposteer.service.store.database import Database
from hposteer.service.store.tracking import tasks_with_ended_points


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
    return [sync_task(handler, task_id) for task_id in task_ids]


def sync_task(handler: MlflowHandler, task_id: int) -> TaskSync:
    found = handler.stale_points(task_id)
    if found is None:
        raise UnknownTask(f"task {task_id} does not exist")
    evaluated, stale = found
    for number in stale:
        handler.record(task_id, number)
    return TaskSync(task_id, evaluated, len(stale), evaluated - len(stale))
