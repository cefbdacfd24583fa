"""Submitting a task: validate everything the user gave, then store the task and its segments.

Every problem is reported at once, each naming where it is (field, or search-space
parameter and key) and what is allowed; nothing is stored unless all of it is valid.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection

from hposteer.core.submission_checks import (
    PLAIN_NAME,
    Issues,
    SegmentPlan,
    plan_segments,
    requirements_of,
    space_warnings,
)
from hposteer.service.core.job_settings import (
    DEFAULT_CHECKPOINT_INTERVAL_MIN,
    DEFAULT_REPORT_FILE,
    CheckpointSettings,
    JobSettings,
)
from hposteer.service.core.optimizer_spec import (
    OptimizerSpec,
    OptimizerSpecError,
    is_hpogrid_line,
    parse_hpogrid_line,
    parse_optimizer_name,
)
from hposteer.service.core.steering_exec import CONTAINER_OPTIMIZER, SteeringCommand, SteeringExecError, parse_steering
from hposteer.service.operations import datasets as dataset_ops
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import TaskView, task_views
from hposteer.service.steering.optimizers import registry
from hposteer.service.store import tasks as task_store
from hposteer.service.store.blobs import rows as blob_rows
from hposteer.service.store.records import TaskRecord

_FILE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,254}$")


@dataclass
class TaskRequest:
    """What a user submits (docs/api.md, TaskSubmission)."""

    name: str
    evaluation_exec: str
    search_space: Any = None
    segments: list[dict[str, Any]] | None = None
    evaluation_container: str | None = None
    evaluation_input: str = "input.json"
    evaluation_output: str = "output.json"
    optimizer: str | None = None
    steering_exec: str | None = None
    steering_container: str | None = None
    max_points: int = 10
    n_points_per_iteration: int = 2
    min_unevaluated_points: int | None = None
    n_parallel_evaluation: int = 1
    max_evaluation_jobs: int | None = None
    max_attempts: int = 3
    site: str | None = None
    architecture: str = ""
    seed: int | None = None
    priority: int = 0
    failures_as_losses: bool = False
    max_points_per_job: int | None = None
    evaluation_timeout_s: float | None = None
    checkpoint_to_save: list[str] | None = None
    checkpoint_to_load: str | None = None
    checkpoint_interval_s: float | None = None
    evaluation_meta: str | None = None
    evaluation_metrics: str | None = None
    evaluation_training_data: str = "input_ds.json"
    training_ds: str | None = None
    report_file: str = DEFAULT_REPORT_FILE
    sandbox_sha256: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def choose_optimizer(request: TaskRequest, issues: Issues) -> OptimizerSpec | SteeringCommand | None:
    """``--optimizer`` wins; else a bare hpogrid line (builtin, in-process); else a steering container
    (``--steeringContainer IMG`` + ``--steeringExec CMD``, or iDDS's docker form); else the default (TPE)."""
    try:
        if request.optimizer:
            return parse_optimizer_name(request.optimizer)
        steering_exec = request.steering_exec if request.steering_exec and request.steering_exec.strip() else None
        if steering_exec is not None and is_hpogrid_line(steering_exec):
            return parse_hpogrid_line(steering_exec)
        if steering_exec is not None or (request.steering_container and request.steering_container.strip()):
            return parse_steering(steering_exec, request.steering_container)
        return parse_optimizer_name(None)
    except OptimizerSpecError as exc:
        issues.field("optimizer" if request.optimizer else "steering_exec", str(exc))
        return None
    except SteeringExecError as exc:
        issues.field(exc.field, str(exc))
        return None


def _validate_fields(request: TaskRequest, issues: Issues) -> None:
    if not request.name.strip():
        issues.field("name", "the task needs a name (phpo --outDS)")
    if not request.evaluation_exec.strip():
        issues.field("evaluation_exec", "the evaluation command is empty (phpo --evaluationExec)")
    for name in ("evaluation_input", "evaluation_output"):
        value = getattr(request, name)
        if not _FILE.match(value) or value in (".", ".."):
            issues.field(name, f"{value!r} must be a plain file name in the working directory (no '/')")
    if request.site is not None:
        for site in request.site.split(","):
            if not PLAIN_NAME.match(site.strip()):
                issues.field("site", f"invalid site name {site!r}: letters, digits, '.', '_' and '-' only")
    if request.min_unevaluated_points is not None and request.min_unevaluated_points < 0:
        issues.field("min_unevaluated_points", "must be 0 or more")
    _validate_job_files(request, issues)


def _relative_path(value: str) -> str | None:
    """Why ``value`` is not a path inside the working directory, or None when it is one."""
    text = value.strip()
    if not text or text in (".", "./"):
        return "is empty"
    if text.startswith("/") or text.startswith("~"):
        return "must be relative to the working directory, not absolute"
    if any(part == ".." for part in text.split("/")):
        return "must not leave the working directory ('..')"
    if any(ord(c) < 32 for c in text) or len(text) > 1024:
        return "holds control characters or is over 1024 characters"
    return None


def _validate_job_files(request: TaskRequest, issues: Issues) -> None:
    for i, path in enumerate(request.checkpoint_to_save or []):
        problem = _relative_path(path)
        if problem:
            issues.field(f"checkpoint_to_save[{i}]", f"{path!r} {problem}")
    if request.checkpoint_to_save is not None and not request.checkpoint_to_save:
        issues.field("checkpoint_to_save", "names no file or directory")
    for name in ("checkpoint_to_load", "evaluation_meta", "evaluation_metrics", "evaluation_training_data"):
        value = getattr(request, name)
        if value is not None and (not _FILE.match(value) or value in (".", "..")):
            issues.field(name, f"{value!r} must be a plain file name in the working directory (no '/')")
    report_problem = report_file_problem(request.report_file)
    if report_problem is not None:
        issues.field("report_file", report_problem)
    if request.checkpoint_to_load is not None and not request.checkpoint_to_save:
        issues.field("checkpoint_to_load", "only means something with checkpoint_to_save (--checkPointToSave)")
    if request.checkpoint_interval_s is not None and not request.checkpoint_to_save:
        issues.field("checkpoint_interval_s", "only means something with checkpoint_to_save (--checkPointToSave)")


def report_file_problem(name: str) -> str | None:
    """What is wrong with a --reportFile name, or None: a plain file name inside the working directory."""
    if not 1 <= len(name) <= 200:
        return f"must be a file name of 1 to 200 characters, got {len(name)} (default {DEFAULT_REPORT_FILE})"
    if "/" in name or "\\" in name or ".." in name:
        return f"{name!r} must be a plain file name in the working directory: no '/', '\\' or '..'"
    if name.strip() != name or any(not c.isprintable() for c in name):
        return f"{name!r} must not start or end with spaces nor hold control characters"
    return None


def job_settings_of(request: TaskRequest) -> JobSettings:
    checkpoint = None
    if request.checkpoint_to_save:
        checkpoint = CheckpointSettings(
            save=tuple(p.strip().rstrip("/") or p.strip() for p in request.checkpoint_to_save),
            load_as=request.checkpoint_to_load,
            interval_s=request.checkpoint_interval_s or DEFAULT_CHECKPOINT_INTERVAL_MIN * 60,
        )
    return JobSettings(
        evaluation_timeout_s=request.evaluation_timeout_s,
        checkpoint=checkpoint,
        meta_file=request.evaluation_meta,
        metrics_file=request.evaluation_metrics,
        training_data_file=request.evaluation_training_data,
        training_dataset=request.training_ds,
        report_file=request.report_file,
    )


def _sites(site: str | None) -> str | None:
    if site is None or not site.strip():
        return None
    return "," + ",".join(s.strip() for s in site.split(",")) + ","


def submit_task(services: Services, principal: Principal, request: TaskRequest, *, dry_run: bool) -> TaskView:
    issues = Issues()
    _validate_fields(request, issues)
    requirements = requirements_of(request.architecture, issues)
    spec = choose_optimizer(request, issues)
    plans = plan_segments(request.search_space, request.segments, issues)
    if isinstance(spec, OptimizerSpec):  # a steering container checks its points at every run
        for plan in plans:
            for issue in registry.validate(spec, plan.space):
                suffix = f" (segment {plan.name!r})" if plan.name else ""
                issues.space(issue.parameter, issue.key, issue.message + suffix)
    issues.items += dataset_ops.check_training_data(services, principal.owner, request.training_ds, request.segments)
    if issues.items:
        raise Invalid("the task is not valid; nothing was submitted", issues.items, code="invalid_task")
    assert spec is not None
    name = request.name if request.name.endswith("/") else request.name + "/"
    values: dict[str, Any] = {
        "owner": principal.owner,
        "name": name,
        "optimizer": spec.name if isinstance(spec, OptimizerSpec) else CONTAINER_OPTIMIZER,
        "optimizer_mode": spec.mode if isinstance(spec, OptimizerSpec) else "min",
        "seed": request.seed if request.seed is not None else secrets.randbelow(2**31),
        "max_points": request.max_points,
        "n_points_per_iteration": request.n_points_per_iteration,
        "min_unevaluated_points": request.min_unevaluated_points or 0,
        "n_parallel_evaluation": request.n_parallel_evaluation,
        "max_evaluation_jobs": request.max_evaluation_jobs or 2 * request.max_points,
        "max_attempts": request.max_attempts,
        "failure_loss": services.settings.failure_loss,
        "evaluation_exec": request.evaluation_exec,
        "evaluation_container": request.evaluation_container,
        "evaluation_input": request.evaluation_input,
        "evaluation_output": request.evaluation_output,
        "sites": _sites(request.site),
        "architecture": request.architecture,
        "priority": request.priority,
        "sandbox_sha256": request.sandbox_sha256,
        "options": {
            **request.options,
            "steeringExec": request.steering_exec,
            "steeringContainer": request.steering_container,
        },
        "next_point_number": 1,
        "failures_as_losses": request.failures_as_losses,
        "requirements": requirements,
        "job_settings": job_settings_of(request).to_json(),
        "max_points_per_job": request.max_points_per_job,
    }
    try:
        with services.db.write() as conn:
            _check_sandbox(conn, request.sandbox_sha256)
            task_id = task_store.insert_task(conn, values)
            dataset_ops.freeze_used(conn, principal.owner, request.training_ds, request.segments)
            segment_ids = _insert_segments(conn, task_id, plans, segmented=request.segments is not None)
            view = task_views(conn, [_require(task_store.get_task(conn, task_id, None))], detail=True)[0]
            if dry_run:
                raise _DryRun(view)
    except _DryRun as dry:
        return replace(dry.view, warnings=space_warnings(plans))
    services.steering.notify(segment_ids)
    return replace(view, warnings=space_warnings(plans))


class _DryRun(Exception):
    """Raised inside the transaction of a dry run so that it rolls back."""

    def __init__(self, view: TaskView):
        super().__init__("dry run")
        self.view = view


def _check_sandbox(conn: Connection, sha256: str | None) -> None:
    if sha256 is not None and blob_rows.blob_size(conn, sha256) is None:
        raise Invalid(
            f"sandbox {sha256} was never uploaded (POST /api/v1/sandboxes first)",
            [{"field": "sandbox_sha256", "message": "unknown sandbox"}],
            code="invalid_task",
        )


def _require(task: TaskRecord | None) -> TaskRecord:
    assert task is not None
    return task


def _insert_segments(conn: Connection, task_id: int, plans: list[SegmentPlan], *, segmented: bool) -> list[int]:
    return [
        task_store.insert_segment(
            conn,
            task_id=task_id,
            idx=plan.idx,
            name=plan.name,
            search_space=plan.raw,
            segmented=segmented,
            files=plan.files,
            datasets=plan.datasets,
        )
        for plan in plans
    ]
