"""Text views of tasks for the terminal, and `hposteer task wait`'s live progress bar."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from hposteer.client.http import ApiClient
from hposteer.client.wire import Attempt, AttemptDetail, Point, PointDetail, Report, TaskDetail, TaskSummary

TERMINAL_STATES = ("finished", "failed", "killed")
# Why a failed task failed, as `task wait` reports it (its exit code: hposteer.client.cli WAIT_EXIT_CODES).
_NO_POINT_DONE = ("all_points_failed", "no_points_evaluated")


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def format_task_table(tasks: list[TaskSummary]) -> str:
    rows = [("ID", "STATE", "DONE/MAX", "FAILED", "BEST LOSS", "OPTIMIZER", "NAME")]  # DONE: a loss accepted
    for t in tasks:
        p = t["progress"]
        best = t["best"]
        rows.append(
            (
                str(t["id"]),
                t["state"],
                f"{p['done']}/{p['max_points']}",
                str(p["failed"]),
                _loss(best["loss"] if best else None),
                t["optimizer"],
                t["name"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def format_task(task: TaskDetail, points: Sequence[Point] | None = None) -> str:
    p = task["progress"]
    lines = [
        f"task {task['id']}  {task['name']}  (owner {task['owner']})",
        f"  state      {task['state']}" + (f" ({task['end_reason']})" if task.get("end_reason") else ""),
        f"  optimizer  {task['optimizer']}  seed {task.get('seed')}",
        f"  points     {p['done']} done, {p['failed']} failed, {p['running']} running, "
        f"{p['pending']} pending, {p['cancelled']} cancelled of {p['max_points']} max; "
        f"{p['jobs']} evaluation jobs",
    ]
    if task.get("message"):
        lines.append(f"  message    {task['message']}")
    if task.get("brokerage"):
        lines.append(f"  brokerage  {task['brokerage']}")
    best = task.get("best")
    if best:
        params = json.dumps(best["params"])
        lines.append(f"  best       loss {_loss(best['loss'])} at point {best['point_id']}: {params}")
    else:
        lines.append("  best       none yet")
    settings = task.get("settings") or {}
    if settings:
        lines.append("  settings   " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    for seg in task.get("segments") or []:
        if seg["name"]:
            sp = seg["progress"]
            lines.append(
                f"  segment {seg['index']} {seg['name']}: {seg['state']}, {sp['done']} done, "
                f"best {_loss(seg['best']['loss'] if seg['best'] else None)}"
            )
    if points is not None:
        lines.append("  points:")
        for pt in points:
            lines.append(f"    #{pt['id']:<5} {pt['state']:<9} loss {_loss(pt['loss']):<12} {json.dumps(pt['params'])}")
            lines.extend("           " + _attempt_line(a) for a in pt["attempts"])
    return "\n".join(lines)


def _attempt_line(a: Attempt) -> str:
    detail = a["failure_class"] or ""
    if a.get("message"):
        detail += f": {a['message']}"
    took = f" {a['duration_s']:.1f} s" if a.get("duration_s") is not None else ""
    return (
        f"attempt {a['number']} {a['state']:<9}{took} pilot {a['pilot']} site {a['site'] or '-'} slot {a['slot']} "
        f"exit {a['exit_code']} {detail}"
    ).rstrip()


def format_point(point: PointDetail, tail_lines: int = 40, reports: Sequence[Report] = (), curve_rows: int = 5) -> str:
    """One point and each attempt in full, with its intermediate reports' curve and the end of its payload's output."""
    lines = [
        f"point {point['id']} (segment {point['segment']}, iteration {point['iteration']}): {point['state']}, "
        f"loss {_loss(point['loss'])}" + (" (failure)" if point["is_failure"] else ""),
        f"  params {json.dumps(point['params'])}",
    ]
    for a in point["attempts"]:
        lines.append("  " + _attempt_line(a))
        if a.get("meta") is not None:
            lines.append(f"    metadata {json.dumps(a['meta'], sort_keys=True)[:2000]}")
        lines.extend(_curve_lines(a, [r for r in reports if r["attempt_number"] == a["number"]], curve_rows))
        tail = (a.get("log_tail") or "").rstrip("\n")
        if tail:
            shown = tail.splitlines()[-tail_lines:]
            lines.append(f"    output (last {len(shown)} lines; the API keeps the last 64 KiB):")
            lines.extend("      | " + line for line in shown)
    return "\n".join(lines)


def _curve_lines(attempt: AttemptDetail, reports: Sequence[Report], rows: int) -> list[str]:
    """An attempt's intermediate reports, compactly: how many, the step range, the last few rows."""
    count = attempt.get("report_count", 0)
    refusals = attempt.get("report_refusals") or []
    lines: list[str] = []
    if count:
        steps = [r["step"] for r in reports]
        first = f"steps {steps[0]}..{steps[-1]}" if steps else ""
        lines.append(f"    reports {count} ({first})" if first else f"    reports {count}")
        for r in reports[-rows:]:
            metrics = " ".join(f"{k}={v:.6g}" for k, v in sorted(r["metrics"].items()))
            lines.append(f"      step {r['step']:>6}  {metrics}")
    if refusals:
        lines.append(f"    refused report lines (last {len(refusals)}):")
        lines.extend(f"      ! {m}" for m in refusals[-3:])
    return lines


def _bar(task: TaskSummary, width: int = 30) -> str:
    p = task["progress"]
    total = max(p["max_points"], 1)
    evaluated = p["done"] + p["failed"]
    filled = int(width * min(evaluated, total) / total)
    best = task.get("best")
    best_text = f"best {_loss(best['loss'])} (#{best['point_id']})" if best else "best -"
    return (
        f"task {task['id']} [{'#' * filled}{'.' * (width - filled)}] {evaluated}/{p['max_points']} "
        f"{p['running']} running  {best_text}  {task['state']}"
    )


def wait_for_task(
    api: ApiClient,
    task_id: int,
    *,
    interval_s: float = 1.0,
    timeout_s: float | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
) -> str:
    """Follow a task until it ends; returns how it ended: "finished" (at least one point done),
    "no_point_done" (failed: every point failed or none was evaluated), "steering_failed" (failed
    for another reason: its steering), "killed", or "timeout"."""
    stream = out or sys.stdout
    live = stream.isatty() and not as_json
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = ""
    while True:
        task = api.get_task(task_id)
        line = _bar(task)
        if as_json:
            pass
        elif live:
            stream.write("\r\x1b[2K" + line)
            stream.flush()
        elif line != last:
            stream.write(line + "\n")
            stream.flush()
        last = line
        if task["state"] in TERMINAL_STATES:
            if live:
                stream.write("\n")
            if as_json:
                stream.write(json.dumps(task, indent=2, sort_keys=True) + "\n")
            elif task.get("message"):
                stream.write(f"{task['message']}\n")
            return outcome_of(task)
        if deadline is not None and time.monotonic() >= deadline:
            if live:
                stream.write("\n")
            stream.write(f"task {task_id} still {task['state']} after {timeout_s:g} s\n")
            return "timeout"
        time.sleep(interval_s)


def outcome_of(task: TaskSummary) -> str:
    """How an ended task ended, for `task wait` (see wait_for_task)."""
    if task["state"] != "failed":
        return str(task["state"])
    return "no_point_done" if task.get("end_reason") in _NO_POINT_DONE else "steering_failed"
