"""`phpo`: submit an HPO task with panda-client's options (docs/phpo.md).

Same option names, --loadJson keys, types and defaults as PanDA's phpo (src/hposteer/client/phpo_options.py);
the JSON file overrides the command line and numeric strings become ints, as there
(src/hposteer/client/phpo_inputs.py). The server validates everything on submit. `--noSubmit` first
checks the search space, the segments and --architecture offline with the server's own code
(hposteer.core, src/hposteer/client/phpo_check.py; a problem is a usage error, exit code 2), then asks
the server, when one is reachable, to validate the rest (the optimiser, budgets) without storing anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hposteer.client import __version__
from hposteer.client.console import quiet_on_broken_pipe
from hposteer.client.http import ApiClient, ApiError, Forbidden, RetryPolicy, ServerUnreachable, Unauthorized
from hposteer.client.phpo_check import InvalidTask, check_task_offline
from hposteer.client.phpo_inputs import (
    PhpoError,
    check_values,
    command_line,
    merge_json,
    read_search_space,
    read_segments,
    warn,
)
from hposteer.client.phpo_options import SECRET_DESTS, build_parser, name_options
from hposteer.client.sandbox import Sandbox, SandboxError, build, missing_from_sandbox
from hposteer.client.settings import MISSING_TOKEN_HINT, SettingError, refused, resolve_server, resolve_token
from hposteer.client.wire import TaskDetail

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TOKEN_HINT = "An operator creates one on the server host with `hposteer token create --role user --owner NAME`."
# Outcome as PanDA's --dumpJson has it: (returnCode: None on success, 1 on failure; returnOut; jediTaskID)
Outcome = tuple[int | None, str, int | None]
# What _run ends with: the outcome and the exit status (2 when --noSubmit's offline check refused the task)
Ending = tuple[Outcome, int]


def _error(message: str) -> None:
    print(f"ERROR : {message}", file=sys.stderr)


def load_options(options: argparse.Namespace, argv: Sequence[str]) -> None:
    """Merge --loadJson into the parsed command line and record both (PanDA's cliParams)."""
    recorded = command_line(argv)
    if options.loadJson is not None:
        recorded += merge_json(options, options.loadJson, argv)
    options.cliParams = recorded


def check_options(options: argparse.Namespace) -> None:
    """PanDA's checks and derived values, after the merge."""
    check_values(options, f" in {options.loadJson}" if options.loadJson else "")
    for dest in ("outDS", "evaluationExec"):
        if not getattr(options, dest):
            raise PhpoError(f"--{dest} is not specified")
    if not options.steeringExec and not options.optimizer:
        # PanDA requires --steeringExec; a task that names no optimiser gets the default here.
        warn("neither --steeringExec nor --optimizer is given: the task uses the default optimizer, tpe")
    if not options.outDS.endswith("/"):
        options.outDS += "/"
    if options.maxEvaluationJobs is None:
        options.maxEvaluationJobs = 2 * options.maxPoints
    try:
        options.server = resolve_server(options.server)
    except SettingError as exc:
        raise PhpoError(exc.message) from None


def prepare(argv: Sequence[str]) -> argparse.Namespace:
    """Parse, merge --loadJson and check, as `main` does before submitting (raises PhpoError)."""
    options = build_parser().parse_args(list(argv))
    load_options(options, argv)
    check_options(options)
    return options


def submission(options: argparse.Namespace, sandbox_sha256: str | None) -> dict[str, Any]:
    """The TaskSubmission body of docs/api.md (reads the search-space and segment files)."""
    segments = read_segments(options.segmentSpecFile) if options.segmentSpecFile else None
    space = None
    if options.searchSpaceFile:
        space = read_search_space(options.searchSpaceFile, len(segments) if segments is not None else None)
    return {
        "name": options.outDS,
        "evaluation_exec": options.evaluationExec,
        "evaluation_container": options.evaluationContainer,
        "evaluation_input": options.evaluationInput,
        "evaluation_output": options.evaluationOutput,
        "search_space": space,
        "segments": segments,
        "optimizer": options.optimizer,
        "steering_exec": options.steeringExec,
        "steering_container": options.steeringContainer,
        "max_points": options.maxPoints,
        "n_points_per_iteration": options.nPointsPerIteration,
        "min_unevaluated_points": options.minUnevaluatedPoints,
        "n_parallel_evaluation": options.nParallelEvaluation,
        "max_evaluation_jobs": options.maxEvaluationJobs,
        "max_attempts": options.maxAttempts,
        "site": options.site,
        "architecture": options.architecture,
        "seed": options.seed,
        "failures_as_losses": options.failuresAsLosses,
        "max_points_per_job": options.maxPointsPerEvaluationJob,
        "evaluation_timeout_s": _seconds(options.evaluationTimeout),
        "checkpoint_to_save": _comma_list(options.checkPointToSave),
        "checkpoint_to_load": options.checkPointToLoad,
        "checkpoint_interval_s": _seconds(options.checkPointInterval),
        "evaluation_meta": options.evaluationMeta,
        "evaluation_metrics": options.evaluationMetrics,
        "evaluation_training_data": options.evaluationTrainingData,
        "training_ds": options.trainingDS,
        "report_file": options.reportFile,
        "sandbox_sha256": sandbox_sha256,
        "options": {k: v for k, v in vars(options).items() if k not in SECRET_DESTS},
    }


def _seconds(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes * 60, 6)


def _comma_list(value: str | None) -> list[str] | None:
    """PanDA's comma list (``a,b/,c``): blanks dropped; an all-blank value is sent as [] so the server says so."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _token(options: argparse.Namespace) -> str | None:
    try:
        return resolve_token(options.token, options.tokenFile)
    except SettingError as exc:  # a missing, empty or unreadable token file
        raise PhpoError(exc.message) from None


def _sandbox(options: argparse.Namespace) -> Sandbox:
    try:
        sandbox = build(Path.cwd())
    except SandboxError as exc:
        raise PhpoError(str(exc)) from None
    for warning in missing_from_sandbox(options.evaluationExec, sandbox, Path.cwd()):
        warn(warning)
    if options.verbose:
        print(f"sandbox: {len(sandbox.files)} files, {len(sandbox.data)} bytes, sha256 {sandbox.sha256}")
        for name in sandbox.files:
            print(f"  {name}")
    return sandbox


def _submit(options: argparse.Namespace) -> Outcome:
    body = submission(options, None)  # the user's files are checked before anything else happens
    offline_warnings = check_task_offline(options, body) if options.noSubmit else []
    sandbox = _sandbox(options)
    token = _token(options)
    if options.noSubmit:
        return _dry_run(options, body, sandbox, token, offline_warnings)
    if token is None:
        raise PhpoError(MISSING_TOKEN_HINT)
    body["sandbox_sha256"] = sandbox.sha256
    with ApiClient(options.server, token) as api:
        if api.has_sandbox(sandbox.sha256):
            if options.verbose:
                print("the server already holds this sandbox: not uploading it again")
        else:
            api.upload_sandbox(sandbox.data, sandbox.sha256)
            if options.verbose:
                print(f"uploaded the sandbox to {options.server}")
        if options.verbose:
            print("request body:\n" + json.dumps(body, indent=2))
        task = api.submit_task(body)
    for warning in task.get("warnings") or []:
        warn(warning)
    message = (
        f"submitted task {task['id']} ({task['name']})\n"
        f"  optimizer {task.get('optimizer')}, sandbox {sandbox.sha256[:12]} ({len(sandbox.files)} files)\n"
        f"  watch it with: hposteer task wait {task['id']}   (details: hposteer task show {task['id']})"
    )
    return None, message, int(task["id"])


def _dry_run(
    options: argparse.Namespace, body: dict[str, Any], sandbox: Sandbox, token: str | None, offline_warnings: list[str]
) -> Outcome:
    """After the offline check passed: the server's dry run, when a server answers, checks the rest."""
    answer: TaskDetail | None = None
    reason = MISSING_TOKEN_HINT
    if token is not None:
        try:
            with ApiClient(options.server, token, retry=RetryPolicy(attempts=2)) as api:
                answer = api.submit_task({**body, "dry_run": True})
        except ServerUnreachable as exc:
            reason = str(exc)
    lines = [f"dry run (--noSubmit): nothing was submitted or stored. Task {body['name']} would be:"]
    lines += _summary(body, sandbox)
    lines.append("checked offline with the server's rules: the search space, the segments and --architecture are valid")
    if answer is not None:
        for warning in answer.get("warnings") or []:
            warn(warning)
        lines.append(
            f"validated by the server at {options.server}: search space, optimizer "
            f"({answer.get('optimizer')}) and budgets are accepted"
        )
    else:
        for warning in offline_warnings:
            warn(warning)
        warn(f"not validated by a server: {reason}")
        lines.append(
            "NOT validated by a server: the optimizer (and whether it supports every parameter of the space), "
            "the budgets and the other options were not checked"
        )
    if options.verbose:
        lines.append("request body:\n" + json.dumps(body, indent=2))
    return None, "\n".join(lines), None


def _summary(body: dict[str, Any], sandbox: Sandbox) -> list[str]:
    space = body["search_space"]
    if isinstance(space, dict):
        params = ", ".join(space) or "(none)"
    elif isinstance(space, list):
        params = f"{len(space)} per-segment spaces"
    else:
        params = "(no --searchSpaceFile)"
    steering = f"--optimizer {body['optimizer']}" if body["optimizer"] else f"--steeringExec {body['steering_exec']!r}"
    shown = ", ".join(sandbox.files[:8]) + (", ..." if len(sandbox.files) > 8 else "")
    lines = [
        f"  evaluation: {body['evaluation_exec']}",
        f"  steering: {steering}; search space: {params}",
        f"  maxPoints {body['max_points']}, nPointsPerIteration {body['n_points_per_iteration']}, "
        f"nParallelEvaluation {body['n_parallel_evaluation']}, maxEvaluationJobs {body['max_evaluation_jobs']}, "
        f"maxAttempts {body['max_attempts']}",
        f"  site: {body['site'] or 'any'}",
        f"  sandbox: {len(sandbox.files)} files, {len(sandbox.data)} bytes ({shown})",
    ]
    if body["segments"] is not None:
        lines.insert(2, f"  segments: {', '.join(s['name'] for s in body['segments'])}")
    return lines


def _run(options: argparse.Namespace) -> Ending:
    try:
        return _submit(options), EXIT_OK
    except InvalidTask as exc:  # --noSubmit refused it offline: PanDA's returnCode 1, a usage error's exit code
        return (EXIT_FAILED, str(exc), None), EXIT_USAGE
    except PhpoError as exc:
        return (EXIT_FAILED, str(exc), None), EXIT_FAILED
    except ServerUnreachable as exc:
        return (EXIT_FAILED, str(exc), None), EXIT_FAILED
    except Unauthorized as exc:
        return (EXIT_FAILED, refused(exc.message), None), EXIT_FAILED
    except Forbidden as exc:
        return (EXIT_FAILED, f"{exc.message}: phpo needs a token with the user role. {TOKEN_HINT}", None), EXIT_FAILED
    except ApiError as exc:
        name_options(exc.issues)
        return (EXIT_FAILED, f"task submission failed: {exc.describe()}", None), EXIT_FAILED


def _dump(options: argparse.Namespace, outcome: Outcome) -> None:
    if not isinstance(options.dumpJson, str):
        return
    code, out, task_id = outcome
    item = {k: v for k, v in vars(options).items() if k not in SECRET_DESTS}
    item.update(returnCode=code, returnOut=out, jediTaskID=task_id)
    try:
        with open(Path(options.dumpJson).expanduser(), "w") as f:
            json.dump(item, f)
    except OSError as exc:
        _error(f"--dumpJson {options.dumpJson}: cannot write it ({exc.strerror})")


def main(argv: Sequence[str] | None = None) -> int:
    return quiet_on_broken_pipe(lambda: _main(list(sys.argv[1:] if argv is None else argv)))


def _main(args: list[str]) -> int:
    try:
        options = build_parser().parse_args(args)
    except SystemExit as exc:  # -h, --helpGroup, or a usage error (argparse has printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    try:
        load_options(options, args)
        if options.version is True:
            print(f"Version: hposteer {__version__} (phpo compatible)")
            return EXIT_OK
        check_options(options)
    except PhpoError as exc:
        outcome: Outcome = (EXIT_FAILED, str(exc), None)
        status = EXIT_FAILED
    else:
        outcome, status = _run(options)
    code, message, _ = outcome
    if code is None:
        print(message)
    else:
        _error(message)
    _dump(options, outcome)
    return status


if __name__ == "__main__":
    sys.exit(main())
