"""The pilot agent: registers once, then one thread per slot acquires a job, runs it, reports it.

Signals: the first SIGTERM/SIGINT drains (no new work; running evaluations finish and are
reported), a second one stops the payloads (reported as ``killed``). With
``exit_when_idle_s`` the pilot also exits once no slot has had work for that long.

"No work" means the server answered that it has none. While the server cannot be reached the pilot
is disconnected, not idle: a service restart or a rolling upgrade must not end every pilot that was
started with a short idle limit. A disconnected pilot gives up (exit 1) only after
``max(exit_when_idle_s, OUTAGE_GRACE_S)`` without an answer.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from hposteer.client import __version__
from hposteer.client.http import (
    ApiClient,
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    ServerUnreachable,
    Unauthorized,
    new_request_key,
)
from hposteer.client.pilot.capabilities import HostCapabilities, detect_host
from hposteer.client.pilot.evaluation import Evaluator, Report, completion_report, short_params
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.runtimes.base import Runtime
from hposteer.client.pilot.slots import Slot
from hposteer.client.pilot.workdir import Workspace
from hposteer.client.wire import Job, PilotRegistration

REPEATED_SIGNAL_S = 0.5  # a second signal sooner than this is the first one delivered twice (Pilot.signal)
OUTAGE_GRACE_S = 60.0  # the least a pilot with --exit-when-idle waits for an unreachable server


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
    capabilities: HostCapabilities | None = None  # what the host offers (None: detected at registration)


class _Backoff:
    """Ask again soon after work dried up (new points usually follow a completion within
    milliseconds), then less and less often, up to the server's ``retry_after_s``."""

    def __init__(self, first_s: float = 0.05):
        self.first_s = first_s
        self._delay = first_s

    def next(self, cap_s: float) -> float:
        delay = min(self._delay, max(cap_s, 0.0))
        self._delay = min(self._delay * 2, max(cap_s, self.first_s))
        return delay

    def reset(self) -> None:
        self._delay = self.first_s


class Pilot:
    def __init__(self, api: ApiClient, config: PilotConfig, logger: Logger | None = None):
        self.api = api
        self.config = config
        self.log = logger or Logger(config.verbose)
        self.workspace = Workspace(config.workdir, api, self.log)
        self.draining = threading.Event()
        self.killing = threading.Event()
        self.evaluator = Evaluator(
            api,
            self.workspace,
            config.runtime,
            self.log,
            self.killing,
            clean_workdirs=config.clean_workdirs,
            threads_per_slot=config.threads_per_slot,
        )
        self.pilot_id = 0
        self.retry_after_s = 2.0
        self.evaluated = 0
        self.exit_code = 0
        self._lock = threading.Lock()
        self._register_lock = threading.Lock()
        self._busy: set[str] = set()
        self._idle_slots: set[str] = set()
        self._last_work = time.monotonic()
        self._unreachable_since: float | None = None  # when the server last stopped answering
        self._signals = 0
        self._first_signal_at = float("-inf")
        self._acquire_keys: dict[str, str] = {}  # slot -> idempotency key of an unanswered acquire

    # -- lifecycle ---------------------------------------------------------------------------

    def registration(self) -> PilotRegistration:
        """What the pilot declares about itself (POST /pilot/register): slots with their GPUs, CPU, network."""
        if self.config.capabilities is None:
            self.config.capabilities = detect_host(self.config.slots)
        declared = self.config.capabilities.registration(self.config.slots)
        return {
            "name": self.config.name,
            "site": self.config.site,
            "hostname": socket.gethostname(),
            "slots": declared["slots"],
            "capabilities": declared["capabilities"],
            "runtimes": [self.config.runtime.name],
            "version": __version__,
        }

    def register(self) -> bool:
        """Register (retrying while the server cannot be reached); False when the pilot must stop."""
        started = time.monotonic()
        delay = 1.0
        while True:
            try:
                answer = self.api.register_pilot(self.registration())
                break
            except ServerUnreachable as exc:
                limit = self._outage_limit_s()
                if limit is not None and time.monotonic() - started >= limit:
                    self.log.info(f"error: {exc} Giving up after {limit:g} s without an answer (--exit-when-idle)")
                    self.exit_code = 1
                    return False
                self.log.info(f"{exc} Retrying in {delay:g} s")
                if self.draining.wait(delay):
                    return False
                delay = min(delay * 2, 60.0)
            except ApiError as exc:
                self.log.info(f"error: the server refused the registration: {exc.describe()}")
                self.exit_code = 1
                return False
        self.pilot_id = answer["pilot_id"]
        self.retry_after_s = float(answer["idle_poll_s"])
        slots = ", ".join(
            f"{s.name}" + (f" (GPU {s.cuda_visible_devices})" if s.gpus else " (CPU)") for s in self.config.slots
        )
        self.log.info(
            f"registered as pilot {self.pilot_id} ({self.config.name}) at site {self.config.site} with slots {slots}, "
            f"runtime {self.config.runtime.name}; working directories under {self.workspace.root}"
        )
        return True

    def run(self) -> int:
        if not self.register():
            return self.exit_code
        if not self.config.runtime.isolated:
            self.log.info(
                f"WARNING: runtime {self.config.runtime.name!r} runs payloads WITHOUT ISOLATION, as user "
                f"{_user()} on this machine: use it only for trusted payloads"
            )
        self._last_work = time.monotonic()
        threads = [
            threading.Thread(target=self._guarded_slot_loop, args=(slot,), name=f"slot-{slot.name}", daemon=True)
            for slot in self.config.slots
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)  # short joins: the main thread stays free for signal handlers
        self.log.info(f"stopped after {self.evaluated} evaluation(s)")
        return self.exit_code

    def signal(self) -> None:
        """Called on SIGTERM/SIGINT: drain first, stop the payloads on the second.

        A second signal within ``REPEATED_SIGNAL_S`` of the first is the same request delivered twice:
        a batch system signalling the whole job (``scancel --full``) reaches the pilot directly and
        through the job script's trap at once, and that must not kill the running evaluations.
        """
        now = time.monotonic()
        if self._signals == 1 and now - self._first_signal_at < REPEATED_SIGNAL_S:
            self.log.info(f"signal repeated within {REPEATED_SIGNAL_S} s: taken as the same request, still draining")
            return
        self._signals += 1
        if self._signals == 1:
            self._first_signal_at = now
            with self._lock:
                running = len(self._busy)
            self.log.info(
                f"draining: no new work; waiting for {running} running evaluation(s) to finish and report "
                "(signal again to stop them)"
            )
            self.draining.set()
        elif self._signals == 2:
            self.log.info("second signal: stopping the running evaluations (they are reported as killed)")
            self.killing.set()
            self.draining.set()
        else:
            self.log.info("already stopping")

    # -- slots -------------------------------------------------------------------------------

    def _outage_limit_s(self) -> float | None:
        """How long the pilot waits for an unreachable server before it gives up (None: forever)."""
        limit = self.config.exit_when_idle_s
        return None if limit is None else max(limit, OUTAGE_GRACE_S)

    def _idle_too_long(self) -> bool:
        limit = self.config.exit_when_idle_s
        if limit is None:
            return False
        with self._lock:
            if self._unreachable_since is not None:
                return False  # disconnected, not idle: _unreachable_too_long decides
            return not self._busy and time.monotonic() - self._last_work >= limit

    def _unreachable_too_long(self) -> bool:
        limit = self._outage_limit_s()
        with self._lock:
            since = self._unreachable_since
        return limit is not None and since is not None and time.monotonic() - since >= limit

    def _reached(self, reachable: bool) -> None:
        """Track outages; the time the server could not be reached does not count as idle."""
        now = time.monotonic()
        with self._lock:
            if reachable:
                if self._unreachable_since is not None:
                    self._unreachable_since = None
                    self._last_work = max(self._last_work, now)
            elif self._unreachable_since is None:
                self._unreachable_since = now

    def _guarded_slot_loop(self, slot: Slot) -> None:
        """A slot survives a bug in one job's handling: it logs the error and goes on taking work
        (the job's lease then runs out and the point is retried) instead of dying silently."""
        while not self.draining.is_set():
            try:
                self._slot_loop(slot)
                return
            except Exception:
                self.log.info(f"slot {slot.name}: unexpected error; the slot goes on:\n{traceback.format_exc()}")
                self.draining.wait(1.0)

    def _slot_loop(self, slot: Slot) -> None:
        job: Job | None = None
        asked = False  # the last completion already asked for the next job (and got none)
        backoff = _Backoff()
        # A job handed back with a completion is run even when draining: it is claimed already,
        # and dropping it would cost the point one of its attempts for nothing.
        while job is not None or not self.draining.is_set():
            if job is None:
                if not asked:
                    job = self._acquire(slot)
                asked = False
                if job is None:
                    if self._unreachable_too_long():
                        if not self.draining.is_set():
                            self.log.info(
                                f"error: no answer from the server for {self._outage_limit_s():g} s; giving up "
                                "(--exit-when-idle)"
                            )
                            self.exit_code = 1
                        self.draining.set()
                        break
                    if self._idle_too_long():
                        if not self.draining.is_set():
                            self.log.info(f"no work for {self.config.exit_when_idle_s:g} s; exiting")
                        self.draining.set()
                        break
                    self.draining.wait(backoff.next(self.retry_after_s))
                    continue
                backoff.reset()
            with self._lock:
                self._busy.add(slot.name)
            try:
                job, asked = self._run_job(slot, job)
            finally:
                with self._lock:
                    self._busy.discard(slot.name)
                    self._last_work = time.monotonic()

    def _acquire(self, slot: Slot) -> Job | None:
        pilot_id = self.pilot_id
        # One key until an answer arrives: if the server claimed a job but its answer was lost,
        # asking again with the same key gets that job rather than stranding it until its lease ends.
        key = self._acquire_keys.setdefault(slot.name, new_request_key())
        try:
            answer = self.api.acquire(pilot_id, slot.name, request_key=key)
        except ServerUnreachable as exc:
            self._reached(False)
            self.log.info(f"slot {slot.name}: {exc}")
            return None  # the key is kept for the next try
        except (Unauthorized, Forbidden) as exc:
            self._acquire_keys.pop(slot.name, None)
            self.log.info(f"error: the server refuses this pilot's token: {exc.message}; stopping")
            self.exit_code = 1
            self.draining.set()
            return None
        except NotFound as exc:
            self._acquire_keys.pop(slot.name, None)
            self.log.info(f"slot {slot.name}: {exc.message}")
            with self._register_lock:
                if self.pilot_id == pilot_id and not self.register():
                    self.draining.set()
            return None
        except ApiError as exc:
            self._reached(exc.status != 503)  # a service that stays unavailable is an outage too
            self._acquire_keys.pop(slot.name, None)
            self.log.info(f"slot {slot.name}: acquire failed: {exc.describe()}")
            return None
        self._reached(True)
        self._acquire_keys.pop(slot.name, None)
        self.retry_after_s = float(answer.get("retry_after_s", self.retry_after_s))
        job = answer["job"]
        if job is None and slot.name not in self._idle_slots:
            self._idle_slots.add(slot.name)  # said once per idle spell, not at every poll
            self.log.debug(f"slot {slot.name}: no work; asking again every {self.retry_after_s:g} s at most")
        return job

    def _run_job(self, slot: Slot, job: Job) -> tuple[Job | None, bool]:
        """Run one job and report it; returns the next job handed back with the completion
        (if any) and whether one was asked for."""
        self._idle_slots.discard(slot.name)
        label = f"slot {slot.name}: task {job['task_id']} point {job['point_id']}"
        self.log.info(f"{label}: acquired attempt {job['attempt_number']} {short_params(job['params'])}")
        started = time.monotonic()
        try:
            report = self.evaluator.evaluate(slot, job)
        except Exception as exc:  # a bug of the pilot's: report it now rather than let the lease run out
            self.log.info(f"{label}: unexpected error:\n{traceback.format_exc()}")
            report = {
                "lease_token": job["lease_token"],
                "outcome": "failure",
                "loss": None,
                "failure_class": "pilot_error",
                "exit_code": None,
                "message": f"the pilot failed while handling the evaluation: {type(exc).__name__}: {exc}",
                "log_tail": "",
                "duration_s": round(time.monotonic() - started, 3),
            }
        if report is None:
            self.log.info(f"{label}: lease lost; the result is dropped")
            return None, False
        if report["outcome"] == "success":
            self.log.info(f"{label}: finished, loss {report['loss']:.6g} ({report['duration_s']:.1f} s)")
        else:
            self.log.info(f"{label}: failed ({report['failure_class']}): {report['message']}")
        with self._lock:
            self.evaluated += 1
        return self._complete(job, report, label)

    def _complete(self, job: Job, report: Report, label: str) -> tuple[Job | None, bool]:
        acquire_next = not self.draining.is_set()
        deadline = time.monotonic() + max(float(job["lease_ttl_s"]), 10.0)
        key = new_request_key()  # the same for every repeat of this report (R4)
        while True:
            try:
                body = completion_report(report)
                answer = self.api.complete(job["attempt_id"], body, acquire_next=acquire_next, request_key=key)
                self.log.debug(f"{label}: reported; point {answer['point_state']}")
                return (answer.get("next_job"), True) if acquire_next else (None, False)
            except Conflict as exc:
                self.log.info(f"{label}: result not accepted (lease expired or taken over): {exc.message}")
            except ServerUnreachable as exc:
                if time.monotonic() < deadline and not self.killing.is_set():
                    self.log.info(f"{label}: cannot report yet ({exc.reason}); retrying")
                    time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
                    continue
                self.log.info(f"{label}: giving up reporting ({exc.reason}); the point will be retried")
            except ApiError as exc:
                self.log.info(f"{label}: the server refused the report: {exc.describe()}")
            return None, False


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
