"""Points the ``mlflow`` handler could not record yet, retried until the tracking server is back.

While MLflow is unreachable, every call costs the MLflow client's own retries (up to minutes), so
once one point failed the handler stops calling MLflow for new ones: they join this backlog at no
cost, and one thread retries the oldest at growing intervals (``retry_s`` doubling up to
``max_retry_s``). When one succeeds the rest follow at once, in the order their points ended.

A failure is an outage only if MLflow then fails a plain probe (``reachable``) too. A point that
fails while MLflow answers (a bad value, a bug) is that point's own error: it is raised (the bus logs
and counts it, ``hposteer_events_failed_total``) and never holds up the points behind it.

The backlog lives in memory and is bounded (``capacity``): points beyond it, points still owed when
the service stops, and a point that failed ``max_failures`` times in a row are logged. The next
start of a service with the handler records those that ended recently (hposteer.service.events.mlflow_catchup);
``hposteer mlflow sync`` compares any task's runs with its points and records what is missing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger("hposteer.events.mlflow")

Key = tuple[int, int]  # (task id, point number)

SYNC_HINT = "run `hposteer mlflow sync` once MLflow is reachable"


class Backlog:
    def __init__(
        self,
        record: Callable[[int, int], object],
        reachable: Callable[[], bool],
        *,
        retry_s: float,
        max_retry_s: float = 300.0,
        capacity: int = 100_000,
        max_failures: int = 50,
    ):
        self._record = record
        self._reachable = reachable
        self._retry_s = retry_s
        self._max_retry_s = max(max_retry_s, retry_s)
        self._capacity = capacity
        self._max_failures = max_failures
        self._owed: OrderedDict[Key, int] = OrderedDict()  # key -> failures in a row
        self._lock = threading.Lock()  # guards _owed
        self._recording = threading.Lock()  # one call into MLflow at a time (event thread and retry thread)
        self._wake = threading.Event()
        self._closed = False
        self._lost = 0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._owed)

    @property
    def lost(self) -> int:
        """Points given up on (over capacity, or failing again and again): left to ``mlflow sync``."""
        return self._lost

    def record(self, task_id: int, number: int) -> None:
        """Record the point now, or owe it if MLflow is down (now or already); a point's own error is raised."""
        key = (task_id, number)
        with self._lock:
            if self._owed:  # an outage is on: keep the order, and do not wait out the client's retries again
                self._owe(key)
                return
        try:
            with self._recording:
                self._record(task_id, number)
        except Exception as exc:
            if self._reachable():
                raise
            with self._lock:
                self._owe(key)
            log.warning("MLflow failed to record task %d point %d (%s); retrying in the background", *key, why(exc))

    def _owe(self, key: Key) -> None:
        """Add a point to the backlog (caller holds ``_lock``)."""
        if key in self._owed:
            return
        if len(self._owed) >= self._capacity:
            self._lost += 1
            if self._lost == 1 or self._lost % 1000 == 0:
                log.error(
                    "MLflow backlog full (%d points): %d point(s) not kept; %s", self._capacity, self._lost, SYNC_HINT
                )
            return
        self._owed[key] = 0
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._retry, name="events-mlflow-backlog", daemon=True)
            self._thread.start()

    def _retry(self) -> None:
        delay = self._retry_s
        while True:
            self._wake.wait(delay)
            if self._closed:
                return
            delay = self._retry_s if self._drain() else min(delay * 2, self._max_retry_s)

    def _drain(self) -> bool:
        """Record owed points oldest first; False when MLflow failed again (the backlog stays)."""
        while True:
            with self._lock:
                if not self._owed or self._closed:
                    return True
                key = next(iter(self._owed))
            try:
                with self._recording:
                    self._record(*key)
            except Exception as exc:
                if self._reachable():  # MLflow answers: the point's own error, which must not hold up the rest
                    self._give_up(key, f"MLflow answers but refused it ({why(exc)})")
                    continue
                with self._lock:
                    failures = self._owed[key] = self._owed.get(key, 0) + 1
                if failures >= self._max_failures:
                    self._give_up(key, f"it failed {failures} times in a row ({why(exc)}); {SYNC_HINT}")
                    continue
                log.info("MLflow still failing (%s); %d point(s) owed", why(exc), len(self))
                return False
            with self._lock:
                self._owed.pop(key, None)
                left = len(self._owed)
            if not left:
                log.info("MLflow is back: every owed point is recorded")

    def _give_up(self, key: Key, why: str) -> None:
        with self._lock:
            self._owed.pop(key, None)
            self._lost += 1
        log.error("task %d point %d is not recorded in MLflow: %s", *key, why)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            owed = len(self._owed)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if owed or self._lost:
            log.error(
                "%d point(s) owed to MLflow and %d given up on at shutdown; the next start records those that ended "
                "in the last HPOSTEER_MLFLOW_CATCHUP_DAYS, or %s",
                owed,
                self._lost,
                SYNC_HINT,
            )


def why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
