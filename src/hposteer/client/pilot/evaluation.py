"""One attempt on one slot: prepare the working directory, run the payload, watch it, judge it.

The outcome is the report the pilot sends to ``complete`` (docs/api.md), or None when the
lease was lost (409): then the result must not be reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

from hposteer.client.http import ApiClient
from hposteer.client.payload import BUDGET_FILE, STOP_FILE
from hposteer.client.pilot.checkpoints import CheckpointError, CheckpointSpec, CheckpointUploader, restore
from hposteer.client.pilot.lease import LeaseKeeper
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.metrics import meta_spec, metrics_spec, read_meta, send_metrics
from hposteer.client.pilot.output import Result, read_result
from hposteer.client.pilot.packing import Signature
from hposteer.client.pilot.placeholders import fill_leftovers, unfilled
from hposteer.client.pilot.reports import ReportTailer
from hposteer.client.pilot.runtimes.base import Payload, Runtime, RuntimeStartError, log_tail
from hposteer.client.pilot.slots import Slot
from hposteer.client.pilot.workdir import SandboxError, Workspace, report_file_name, write_budget
from hposteer.client.wire import CompletionReport, Job

LOG_NAME = "payload.log"
TIMEOUT_PREFIX = "ran longer than the evaluation timeout of"
# Numeric libraries start one thread per core in every slot otherwise, and concurrent slots
# then slow each other down many times over.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# The pilot's own credentials never reach a payload.
PRIVATE_VARIABLES = ("HPOSTEER_TOKEN", "HPOSTEER_TOKEN_FILE")
REPORT_FLUSH_S = 5.0  # how long the last intermediate reports may take to send once the payload ended


class Report(TypedDict):
    lease_token: str
    outcome: str  # success | failure
    loss: float | None
    failure_class: str | None
    exit_code: int | None
    message: str
    log_tail: str
    duration_s: float
    meta: NotRequired[dict[str, Any]]  # the --evaluationMeta object, when the payload wrote a valid one


def completion_report(report: Report) -> CompletionReport:
    """The report as the body of POST /pilot/attempts/{id}/complete."""
    body: CompletionReport = {
        "lease_token": report["lease_token"],
        "outcome": cast(Literal["success", "failure"], report["outcome"]),
        "loss": report["loss"],
        "failure_class": report["failure_class"],
        "exit_code": report["exit_code"],
        "message": report["message"],
        "log_tail": report["log_tail"],
        "duration_s": report["duration_s"],
    }
    if "meta" in report:
        body["meta"] = report["meta"]
    return body


@dataclasses.dataclass
class _Outcome:
    result: Result | None  # None: the lease was lost, report nothing
    exit_code: int | None = None
    tail: str = ""
    meta: dict[str, Any] | None = None


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
            # docs/multi-fidelity.md; relative to the working directory, the payload's cwd in every runtime
            "HPOSTEER_REPORT_FILE": report_file_name(job),
            "HPOSTEER_STOP_FILE": STOP_FILE,
            "HPOSTEER_BUDGET_FILE": BUDGET_FILE,
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
            outcome = self._attempt(slot, job, lease, label)
        result = outcome.result
        if result is None:
            return None
        report: Report = {
            "lease_token": job["lease_token"],
            "outcome": result.outcome,
            "loss": result.loss,
            "failure_class": result.failure_class,
            "exit_code": outcome.exit_code,
            "message": result.message,
            "log_tail": outcome.tail,
            "duration_s": round(time.monotonic() - started, 3),
        }
        if outcome.meta is not None:
            report["meta"] = outcome.meta
        return report

    def _attempt(self, slot: Slot, job: Job, lease: LeaseKeeper, label: str) -> _Outcome:
        if self.stopping.is_set():
            return _Outcome(Result("failure", None, "killed", "the pilot was stopping; the evaluation did not start"))
        workdir: Path | None = None
        try:
            workdir = self.workspace.fresh_directory(job)
            self.log.debug(f"{label}: working directory {workdir}")
            self.workspace.prepare(job, workdir)
            checkpoint = CheckpointSpec.from_job(job)
            packed = restore(self.api, job, checkpoint, workdir, self.log) if checkpoint else None
            return self._run(slot, job, lease, label, workdir, packed)
        except (SandboxError, CheckpointError, OSError) as exc:
            return _Outcome(Result("failure", None, "pilot_error", str(exc)))
        finally:
            if self.clean_workdirs and workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _run(
        self, slot: Slot, job: Job, lease: LeaseKeeper, label: str, workdir: Path, packed: Signature | None
    ) -> _Outcome:
        if lease.lost.is_set():
            return _Outcome(None)
        if lease.kill.is_set() or self.stopping.is_set():
            why = "the task was killed" if lease.kill.is_set() else "the pilot was stopping"
            return _Outcome(Result("failure", None, "killed", f"{why}; the evaluation did not start"))
        command = fill_leftovers(job["evaluation_exec"], job)
        if unfilled(job["evaluation_exec"]):
            self.log.info(f"{label}: the server left placeholders unfilled; filled locally: {command}")
        self.log.debug(f"{label}: running {command!r} with CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices!r}")
        log_path = workdir / LOG_NAME
        write_budget(job, workdir)
        env = payload_environment(
            slot, job, os.environ if self.base_env is None else self.base_env, self.threads_per_slot
        )
        checkpoint = CheckpointSpec.from_job(job)
        uploader = (
            CheckpointUploader(self.api, job, checkpoint, workdir, self.log, label, packed=packed)
            if checkpoint
            else None
        )
        try:
            payload = self.runtime.start(
                command,
                workdir,
                env,
                log_path,
                image=job.get("evaluation_container"),
                gpus=slot.gpus,
                network=False,  # the task asks AND the site allows (--allow-network); tasks cannot ask yet
                attempt_id=job["attempt_id"],
            )
        except RuntimeStartError as exc:
            return _Outcome(Result("failure", None, "pilot_error", str(exc)), None, log_tail(log_path))
        if uploader is not None:
            uploader.start()
        lease.forward(ReportTailer(workdir / report_file_name(job), self.log, label, log_path))
        try:
            exit_code, stopped = self._supervise(payload, lease, label, job.get("evaluation_timeout_s"))
        finally:
            _after_payload(lease, uploader)
        tail = log_tail(log_path)
        if lease.lost.is_set() and stopped is not None:
            return _Outcome(None, exit_code, tail)
        if stopped is not None:
            failure_class = "timeout" if stopped.startswith(TIMEOUT_PREFIX) else "killed"
            result = Result("failure", None, failure_class, stopped)
        else:
            result = read_result(workdir / job["evaluation_output"], exit_code)
        if lease.lost.is_set():
            return _Outcome(result, exit_code, tail)
        notes = list(uploader.notes) if uploader is not None else []
        meta = self._collect(job, workdir, notes)
        if notes:
            joined = "; ".join(notes)
            result = dataclasses.replace(result, message=f"{result.message}; {joined}" if result.message else joined)
        return _Outcome(result, exit_code, tail, meta)

    def _collect(self, job: Job, workdir: Path, notes: list[str]) -> dict[str, Any] | None:
        """Read the metadata and send the metrics (the payload has ended); problems become notes."""
        meta = None
        spec = meta_spec(job)
        if spec is not None:
            meta, note = read_meta(workdir, spec)
            if note:
                notes.append(note)
        metrics = metrics_spec(job)
        if metrics is not None:
            sent, note = send_metrics(self.api, job, workdir, metrics)
            if note:
                notes.append(note)
            elif sent:
                self.log.debug(f"task {job['task_id']} point {job['point_id']}: metrics uploaded")
        return meta

    def _supervise(
        self, payload: Payload, lease: LeaseKeeper, label: str, timeout_s: float | None = None
    ) -> tuple[int, str | None]:
        """Wait for the payload; returns (exit code, why it was stopped, or None if it ended by itself)."""
        deadline = None if not timeout_s else time.monotonic() + float(timeout_s)
        while True:
            code = payload.wait(0.1)
            if code is not None:
                return code, None
            if deadline is not None and time.monotonic() >= deadline:
                self.log.info(f"{label}: stopping the payload (evaluation timeout of {timeout_s:g} s)")
                return payload.terminate(), f"{TIMEOUT_PREFIX} {timeout_s:g} s (--evaluationTimeout); stopped"
            if lease.lost.is_set():
                self.log.info(f"{label}: stopping the payload (lease lost)")
                return payload.terminate(), "lease lost"
            if lease.kill.is_set():
                self.log.info(f"{label}: the task was killed; stopping the payload")
                return payload.terminate(), "the task was killed (the heartbeat answered kill)"
            if self.stopping.is_set():
                self.log.info(f"{label}: stopping the payload (second signal)")
                return payload.terminate(), "stopped by the pilot's operator (second signal while draining)"


def _after_payload(lease: LeaseKeeper, uploader: CheckpointUploader | None) -> None:
    """The payload has ended: the last checkpoint check and the last reports, unless the lease is gone."""
    if uploader is not None:
        uploader.finish(final=not lease.lost.is_set())
    if not lease.lost.is_set():
        lease.flush(REPORT_FLUSH_S)  # every report reaches the service before the completion


def short_params(params: object, limit: int = 160) -> str:
    text = json.dumps(params)
    return text if len(text) <= limit else text[: limit - 3] + "..."
