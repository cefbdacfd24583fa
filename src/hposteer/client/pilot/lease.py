"""Keeping an attempt's lease alive: a heartbeat every ``heartbeat_interval_s`` while it runs.

The heartbeats run in a thread of their own, from the moment a job arrives (a large sandbox
download counts too) until it is reported, so a slow or unreachable server never delays
watching the payload. The answers become two events: ``kill`` (the task was killed: stop
the payload, report ``killed``) and ``lost`` (409: the lease is not ours any more; stop the
payload and drop the result). A server that cannot be reached is tried again at the next
beat while the payload keeps running.
"""

from __future__ import annotations

import threading

from hposteer.client.http import ApiClient, ApiError, Conflict, Job, ServerUnreachable
from hposteer.client.pilot.logs import Logger


class LeaseKeeper:
    def __init__(self, api: ApiClient, job: Job, logger: Logger, label: str):
        self._api = api
        self._job = job
        self._log = logger
        self._label = label
        self.interval_s = max(0.05, float(job["heartbeat_interval_s"]))
        self.kill = threading.Event()
        self.lost = threading.Event()
        self.changed = threading.Event()  # set together with kill or lost
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job['attempt_id']}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # A heartbeat in flight is not waited for long: its answer no longer matters.
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        job = self._job
        while not self._stop.wait(self.interval_s):
            try:
                answer = self._api.heartbeat(job["attempt_id"], job["lease_token"])
            except Conflict as exc:
                if not self._stop.is_set():
                    self._log.info(f"{self._label}: lease lost ({exc.message}); the result will be dropped")
                self.lost.set()
                self.changed.set()
                return
            except ServerUnreachable as exc:
                if not self._stop.is_set():
                    self._log.info(f"{self._label}: heartbeat failed ({exc.reason}); the payload keeps running")
                continue
            except ApiError as exc:
                if not self._stop.is_set():
                    self._log.info(f"{self._label}: heartbeat refused ({exc.status}: {exc.message}); retrying")
                continue
            self.beats += 1
            self._log.debug(
                f"{self._label}: heartbeat {answer['action']}, lease expires in {answer['lease_expires_in_s']:.1f} s"
            )
            if answer["action"] == "kill":
                self.kill.set()
                self.changed.set()
                return
