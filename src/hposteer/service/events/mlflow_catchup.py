"""The ``mlflow`` handler's catch-up when a service starts: recent points that have no run.

The handler's backlog (hposteer.service.events.mlflow_backlog) lives in memory, so points still owed when a
service stopped, and the points whose ``end_job`` a killed service never handed over, have no run.
When a service with the handler starts (the ``startup`` event), one thread looks at the tasks with
a point ended in the last ``HPOSTEER_MLFLOW_CATCHUP_DAYS`` (7; 0 turns it off), compares each with
its experiment as ``hposteer mlflow sync`` does, and hands each point that has no run, or a run of
another state, to the handler's ``record``: the backlog's, so that it takes its turn with the
events' own points (one call into MLflow at a time, no second run for a point) and is owed like
them if MLflow goes down meanwhile. While MLflow cannot be reached the catch-up is tried again at
growing intervals, as the backlog is. Older points are left to ``hposteer mlflow sync``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hposteer.service.events.mlflow_backlog import SYNC_HINT, why

log = logging.getLogger("hposteer.events.mlflow")


@dataclass(frozen=True)
class CatchUpResult:
    tasks: int  # tasks with a point ended in the window
    handed: int  # points without an up-to-date run, handed to the recorder
    refused: int  # of those, points MLflow refused (logged one by one)


class CatchUp:
    def __init__(
        self,
        tasks_since: Callable[[float], list[int]],
        stale_points: Callable[[int], list[int]],
        record: Callable[[int, int], object],
        reachable: Callable[[], bool],
        *,
        retry_s: float,
        max_retry_s: float = 300.0,
    ):
        self._tasks_since = tasks_since
        self._stale_points = stale_points
        self._record = record
        self._reachable = reachable
        self._retry_s = retry_s
        self._max_retry_s = max(max_retry_s, retry_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: CatchUpResult | None = None  # set once a catch-up went through

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, since: float) -> None:
        """Catch up, in the background, on the points that ended at or after ``since`` (wall-clock seconds)."""
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, args=(since,), name="events-mlflow-catchup", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, since: float) -> None:
        delay = self._retry_s
        while not self._stop.is_set():
            try:
                self.result = self._once(since)
            except Exception as exc:
                if self._reachable():
                    log.error("MLflow catch-up at start-up failed (%s); %s", why(exc), SYNC_HINT)
                    return
                log.warning("MLflow catch-up at start-up: MLflow unreachable (%s); again in %g s", why(exc), delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self._max_retry_s)
                continue
            window = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(since))
            log.info(
                "MLflow catch-up: %d task(s) with points ended since %s checked, %d point(s) without an up-to-date "
                "run handed over%s",
                self.result.tasks,
                window,
                self.result.handed,
                f", {self.result.refused} refused" if self.result.refused else "",
            )
            return

    def _once(self, since: float) -> CatchUpResult:
        task_ids = self._tasks_since(since)
        handed = refused = 0
        for task_id in task_ids:
            if self._stop.is_set():
                break
            for number in self._stale_points(task_id):
                handed += 1
                try:
                    self._record(task_id, number)
                except Exception as exc:  # MLflow answers but refuses this point (the backlog raised it)
                    refused += 1
                    log.error("MLflow refused task %d point %d at catch-up: %s", task_id, number, why(exc))
        return CatchUpResult(len(task_ids), handed, refused)
