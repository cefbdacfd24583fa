"""One attempt on one slot: prepare the working directory, run the payload, watch it, judge it.

The outcome is the report the pilot sends to ``complete`` (docs/api.md), or None when the
lease was lost (409): then the result must not be reported.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

from client.http import ApiClient, Job
from client.pilot.lease import LeaseKeeper
from client.pilot.logs import Logger
from client.pilot.output import Result, read_result
from client.pilot.placeholders import fill_leftovers
from client.pilot.runtime import Payload, Runtime, RuntimeStartError, log_tail
from client.pilot.slots import Slot
from client.pilot.workdir import SandboxError, Workspace

LOG_NAME = "payload.log"
# Numeric libraries start one thread per core in every slot otherwise, and concurrent slots
# then slow each other down many times over.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# The pilot's own credentials never reach a payload.
PRIVATE_VARIABLES = ("HPOSTEER_TOKEN", "HPOSTEER_TOKEN_FILE")


class Report(TypedDict):
    lease_token: str
    outcome: str  # success | failure
    loss: float | None
    failure_class: str | None
    exit_code: int | None
    message: str
    log_tail: str
    duration_s: float


def payload_environment(
    slot: Slot, job: Job, base: Mapping[str, str], threads_per_slot: int | None = None
) -> dict[str, str]:
    """The payload's environment: the pilot's (minus its token), the slot's GPUs, the job's ids."""
    env = {k: v for k, v in base.items() if k not in PRIVATE_VARIABLES}
    if threads_per_slot is not None:
        for name in THREAD_VARIABLES:
            env.setdefault(name, str(threads_per_slot))
    env.update(
        {
            "CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices,
            "HPOSTEER_SLOT": slot.name,
            "HPOSTEER_TASK_ID": str(job["task_id"]),
            "HPOSTEER_POINT_ID": str(job["point_id"]),
            "HPOSTEER_ATTEMPT": str(job["attempt_number"]),
            "HPOSTEER_SEGMENT_NAME": job["segment"]["name"],
        }
    )
    return env


class Evaluator:
    def __init__(
        self,
        api: ApiClient,
        workspace: Workspace,
        runtime: Runtime,
        logger: Logger,
        stopping: threading.Event,
        *,
        clean_workdirs: bool = False,
        threads_per_slot: int | None = None,
        base_env: Mapping[str, str] | None = None,
    ):
        self.api = api
        self.workspace = workspace
        self.runtime = runtime
        self.log = logger
        self.stopping = stopping  # set by the second signal: stop payloads, report them killed
        self.clean_workdirs = clean_workdirs
        self.threads_per_slot = threads_per_slot
        self.base_env = base_env

    def evaluate(self, slot: Slot, job: Job) -> Report | None:
        started = time.monotonic()
        label = f"slot {slot.name}: task {job['task_id']} point {job['point_id']}"
        with LeaseKeeper(self.api, job, self.log, label) as lease:
            result, exit_code, tail = self._attempt(slot, job, lease, label)
        if result is None:
            return None
        return {
            "lease_token": job["lease_token"],
            "outcome": result.outcome,
            "loss": result.loss,
            "failure_class": result.failure_class,
            "exit_code": exit_code,
            "message": result.message,
            "log_tail": tail,
            "duration_s": round(time.monotonic() - started, 3),
        }

    def _attempt(self, slot: Slot, job: Job, lease: LeaseKeeper, label: str) -> tuple[Result | None, int | None, str]:
        if self.stopping.is_set():
            return Result("failure", None, "killed", "the pilot was stopping; the evaluation did not start"), None, ""
        workdir: Path | None = None
        try:
            workdir = self.workspace.fresh_directory(job)
            self.log.debug(f"{label}: working directory {workdir}")
            self.workspace.prepare(job, workdir)
            return self._run(slot, job, lease, label, workdir)
        except (SandboxError, OSError) as exc:
            return Result("failure", None, "pilot_error", str(exc)), None, ""
        finally:
            if self.clean_workdirs and workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _run(
        self, slot: Slot, job: Job, lease: LeaseKeeper, label: str, workdir: Path
    ) -> tuple[Result | None, int | None, str]:
        if lease.lost.is_set():
            return None, None, ""
        if lease.kill.is_set() or self.stopping.is_set():
            why = "the task was killed" if lease.kill.is_set() else "the pilot was stopping"
            return Result("failure", None, "killed", f"{why}; the evaluation did not start"), None, ""
        command = fill_leftovers(job["evaluation_exec"], job)
        if command != job["evaluation_exec"]:
            self.log.info(f"{label}: the server left placeholders unfilled; filled locally: {command}")
        self.log.debug(f"{label}: running {command!r} with CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices!r}")
        log_path = workdir / LOG_NAME
        env = payload_environment(
            slot, job, os.environ if self.base_env is None else self.base_env, self.threads_per_slot
        )
        try:
            payload = self.runtime.start(command, workdir, env, log_path)
        except RuntimeStartError as exc:
            return Result("failure", None, "pilot_error", str(exc)), None, log_tail(log_path)
        exit_code, stopped = self._supervise(payload, lease, label)
        tail = log_tail(log_path)
        if lease.lost.is_set() and stopped is not None:
            return None, exit_code, tail
        if stopped is not None:
            return Result("failure", None, "killed", stopped), exit_code, tail
        return read_result(workdir / job["evaluation_output"], exit_code), exit_code, tail

    def _supervise(self, payload: Payload, lease: LeaseKeeper, label: str) -> tuple[int, str | None]:
        """Wait for the payload; returns (exit code, why it was stopped, or None if it ended by itself)."""
        while True:
            code = payload.wait(0.1)
            if code is not None:
                return code, None
            if lease.lost.is_set():
                self.log.info(f"{label}: stopping the payload (lease lost)")
                return payload.terminate(), "lease lost"
            if lease.kill.is_set():
                self.log.info(f"{label}: the task was killed; stopping the payload")
                return payload.terminate(), "the task was killed (the heartbeat answered kill)"
            if self.stopping.is_set():
                self.log.info(f"{label}: stopping the payload (second signal)")
                return payload.terminate(), "stopped by the pilot's operator (second signal while draining)"


def short_params(params: object, limit: int = 160) -> str:
    text = json.dumps(params)
    return text if len(text) <= limit else text[: limit - 3] + "..."
