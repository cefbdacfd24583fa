"""For payload authors: report intermediate results, learn when to stop, read this attempt's budget.

Standard library only, so it also works copied as a single file into an evaluation image that has
no hposteer installed. The contract it implements (docs/multi-fidelity.md)::

    from hposteer.client.payload import budget, report, should_stop

    plan = budget()                      # max_steps is None when the task has no scheduler
    for epoch in range(plan.start_step + 1, (plan.max_steps or 10) + 1):
        loss = train_one_epoch()
        save_checkpoint()                # so that a paused point can resume from here
        report(epoch, loss, accuracy=acc)
        if should_stop():
            break

Each file is looked up in the working directory (where ``input.json`` is) unless its environment
variable names another path. A plain PanDA payload that never calls this keeps working unchanged.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

REPORT_FILE = "hposteer_report.jsonl"  # HPOSTEER_REPORT_FILE; the task's reportFile option renames it
STOP_FILE = "hposteer_stop"  # HPOSTEER_STOP_FILE; written by the pilot, JSON {"action": ..., "reason": ...}
BUDGET_FILE = "hposteer_budget.json"  # HPOSTEER_BUDGET_FILE; written by the pilot before the payload starts

_last_step: dict[str, int] = {}


def _path(variable: str, default: str) -> str:
    return os.environ.get(variable) or default


def report(step: int, loss: float | None = None, **metrics: float) -> None:
    """Append one report line: ``step`` (epoch or iteration, increasing), ``loss`` and any other metrics.

    Raises ``ValueError`` for what the pilot would refuse (a step that does not increase, a value that
    is not a finite number), so that a mistake shows in the payload's own traceback.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a whole number of at least 0, got {step!r}")
    values = dict(metrics) if loss is None else {"loss": loss, **metrics}
    if not values:
        raise ValueError("report at least one metric, for example report(step, loss)")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
    path = _path("HPOSTEER_REPORT_FILE", REPORT_FILE)
    last = _last_step.get(path)
    if last is not None and step <= last:
        raise ValueError(f"step {step} after step {last}: steps must increase within an attempt")
    line = json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}, allow_nan=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write of one whole line: a reader never sees half of it
    finally:
        os.close(fd)
    _last_step[path] = step


def should_stop() -> bool:
    """Whether the service asked this attempt to stop (pruned, paused at a rung, or the task is over).

    Save a checkpoint and exit 0 soon after: the pilot sends SIGTERM after the task's grace period.
    """
    return os.path.exists(_path("HPOSTEER_STOP_FILE", STOP_FILE))


def stop_reason() -> str | None:
    """Why the attempt should stop, as the pilot wrote it, or ``None`` while it should go on."""
    try:
        with open(_path("HPOSTEER_STOP_FILE", STOP_FILE), encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    try:
        return str(json.loads(text).get("reason") or "stop")
    except (ValueError, AttributeError):
        return text.strip() or "stop"


@dataclass(frozen=True)
class Budget:
    """This attempt's budget: train steps ``start_step + 1`` to ``max_steps`` (``None``: no limit set).

    ``start_step`` is above 0 when the point resumes (a promotion, a retry after a lost pilot): load
    the checkpoint first. ``rung`` is the SuccessiveHalving or Hyperband rung, if any.
    """

    max_steps: int | None = None
    start_step: int = 0
    rung: int | None = None


def budget() -> Budget:
    """The budget the pilot wrote for this attempt, or the unlimited default when it wrote none."""
    try:
        with open(_path("HPOSTEER_BUDGET_FILE", BUDGET_FILE), encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        return Budget()
    max_steps, start_step, rung = raw.get("max_steps"), raw.get("start_step", 0), raw.get("rung")
    return Budget(
        int(max_steps) if max_steps is not None else None,
        int(start_step or 0),
        int(rung) if rung is not None else None,
    )
