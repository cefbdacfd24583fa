"""The pilot agent: one thread per slot pulls a job, runs it, heartbeats, and reports.

Signals: the first SIGTERM/SIGINT drains (no new work; running evaluations finish and are
reported), a second one stops the payloads (reported as ``killed``). With
``exit_when_idle`` the pilot also exits once no slot has had work for that long.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import __version__
from client.http import ApiClient, ApiError, Conflict, Job, ServerUnreachable
from client.pilot.output import Result, read_result
from client.pilot.runtime import Runtime, RuntimeStartError, log_tail
from client.pilot.slots import Slot
from client.pilot.workdir import SandboxError, Workspace

LOG_NAME = "payload.log"


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} pilot: {message}", file=sys.stderr, flush=True)


@dataclass
class PilotConfig:
    name: str
    site: str
    slots: list[Slot]
    runtime: Runtime
    workdir: Path
    exit_when_idle_s: float | None = None
    clean_workdirs: bool = False
    verbose: bool = False
    threads_per_slot: int | None = None  # exported as OMP_NUM_THREADS etc. unless already set


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class Pilot:
    def __init__(self, api: ApiClient, config: PilotConfig):
        self.api = api
        self.config = config
        self.workspace = Workspace(config.workdir, api)
        self.draining = threading.Event()
        self.killing = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._last_work = time.monotonic()
        self.pilot_id = 0
        self.idle_poll_s = 2.0
        self.evaluated = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def register(self) -> None:
        answer = self.api.register_pilot(
            {
                "name": self.config.name,
                "site": self.config.site,
                "hostname": socket.gethostname(),
                "slots": [{"name": s.name, "gpus": list(s.gpus)} for s in self.config.slots],
                "runtimes": [self.config.runtime.name],
                "version": __version__,
            }
        )
        self.pilot_id = answer["pilot_id"]
        self.idle_poll_s = answer["idle_poll_s"]
        log(
            f"registered as pilot {self.pilot_id} at site {self.config.site} with {len(self.config.slots)} slot(s), "
            f"runtime {self.config.runtime.name}, working directories under {self.workspace.root}"
        )

    def run(self) -> int:
        self.register()
        threads = [
            threading.Thread(target=self._slot_loop, args=(slot,), name=f"slot-{slot.name}", daemon=True)
            for slot in self.config.slots
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)
        log(f"stopped after {self.evaluated} evaluation(s)")
        return 0

    def signal(self) -> None:
        """Called on SIGTERM/SIGINT: drain first, kill on the second."""
        if not self.draining.is_set():
            with self._lock:
                running = len(self._busy)
            log(f"draining: no new work; waiting for {running} running evaluation(s) (signal again to stop them)")
            self.draining.set()
        else:
            log("stopping running evaluations")
            self.killing.set()

    # -- slots -------------------------------------------------------------------------------

    def _idle_too_long(self) -> bool:
        limit = self.config.exit_when_idle_s
        if limit is None:
            return False
        with self._lock:
            return not self._busy and time.monotonic() - self._last_work >= limit

    def _slot_loop(self, slot: Slot) -> None:
        job: Job | None = None
        backoff = _Backoff(first_s=0.05, max_s=self.idle_poll_s)
        # A job already claimed (handed back with a completion) is run even when draining:
        # dropping it would cost the point one of its attempts for nothing.
        while job is not None or not self.draining.is_set():
            if job is None:
                try:
                    job = self.api.acquire(self.pilot_id, slot.name)["job"]
                except ServerUnreachable as exc:
                    log(f"slot {slot.name}: {exc}; retrying in {self.idle_poll_s:g} s")
                if job is None:
                    if self._idle_too_long():
                        log(f"no work for {self.config.exit_when_idle_s:g} s; exiting")
                        self.draining.set()
                        break
                    self.draining.wait(backoff.next())
                    continue
                backoff.reset()
            with self._lock:
                self._busy.add(slot.name)
            try:
                job = self._evaluate_and_report(slot, job)
            finally:
                with self._lock:
                    self._busy.discard(slot.name)
                    self._last_work = time.monotonic()

    def _evaluate_and_report(self, slot: Slot, job: Job) -> Job | None:
        """Run one job; returns the next job handed back with the completion, if any."""
        log(
            f"slot {slot.name}: task {job['task_id']} point {job['point_id']} attempt {job['attempt_number']} "
            f"{_short(job['params'])}"
        )
        started = time.monotonic()
        report = self._evaluate(slot, job)
        if report is None:
            return None  # the lease was lost: the result must not be reported
        report["duration_s"] = round(time.monotonic() - started, 3)
        if report["outcome"] == "success":
            log(f"slot {slot.name}: point {job['point_id']} loss {report['loss']:.6g}")
        else:
            log(f"slot {slot.name}: point {job['point_id']} failed ({report['failure_class']}): {report['message']}")
        self.evaluated += 1
        return self._complete(job, report)

    def _complete(self, job: Job, report: dict[str, Any]) -> Job | None:
        acquire_next = not self.draining.is_set()
        for _ in range(10):
            try:
                answer = self.api.complete(job["attempt_id"], report, acquire_next=acquire_next)
                return answer.get("next_job") if acquire_next else None
            except Conflict as exc:
                log(f"point {job['point_id']}: result not accepted: {exc.message}")
                return None
            except ServerUnreachable as exc:
                log(f"point {job['point_id']}: cannot report yet ({exc.reason}); retrying")
                time.sleep(min(self.idle_poll_s, 5.0))
            except ApiError as exc:
                log(f"point {job['point_id']}: the server refused the report: {exc.describe()}")
                return None
        log(f"point {job['point_id']}: giving up reporting; the lease will expire and the point be retried")
        return None

    # -- one evaluation ----------------------------------------------------------------------

    def _environment(self, slot: Slot, job: Job, workdir: Path) -> dict[str, str]:
        env = dict(os.environ)
        if self.config.threads_per_slot is not None:
            # Numeric libraries start one thread per core in every slot otherwise, and
            # concurrent slots then slow each other down many times over.
            for name in THREAD_VARIABLES:
                env.setdefault(name, str(self.config.threads_per_slot))
        env.update(
            {
                "CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices,
                "HPOSTEER_SLOT": slot.name,
                "HPOSTEER_TASK_ID": str(job["task_id"]),
                "HPOSTEER_POINT_ID": str(job["point_id"]),
                "HPOSTEER_ATTEMPT": str(job["attempt_number"]),
                "HPOSTEER_SEGMENT_NAME": job["segment"]["name"],
                "PATH": env.get("PATH", "/usr/bin:/bin") + os.pathsep + str(workdir),
            }
        )
        return env

    def _evaluate(self, slot: Slot, job: Job) -> dict[str, Any] | None:
        try:
            workdir = self.workspace.prepare(job)
        except (SandboxError, OSError) as exc:
            return _report(job, Result("failure", None, "pilot_error", str(exc)), None, "")
        log_path = workdir / LOG_NAME
        try:
            payload = self.config.runtime.start(
                job["evaluation_exec"], workdir, self._environment(slot, job, workdir), log_path
            )
        except RuntimeStartError as exc:
            return _report(job, Result("failure", None, "pilot_error", str(exc)), None, "")
        exit_code, stop_reason = self._supervise(job, payload)
        tail = log_tail(log_path)
        if stop_reason == "lease_lost":
            self._clean(workdir)
            return None
        if stop_reason is not None:
            result = Result("failure", None, "killed", stop_reason)
        else:
            result = read_result(workdir / job["evaluation_output"], exit_code)
        report = _report(job, result, exit_code, tail)
        self._clean(workdir)
        return report

    def _supervise(self, job: Job, payload: Any) -> tuple[int, str | None]:
        """Wait for the payload, heartbeating; returns (exit code, why it was stopped or None)."""
        interval = max(0.1, float(job["heartbeat_interval_s"]))
        next_beat = time.monotonic() + interval
        while True:
            code = payload.wait(min(0.2, max(0.0, next_beat - time.monotonic())))
            if code is not None:
                return code, None
            if self.killing.is_set():
                return payload.terminate(), "stopped by the pilot's operator (second signal)"
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            try:
                answer = self.api.heartbeat(job["attempt_id"], job["lease_token"])
            except Conflict as exc:
                log(f"point {job['point_id']}: lease lost ({exc.message}); stopping the payload")
                payload.terminate()
                return -1, "lease_lost"
            except (ServerUnreachable, ApiError) as exc:
                log(f"point {job['point_id']}: heartbeat failed ({exc}); the payload keeps running")
                continue
            if answer["action"] == "kill":
                log(f"point {job['point_id']}: the task was killed; stopping the payload")
                return payload.terminate(), "the task was killed"

    def _clean(self, workdir: Path) -> None:
        if self.config.clean_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


class _Backoff:
    """Ask again soon after work dried up (new points usually follow a completion within
    milliseconds), then less and less often, up to the server's idle hint."""

    def __init__(self, first_s: float, max_s: float):
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self._delay = first_s

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._delay = self.first_s


def _report(job: Job, result: Result, exit_code: int | None, tail: str) -> dict[str, Any]:
    return {
        "lease_token": job["lease_token"],
        "outcome": result.outcome,
        "loss": result.loss,
        "failure_class": result.failure_class,
        "exit_code": exit_code,
        "message": result.message,
        "log_tail": tail,
    }


def _short(params: Any, limit: int = 160) -> str:
    import json

    text = json.dumps(params)
    return text if len(text) <= limit else text[: limit - 3] + "..."
