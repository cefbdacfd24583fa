"""`phpo`: submit an HPO task with panda-client's options (docs/phpo.md).

Same option names, --loadJson keys, types and defaults as PanDA's phpo (client/phpo_options.py);
the JSON file overrides the command line and numeric strings become ints, as there. The
search space is validated by the server, so the rules live in one place; `--noSubmit`
asks the server to validate without storing anything when one is reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client import __version__
from client.http import ApiClient, ApiError, ServerUnreachable, Unauthorized
from client.phpo_options import BY_DEST, GROUPS, SECRET_DESTS, add_options
from client.sandbox import SandboxTooLarge, build
from client.settings import MISSING_TOKEN_HINT, resolve_server, resolve_token

EXIT_OK, EXIT_FAILED = 0, 1


class PhpoError(Exception):
    """A problem with the user's options or files; the message says what and where."""


def _warn(message: str) -> None:
    print(f"WARNING : {message}", file=sys.stderr)


def _error(message: str) -> None:
    print(f"ERROR : {message}", file=sys.stderr)


class _HelpGroup(argparse.Action):
    """``--helpGroup NAME``: print one group's options (or ALL) and exit, as PanDA's phpo does."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        wanted = str(values).lower()
        formatter = parser._get_formatter()
        for group in parser._action_groups:
            if group.title and group.title.lower() in GROUPS and wanted in ("all", group.title.lower()):
                formatter.start_section(f"{group.title} ({group.description})")
                formatter.add_arguments(group._group_actions)
                formatter.end_section()
        sys.stdout.write(formatter.format_help())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phpo",
        usage="phpo [options]",
        description="Submit a hyperparameter-optimisation task to hposteer (PanDA phpo compatible).",
    )
    add_options(parser)
    choices = [*(g.upper() for g in GROUPS), "ALL"]
    parser.add_argument(
        "--helpGroup",
        action=_HelpGroup,
        metavar="{" + ",".join(choices) + "}",
        type=lambda s: s if s.upper() in choices else _bad_group(s, choices),
        help="print the options of one group (not case-sensitive); ALL prints every group",
    )
    return parser


def _bad_group(value: str, choices: list[str]) -> str:
    raise argparse.ArgumentTypeError(f"invalid group {value!r}; choose from {', '.join(choices)}")


def _read_json(path: str, option: str) -> Any:
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise PhpoError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise PhpoError(f"{option} {path}: cannot read it ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PhpoError(f"{option} {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _int_if_numeric(value: Any) -> Any:
    """PanDA turns every string that int() accepts into an int, and leaves the rest alone."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def merge_json(options: argparse.Namespace, path: str) -> str:
    """Apply a --loadJson file as PanDA does; returns what it adds to the recorded command line."""
    loaded = _read_json(path, "--loadJson")
    if not isinstance(loaded, dict):
        raise PhpoError(f"--loadJson {path}: must hold a JSON object of option names, got {type(loaded).__name__}")
    recorded = ""
    for key, raw in loaded.items():
        if key not in vars(options):
            _warn(f"ignore unknown option {key} in {path}")
            continue
        value = _int_if_numeric(raw)
        setattr(options, key, value)
        if value is True:
            recorded += f" --{key}"
        elif isinstance(value, str):
            recorded += f" --{key}='{value}'"
        else:
            recorded += f" --{key}={value}"
    return recorded


def _check_types(options: argparse.Namespace, source: str) -> None:
    for dest, option in BY_DEST.items():
        value = getattr(options, dest, None)
        if value is None:
            continue
        if option.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise PhpoError(f"{dest}{source} must be an integer, got {json.dumps(value)}")
        if option.kind == "str" and not isinstance(value, str):
            raise PhpoError(f"{dest}{source} must be a string, got {json.dumps(value)}")
        if option.kind == "flag" and not isinstance(value, bool):
            raise PhpoError(f"{dest}{source} must be true or false, got {json.dumps(value)}")


def _segments(path: str) -> list[dict[str, Any]]:
    segments = _read_json(path, "--segmentSpecFile")
    if not isinstance(segments, list) or not all(isinstance(s, dict) and "name" in s for s in segments):
        raise PhpoError(f'--segmentSpecFile {path}: must be a JSON list of objects with a "name"')
    return [{**s, "id": i} for i, s in enumerate(segments)]


def submission(options: argparse.Namespace, sandbox_sha256: str | None) -> dict[str, Any]:
    """The TaskSubmission body of docs/api.md."""
    space = _read_json(options.searchSpaceFile, "--searchSpaceFile") if options.searchSpaceFile else None
    segments = _segments(options.segmentSpecFile) if options.segmentSpecFile else None
    recorded = {k: v for k, v in vars(options).items() if k not in SECRET_DESTS}
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
        "sandbox_sha256": sandbox_sha256,
        "options": recorded,
    }


def prepare(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line, merge --loadJson, apply PanDA's checks and derived defaults."""
    parser = build_parser()
    options = parser.parse_args(argv)
    recorded = " ".join(["phpo", *(argv if argv is not None else sys.argv[1:])])
    if options.loadJson is not None:
        recorded += merge_json(options, options.loadJson)
        _check_types(options, f" in {options.loadJson}")
    options.cliParams = recorded
    if options.version:
        print(f"Version: hposteer {__version__} (phpo compatible)")
        raise SystemExit(EXIT_OK)
    for dest in ("outDS", "evaluationExec"):
        if getattr(options, dest) is None:
            raise PhpoError(f"--{dest} is not specified")
    if options.steeringExec is None and options.optimizer is None:
        _warn("neither --steeringExec nor --optimizer given: using the default optimizer (tpe)")
    if not options.outDS.endswith("/"):
        options.outDS += "/"
    if options.maxEvaluationJobs is None:
        options.maxEvaluationJobs = 2 * options.maxPoints
    return options


def _dump(options: argparse.Namespace, code: int | None, out: str, task_id: int | None) -> None:
    if options.dumpJson is None:
        return
    item = {k: v for k, v in vars(options).items() if k not in SECRET_DESTS}
    item.update(returnCode=code, returnOut=out, jediTaskID=task_id)
    with open(Path(options.dumpJson).expanduser(), "w") as f:
        json.dump(item, f)


def _submit(options: argparse.Namespace) -> tuple[int | None, str, int | None]:
    """Returns (PanDA-style returnCode: None on success, message, task id)."""
    try:
        sandbox = build(Path.cwd())
    except SandboxTooLarge as exc:
        raise PhpoError(str(exc)) from None
    if options.verbose:
        print(f"sandbox: {len(sandbox.files)} files, {len(sandbox.data)} bytes, sha256 {sandbox.sha256}")
    body = submission(options, sandbox.sha256)  # reads the JSON files: their errors come first
    token = resolve_token(options.token)
    if token is None:
        if options.noSubmit:
            _warn(f"no token: the task was not validated by a server ({MISSING_TOKEN_HINT})")
            return None, _describe(body, sandbox.files, validated=False), None
        raise PhpoError(MISSING_TOKEN_HINT)
    with ApiClient(resolve_server(options.server), token) as api:
        if options.noSubmit:
            return _dry_run(api, {**body, "sandbox_sha256": None}, sandbox.files)
        if not api.has_sandbox(sandbox.sha256):
            api.upload_sandbox(sandbox.data, sandbox.sha256)
        if options.verbose:
            print(json.dumps(body, indent=2))
        task = api.submit_task(body)
    message = f"submitted task {task['id']} ({task['name']}); follow it with: hposteer task wait {task['id']}"
    return None, message, int(task["id"])


def _dry_run(api: ApiClient, body: dict[str, Any], files: list[str]) -> tuple[int | None, str, int | None]:
    try:
        api.submit_task({**body, "dry_run": True})
    except ServerUnreachable as exc:
        _warn(f"{exc} The search space was only checked for JSON syntax.")
        return None, _describe(body, files, validated=False), None
    return None, _describe(body, files, validated=True), None


def _describe(body: dict[str, Any], files: list[str], *, validated: bool) -> str:
    check = "validated by the server" if validated else "NOT validated by a server"
    return (
        f"dry run: task {body['name']} would be submitted ({check}); nothing was stored.\n"
        f"  sandbox: {len(files)} files ({', '.join(files[:8])}{', ...' if len(files) > 8 else ''})\n"
        f"  maxPoints {body['max_points']}, nPointsPerIteration {body['n_points_per_iteration']}, "
        f"nParallelEvaluation {body['n_parallel_evaluation']}, maxEvaluationJobs {body['max_evaluation_jobs']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = prepare(argv)
    except PhpoError as exc:
        _error(str(exc))
        return EXIT_FAILED
    try:
        code, message, task_id = _submit(options)
    except PhpoError as exc:
        code, message, task_id = EXIT_FAILED, str(exc), None
    except ServerUnreachable as exc:
        code, message, task_id = EXIT_FAILED, str(exc), None
    except Unauthorized as exc:
        code, message, task_id = EXIT_FAILED, f"{exc.message}. {MISSING_TOKEN_HINT}", None
    except ApiError as exc:
        code, message, task_id = EXIT_FAILED, f"task submission failed: {exc.describe()}", None
    if code is None:
        print(message)
    else:
        _error(message)
    _dump(options, code, message, task_id)
    return EXIT_OK if code is None else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
