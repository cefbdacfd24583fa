"""The ``mlflow`` handler: every evaluated point becomes one MLflow run, in one experiment per task.

On ``end_job`` with a terminal point (done or failed) the handler reads the point from the
database (on its own thread, never the request's) and records it: the experiment
``<prefix>/<task id>-<task name>``, a run ``point-<id>`` with the point's hyperparameters as
params, ``loss``, ``failed`` and ``attempts`` as metrics, site, pilot and state as tags, the
final attempt's metadata as ``meta.json`` (its numbers also as ``meta.<key>`` metrics), the
intermediate reports as metric histories with their steps (``report.<name>``; docs/multi-fidelity.md) and
the metrics tarball under ``metrics/``. The run is tagged ``hposteer.point`` when it is created and
searched for first, so a replayed event (or a point that ends again after ``task retry``)
updates its run instead of making a second one. mlflow is imported on the first event.

While MLflow fails, points wait in a ``Backlog`` (hposteer.service.events.mlflow_backlog) and are recorded once
it is back. At ``startup`` a ``CatchUp`` (hposteer.service.events.mlflow_catchup) records the recent points a
stopped or killed service left without a run; ``hposteer mlflow sync`` (hposteer.service.events.mlflow_sync)
records any others.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hposteer.service.core.events import Event, JobEnded, Startup
from hposteer.service.events.mlflow_backlog import Backlog
from hposteer.service.events.mlflow_catchup import CatchUp
from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.database import Database
from hposteer.service.store.tracking import TrackedPoint, tasks_with_ended_points, tracked_point, tracked_task

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

log = logging.getLogger("hposteer.events.mlflow")

TERMINAL = ("done", "failed")
POINT_TAG = "hposteer.point"
BATCH = 100  # MLflow's limit of params or tags per log_batch call
SEARCH_PAGE = 1000  # runs per search when comparing an experiment with its task
_UNSAFE = re.compile(r"[^\w\-. /:]")  # MLflow names allow letters, digits, _ - . space / :


class HandlerUnavailable(RuntimeError):
    """A configured handler cannot work here (its package is missing)."""


def experiment_name(prefix: str, task_id: int, task_name: str) -> str:
    return f"{prefix}/{task_id}-{task_name.rstrip('/')}"[:500]  # PanDA task names end in "/"


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _key(name: str) -> str:
    return _UNSAFE.sub("_", name)[:250] or "_"


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text[:limit]


class MlflowHandler:
    def __init__(
        self,
        tracking_uri: str,
        prefix: str,
        db: Database,
        blobs: BlobStore,
        retry_s: float = 10.0,
        catchup_s: float = 7 * 86400.0,
    ):
        if importlib.util.find_spec("mlflow") is None:
            raise HandlerUnavailable(
                "event handler 'mlflow' needs the mlflow package: pip install 'hposteer[service,mlflow]'"
            )
        self._uri = tracking_uri
        self._prefix = prefix
        self._db = db
        self._blobs = blobs
        self._client: MlflowClient | None = None
        self._experiments: dict[int, str] = {}
        self._backlog = Backlog(self.record, self.reachable, retry_s=retry_s)
        self._catchup_s = catchup_s
        self.catch_up = CatchUp(
            self._tasks_ended_since, self._stale_in, self._backlog.record, self.reachable, retry_s=retry_s
        )

    @property
    def prefix(self) -> str:
        return self._prefix

    def handle(self, event: Event) -> None:
        if isinstance(event, JobEnded) and event.point_state in TERMINAL:
            self._backlog.record(event.task_id, event.point)
        elif isinstance(event, Startup) and self._catchup_s > 0:
            self.catch_up.start(event.at - self._catchup_s)

    def owed(self) -> int:
        """Points waiting for MLflow to come back."""
        return len(self._backlog)

    def close(self) -> None:
        self.catch_up.close()
        self._backlog.close()
        self._client = None

    def stale_points(self, task_id: int) -> tuple[int, list[int]] | None:
        """How many points of the task are evaluated, and which of them have no run or a run of another
        state (read from its experiment's runs); None if there is no such task."""
        with self._db.read() as conn:
            task = tracked_task(conn, task_id)
        if task is None:
            return None
        recorded = self._recorded_states(experiment_name(self._prefix, task.id, task.name))
        return len(task.ended_points), sorted(n for n, state in task.ended_points.items() if recorded.get(n) != state)

    def _recorded_states(self, experiment: str) -> dict[int, str]:
        """Point number -> the state its run records, for every run of the experiment (none if it does not exist)."""
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        if found is None or found.lifecycle_stage == "deleted":
            return {}
        states: dict[int, str] = {}
        token: str | None = None
        while True:
            page = client.search_runs([found.experiment_id], max_results=SEARCH_PAGE, page_token=token)
            for run in page:
                point = run.data.tags.get(POINT_TAG, "")
                if point.isdigit():
                    states[int(point)] = run.data.tags.get("hposteer.state", "")
            token = page.token
            if not token:
                return states

    def _tasks_ended_since(self, since: float) -> list[int]:
        with self._db.read() as conn:
            return tasks_with_ended_points(conn, since)

    def _stale_in(self, task_id: int) -> list[int]:
        found = self.stale_points(task_id)
        return [] if found is None else found[1]  # None: deleted meanwhile

    def record(self, task_id: int, number: int) -> str | None:
        """Create or update the run of one point; its run id (None: the point is gone or not terminal)."""
        with self._db.read() as conn:
            point = tracked_point(conn, task_id, number)
        if point is None or point.state not in TERMINAL:
            return None
        client = self.client()
        experiment_id = self._experiment(client, point)
        found = client.search_runs([experiment_id], filter_string=f"tags.`{POINT_TAG}` = '{number}'", max_results=1)
        if found:
            run_id = str(found[0].info.run_id)
        else:
            identity = {POINT_TAG: str(number), "hposteer.task_id": str(task_id), "mlflow.user": point.owner}
            run = client.create_run(
                experiment_id, start_time=_ms(point.created_at), tags=identity, run_name=_name(point)
            )
            run_id = str(run.info.run_id)
            params = _params(point)
            for start in range(0, len(params), BATCH):
                client.log_batch(run_id, params=params[start : start + BATCH])
        metrics, tags = _metrics(point) + _report_metrics(point), _tags(point)
        for start in range(0, max(len(metrics), len(tags)), BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH], tags=tags[start : start + BATCH])
        self._artifacts(client, run_id, point)
        status = "FINISHED" if point.state == "done" else "FAILED"
        client.set_terminated(run_id, status=status, end_time=_ms(point.finished_at))
        log.debug("task %d point %d recorded as MLflow run %s", task_id, number, run_id)
        return run_id

    def reachable(self) -> bool:
        """Whether the tracking store answers at all (one small search): tells an outage from a point's own error."""
        try:
            self.client().search_experiments(max_results=1)
        except Exception:
            return False
        return True

    def client(self) -> MlflowClient:
        if self._client is None:
            # MLflow prints a "View run" line to stdout per finished run; the service's output is its log.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self._uri)
        return self._client

    def _experiment(self, client: MlflowClient, point: TrackedPoint) -> str:
        cached = self._experiments.get(point.task_id)
        if cached is not None:
            return cached
        from mlflow.exceptions import MlflowException

        name = experiment_name(self._prefix, point.task_id, point.task_name)
        found = client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if found is not None:
            experiment_id = str(found.experiment_id)
        else:
            tags = {"hposteer.task_id": str(point.task_id), "hposteer.owner": point.owner}
            tags["hposteer.optimizer"] = f"{point.optimizer} ({point.optimizer_mode})"
            try:
                experiment_id = str(client.create_experiment(name, tags=tags))
            except MlflowException:  # another replica created it meanwhile
                again = client.get_experiment_by_name(name)
                if again is None:
                    raise
                experiment_id = str(again.experiment_id)
        if len(self._experiments) >= 10_000:
            self._experiments.clear()
        self._experiments[point.task_id] = experiment_id
        return experiment_id

    def _artifacts(self, client: MlflowClient, run_id: str, point: TrackedPoint) -> None:
        meta = _final_meta(point)
        if meta is not None:
            client.log_dict(run_id, meta, "meta.json")
        if point.metrics_sha256 is None or point.metrics_name is None:
            return
        blob = self._blobs.path(point.metrics_sha256)
        if blob is None:
            log.warning(
                "task %d point %d: metrics blob %s is missing", point.task_id, point.number, point.metrics_sha256
            )
            return
        with tempfile.TemporaryDirectory(prefix="hposteer-mlflow-") as tmp:
            named = Path(tmp) / Path(point.metrics_name).name  # as users download it, not by its hash
            named.symlink_to(blob.resolve())
            client.log_artifact(run_id, str(named), artifact_path="metrics")


def _name(point: TrackedPoint) -> str:
    return f"{point.segment_name}-point-{point.number}" if point.segmented else f"point-{point.number}"


def _final_meta(point: TrackedPoint) -> dict[str, Any] | None:
    with_meta = [a.meta for a in point.attempts if a.meta is not None]
    return with_meta[-1] if with_meta else None


def _params(point: TrackedPoint) -> list[Param]:
    from mlflow.entities import Param

    values = point.params if isinstance(point.params, dict) else {"params": point.params}
    return [Param(_key(str(k)), _text(v, 6000)) for k, v in values.items()]


def _metrics(point: TrackedPoint) -> list[Metric]:
    from mlflow.entities import Metric

    stamp, step = _ms(point.finished_at) or 0, len(point.attempts)
    values: dict[str, float] = {"failed": float(point.state == "failed"), "attempts": float(len(point.attempts))}
    if point.loss is not None:
        values["loss"] = float(point.loss)
    for key, value in (_final_meta(point) or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[_key(f"meta.{key}")] = float(value)
    return [Metric(key, value, stamp, step) for key, value in values.items()]


def _report_metrics(point: TrackedPoint) -> list[Metric]:
    """The intermediate reports as metric histories with their steps: ``report.<name>`` for the attempt that
    reported last (the one the point's result came from), ``attempt<N>.report.<name>`` for earlier attempts."""
    from mlflow.entities import Metric

    if not point.reports:
        return []
    last = point.reports[-1].attempt_number
    found: list[Metric] = []
    for r in point.reports:
        prefix = "report" if r.attempt_number == last else f"attempt{r.attempt_number}.report"
        stamp = _ms(r.reported_at) or 0
        found.extend(Metric(_key(f"{prefix}.{name}"), value, stamp, r.step) for name, value in r.metrics.items())
    return found


def _tags(point: TrackedPoint) -> list[RunTag]:
    from mlflow.entities import RunTag

    last = point.attempts[-1] if point.attempts else None
    tags = {
        "hposteer.state": point.state,
        "hposteer.segment": str(point.segment),
        "hposteer.segment_name": point.segment_name,
        "hposteer.iteration": str(point.iteration),
        "hposteer.site": last.site if last else "",
        "hposteer.pilot": (last.pilot or "") if last else "",
        "hposteer.failure_class": (last.failure_class or "") if last else "",
        "hposteer.attempt_sites": ",".join(a.site for a in point.attempts),
    }
    return [RunTag(key, _text(value, 8000)) for key, value in tags.items()]
