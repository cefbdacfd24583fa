"""Keeping an attempt's lease alive: a heartbeat every ``heartbeat_interval_s`` while it runs.

The heartbeats run in a thread of their own, from the moment a job arrives (a large sandbox
download counts too) until it is reported, so a slow or unreachable server never delays
watching the payload. The answers become two events: ``kill`` (the task was killed: stop
the payload, report ``killed``) and ``lost`` (409: the lease is not ours any more; stop the
payload and drop the result). A server that cannot be reached is tried again at the next
beat while the payload keeps running.

The heartbeats also carry the payload's intermediate reports (client/pilot/reports.py): once a
:class:`ReportTailer` is attached, the thread reads the report file every 0.1 s and beats at once
when something is pending (at most every 0.2 s, 100 reports a beat), so a report reaches the
service within about 0.3 s. After a failed beat the pending reports wait for the next regular beat.
A payload that writes no report file gets exactly the heartbeats it got before.
"""

from __future__ import annotations

import threading
import time

from hposteer.client.http import ApiClient, ApiError, Conflict, ServerUnreachable
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.reports import ReportTailer
from hposteer.client.wire import Job

POLL_S = 0.1  # how often the report file is read
REPORT_BEAT_GAP_S = 0.2  # the shortest time between two heartbeats that carry reports


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
        self._wake = threading.Event()  # a tailer was attached, or the keeper stops
        self._beating = threading.Lock()  # one heartbeat at a time: the thread's, or the final flush's
        self._tailer: ReportTailer | None = None
        self._last_beat = time.monotonic()
        self._failed = False  # the last beat got no answer: pending reports wait for the regular beat
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job['attempt_id']}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        # A heartbeat in flight is not waited for long: its answer no longer matters.
        self._thread.join(timeout=1.0)

    def forward(self, tailer: ReportTailer) -> None:
        """Send the reports ``tailer`` reads with the heartbeats, from now on."""
        self._tailer = tailer
        self._wake.set()

    def flush(self, deadline_s: float = 5.0) -> bool:
        """The payload has ended: read its report file a last time and send what is pending, in as
        many beats as it takes within ``deadline_s``. True when nothing is left unsent."""
        tailer = self._tailer
        if tailer is None:
            return True
        deadline = time.monotonic() + deadline_s
        while not self.lost.is_set():
            if not self._beating.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            try:
                tailer.poll()
                if not tailer.pending:
                    return True
                if time.monotonic() >= deadline or not self._beat():
                    break
                failed = self._failed
            finally:
                self._beating.release()
            if failed and self._stop.wait(min(REPORT_BEAT_GAP_S, max(0.0, deadline - time.monotonic()))):
                break
        unsent = tailer.pending
        if unsent:
            self._log.info(f"{self._label}: some intermediate reports could not be sent before the completion")
        return not unsent

    def _due(self, now: float) -> bool:
        if now - self._last_beat >= self.interval_s:
            return True
        tailer = self._tailer
        return tailer is not None and tailer.pending and not self._failed and now - self._last_beat >= REPORT_BEAT_GAP_S

    def _run(self) -> None:
        while True:
            wait_s = self.interval_s - (time.monotonic() - self._last_beat)
            if self._tailer is not None:
                wait_s = min(wait_s, POLL_S)
            self._wake.wait(max(0.0, wait_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            tailer = self._tailer
            with self._beating:
                if self._stop.is_set():
                    return
                if tailer is not None:
                    tailer.poll()
                if self._due(time.monotonic()) and not self._beat():
                    return

    def _beat(self) -> bool:
        """One heartbeat (with the pending reports, if any); False when the lease thread should end."""
        job = self._job
        tailer = self._tailer
        reports, refused = tailer.batch() if tailer is not None else ([], [])
        self._last_beat = time.monotonic()
        try:
            answer = self._api.heartbeat(
                job["attempt_id"], job["lease_token"], reports=reports or None, refused=refused or None
            )
        except Conflict as exc:
            if not self._stop.is_set():
                self._log.info(f"{self._label}: lease lost ({exc.message}); the result will be dropped")
            self.lost.set()
            self.changed.set()
            return False
        except ServerUnreachable as exc:
            self._failed = True
            if not self._stop.is_set():
                self._log.info(f"{self._label}: heartbeat failed ({exc.reason}); the payload keeps running")
            return True
        except ApiError as exc:
            if exc.status == 422 and tailer is not None and (reports or refused):
                # What the beat carried was refused, so the lease was not extended either: drop the
                # batch and beat again at once without it. A report never costs the attempt its lease.
                tailer.reject(reports, refused, exc.message)
                self._last_beat = time.monotonic()
                return self._beat()
            self._failed = True
            if not self._stop.is_set():
                self._log.info(f"{self._label}: heartbeat refused ({exc.status}: {exc.message}); retrying")
            return True
        finally:
            self._last_beat = time.monotonic()
        self._failed = False
        self.beats += 1
        if tailer is not None and (reports or refused):
            tailer.acknowledge(reports, refused, answer)
        action = str(answer.get("action"))
        self._log.debug(
            f"{self._label}: heartbeat {action}, lease expires in {float(answer['lease_expires_in_s']):.1f} s"
            + (f", {len(reports)} report(s) sent" if reports else "")
        )
        if action == "kill":
            self.kill.set()
            self.changed.set()
            return False
        if action != "continue":
            self._log.info(f"{self._label}: the heartbeat answered {action[:40]!r}, which this pilot ignores")
        return True
