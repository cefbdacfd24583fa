"""The `hposteer` command.

User commands talk to the server over HTTP (`task list|show|wait|kill`); `pilot` runs a
pilot agent; `demo` runs the whole loop locally. Server-side commands (`serve`, `token`,
`db`) are handed to `python -m hposteer.service`, so that this package never imports the service.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hposteer.client import __version__
from hposteer.client.console import quiet_on_broken_pipe
from hposteer.client.http import ApiClient, ApiError, ServerUnreachable, Unauthorized
from hposteer.client.settings import MISSING_TOKEN_HINT, refused, resolve_server, resolve_token
from hposteer.client.task_download import download_action
from hposteer.client.task_view import format_point, format_task, format_task_table, wait_for_task
from hposteer.client.wire import Point, Report

# what `pip install hposteer[service]` adds that `python -m hposteer.service` cannot start without
SERVICE_EXTRA_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings")
SERVER_COMMANDS = ("serve", "token", "db", "mlflow")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
# `task wait`: how the task ended (hposteer.client.task_view.wait_for_task) -> exit code; docs/phpo.md has the table.
EXIT_NO_POINT_DONE, EXIT_STEERING_FAILED, EXIT_KILLED = 4, 5, 6
WAIT_EXIT_CODES = {
    "finished": EXIT_OK,
    "timeout": EXIT_TIMEOUT,
    "no_point_done": EXIT_NO_POINT_DONE,
    "steering_failed": EXIT_STEERING_FAILED,
    "killed": EXIT_KILLED,
}


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="server URL (default: $HPOSTEER_SERVER or http://127.0.0.1:8750)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the API token (default: $HPOSTEER_TOKEN_FILE); the way to pass a token",
    )
    parser.add_argument("--token", help="API token (visible in `ps`: prefer --token-file; default: $HPOSTEER_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hposteer",
        description="hposteer: distributed hyperparameter optimisation. Submit with `phpo`.",
    )
    parser.add_argument("--version", action="version", version=f"hposteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("serve", help="run the steering service (server host)", add_help=False)
    sub.add_parser("token", help="create/list/revoke tokens (server host)", add_help=False)
    sub.add_parser("db", help="database schema upgrade (server host)", add_help=False)
    sub.add_parser("mlflow", help="record evaluated points missing from MLflow (server host)", add_help=False)

    task = sub.add_parser("task", help="list, show, wait for or kill tasks")
    task_sub = task.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    listing = task_sub.add_parser("list", help="your tasks, newest first")
    listing.add_argument("--state", choices=["running", "finished", "failed", "killed"])
    listing.add_argument("--limit", type=int, default=50)
    for name, helptext in (
        ("show", "one task: progress, best point, settings, segments"),
        ("wait", "follow a task until it ends; exit 0 finished, 3 timeout, 4 no point done, 5 failed, 6 killed"),
        ("kill", "stop a task: pending points are cancelled, running ones told to stop"),
        ("retry", "re-queue the task's failed points, each with a fresh round of attempts"),
        ("download", "fetch the task's metrics tarballs, metadata and checkpoints into a directory"),
    ):
        action = task_sub.add_parser(name, help=helptext)
        action.add_argument("task_id", type=int, metavar="ID")
        if name == "show":
            action.add_argument("--points", action="store_true", help="also list every point and its attempts")
            action.add_argument(
                "--point",
                type=int,
                metavar="N",
                help="one point in full: each attempt's class, exit code, timing, pilot, site, metadata and log tail",
            )
        if name == "download":
            action.add_argument("-o", "--output", metavar="DIR", help="where to write them (default: ./task<ID>)")
        if name == "wait":
            action.add_argument("--timeout", type=float, help="give up after this many seconds (exit 3)")
            action.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    for action in task_sub.choices.values():
        _connection_options(action)
        action.add_argument("--json", action="store_true", help="machine-readable output")

    from hposteer.client.datasets import add_parser as add_dataset_parser

    add_dataset_parser(sub, _connection_options)

    pilot = sub.add_parser("pilot", help="run a pilot agent that evaluates points on this machine")
    from hposteer.client.pilot.command import add_arguments as add_pilot_arguments

    add_pilot_arguments(pilot)

    demo = sub.add_parser("demo", help="run the whole loop locally: service, pilot and an example task")
    demo.add_argument("--data-dir", default=".hposteer-demo", help="where the demo keeps its database")
    demo.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    demo.add_argument("--example", default="sklearn-digits", help="example directory under examples/")
    demo.add_argument("--slots", type=int, default=2, help="pilot slots (evaluations at once)")
    return parser


def _server_command(argv: Sequence[str]) -> int:
    """Replace this process with `python -m hposteer.service ...`; returns only if the service is not installed.

    The ``hposteer.service`` package is always in the wheel; what the base install lacks is the
    ``service`` extra's libraries, so those are what is looked for (without importing them: this
    process is about to be replaced)."""
    if all(importlib.util.find_spec(name) is not None for name in SERVICE_EXTRA_MODULES):
        # -P: the working directory is not put on sys.path, so a folder or file named like ours there is never run
        os.execv(sys.executable, [sys.executable, "-P", "-m", "hposteer.service", *argv])
    print(
        "error: the steering service is not installed in this environment; "
        "install it with: pip install 'hposteer[service]'",
        file=sys.stderr,
    )
    return EXIT_USAGE


def _client(args: argparse.Namespace) -> ApiClient:
    token = resolve_token(args.token, args.token_file)
    if token is None:
        raise SystemExit(f"error: {MISSING_TOKEN_HINT}")
    return ApiClient(resolve_server(args.server), token)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _task_command(args: argparse.Namespace) -> int:
    with _client(args) as api:
        if args.task_command == "wait":
            outcome = wait_for_task(
                api, args.task_id, interval_s=args.interval, timeout_s=args.timeout, as_json=args.json
            )
            return WAIT_EXIT_CODES.get(outcome, EXIT_FAILED)
        value, text = _TASK_ACTIONS[args.task_command](api, args)
        if args.json:
            _print_json(value)
        else:
            print(text)
        return EXIT_OK


def _task_list(api: ApiClient, args: argparse.Namespace) -> tuple[Any, str]:
    tasks = api.list_tasks(state=args.state, limit=args.limit)
    return tasks, format_task_table(tasks) if tasks else "no tasks"


def _all_reports(api: ApiClient, task_id: int, point_id: int) -> list[Report]:
    """Every intermediate report of the point, page by page, in arrival order."""
    reports: list[Report] = []
    after: int | None = 0
    while after is not None:
        page = api.point_reports(task_id, point_id, after=after, limit=10_000)
        reports.extend(page["reports"])
        after = page["next_after"]
    return reports


def _task_show(api: ApiClient, args: argparse.Namespace) -> tuple[Any, str]:
    if args.point is not None:
        point = api.get_point(args.task_id, args.point)
        if not any(a.get("report_count") for a in point["attempts"]):
            return point, format_point(point)
        reports = _all_reports(api, args.task_id, args.point)
        return {**point, "reports": reports}, format_point(point, reports=reports)
    task = api.get_task(args.task_id)
    points = _all_points(api, args.task_id) if args.points else None
    return ({**task, "points": points} if points is not None else task), format_task(task, points)


def _task_kill(api: ApiClient, args: argparse.Namespace) -> tuple[Any, str]:
    task = api.kill_task(args.task_id)
    return task, f"task {task['id']} killed ({task['progress']['done']} points done)"


def _task_retry(api: ApiClient, args: argparse.Namespace) -> tuple[Any, str]:
    answer = api.retry_task(args.task_id)
    state = answer["task"]["state"]
    return answer, f"task {args.task_id}: {answer['requeued']} failed point(s) re-queued; task {state}"


_TASK_ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], tuple[Any, str]]] = {
    "list": _task_list,
    "show": _task_show,
    "kill": _task_kill,
    "retry": _task_retry,
    "download": download_action,
}


def _all_points(api: ApiClient, task_id: int) -> list[Point]:
    points: list[Point] = []
    after = 0
    while True:
        page = api.list_points(task_id, after=after, limit=500)
        points.extend(page["points"])
        if page["next_after"] is None:
            return points
        after = page["next_after"]


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except ServerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Unauthorized as exc:
        print(f"error: {refused(exc.message)}", file=sys.stderr)
        return EXIT_FAILED
    except ApiError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return quiet_on_broken_pipe(lambda: _main(list(sys.argv[1:] if argv is None else argv)))


def _main(argv: list[str]) -> int:
    if argv and argv[0] in SERVER_COMMANDS:
        return _server_command(argv)
    args = build_parser().parse_args(argv)
    if args.command == "task":
        return _guarded(lambda: _task_command(args))
    if args.command == "dataset":
        from hposteer.client.datasets import run as run_dataset

        return _guarded(lambda: run_dataset(args, _client(args)))
    if args.command == "pilot":
        from hposteer.client.pilot.command import run as run_pilot

        return _guarded(lambda: run_pilot(args))
    from hposteer.client.demo import run_demo

    return _guarded(lambda: run_demo(args))


if __name__ == "__main__":
    sys.exit(main())
