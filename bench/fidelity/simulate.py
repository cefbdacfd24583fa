"""The asynchronous slot simulator: a side's points replay the tabulated curves on ``SLOTS`` slots.

Time advances in units of one epoch: in each unit every busy slot trains its point one more epoch,
and the point reports the table's validation loss for that epoch (slots in order, so reports of one
unit arrive in slot order). The side's verdict is applied at once: ``STOP`` and ``PAUSE`` free the
slot, a point that reached the table's last epoch completes and frees it. Free slots are then
filled from the side (resumed points first, as the side decides), and the next unit begins.

Epochs spent (the cost measured) is the number of reports: every report is one trained epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.fidelity.sides import Job, Side
from bench.fidelity.tabulate import Table
from hposteer.service.core.schedulers.verdict import Action

SLOTS = 8


@dataclass
class Run:
    """What one side did on one seed: the best loss as epochs were spent, and how points ended."""

    epochs: int = 0  # epochs trained (= reports)
    time_units: int = 0
    best: list[tuple[int, float]] = field(default_factory=list)  # (epochs spent, new best loss at any epoch)
    best_full: list[tuple[int, float]] = field(default_factory=list)  # (epochs spent, new best loss at the last epoch)
    points: int = 0
    completed: int = 0
    stopped: int = 0
    paused: int = 0
    resumed: int = 0
    at_budget: dict[str, int] = field(default_factory=dict)  # the counts above when the budget was first spent

    def counts(self) -> dict[str, int]:
        return {
            "points": self.points,
            "completed": self.completed,
            "stopped": self.stopped,
            "paused": self.paused,
            "resumed": self.resumed,
        }

    def best_at(self, epochs: int, *, full: bool = False) -> float:
        """The best loss seen once ``epochs`` epochs were spent (``inf`` before the first report)."""
        value = math.inf
        for spent, best in self.best_full if full else self.best:
            if spent > epochs:
                break
            value = best
        return value

    def epochs_to(self, target: float, *, full: bool = False) -> float:
        """Epochs spent when the best loss first reached ``target`` (``inf`` if it never did)."""
        return next((spent for spent, best in (self.best_full if full else self.best) if best <= target), math.inf)


@dataclass
class _Slot:
    job: Job
    epoch: int  # epochs trained so far


def simulate(
    side: Side,
    table: Table,
    horizon: int,
    *,
    slots: int = SLOTS,
    budget: int | None = None,
    done: Callable[[Run], bool] | None = None,
) -> Run:
    """Run ``side`` until ``horizon`` epochs were spent, or earlier once ``done(run)`` says so (checked per report).

    ``run.at_budget`` keeps the counts of points as they stood once ``budget`` epochs were spent.
    """
    run = Run()
    busy: list[_Slot | None] = [None] * slots
    started: set[int] = set()
    while run.epochs < horizon:
        _fill(side, busy, started, run)
        if all(slot is None for slot in busy):
            break  # the side has nothing to run
        run.time_units += 1
        for i, slot in enumerate(busy):
            if slot is None:
                continue
            if not _train_one_epoch(side, table, slot, run):
                busy[i] = None
            if run.epochs == budget:
                run.at_budget = run.counts()
            if run.epochs >= horizon or (done is not None and done(run)):
                return _finished(run)
    return _finished(run)


def _fill(side: Side, busy: list[_Slot | None], started: set[int], run: Run) -> None:
    for i, slot in enumerate(busy):
        if slot is None:
            job = side.next_job()
            if job is None:
                continue
            busy[i] = _Slot(job, job.start_epoch)
            if job.point_id in started:
                run.resumed += 1
            else:
                started.add(job.point_id)
                run.points += 1


def _train_one_epoch(side: Side, table: Table, slot: _Slot, run: Run) -> bool:
    """One more epoch of the slot's point, its report and the verdict; whether the point keeps its slot."""
    slot.epoch += 1
    value = table.loss[slot.job.config][slot.epoch - 1]
    run.epochs += 1
    if not run.best or value < run.best[-1][1]:
        run.best.append((run.epochs, value))
    last = slot.epoch == table.epochs
    if last and (not run.best_full or value < run.best_full[-1][1]):
        run.best_full.append((run.epochs, value))
    action = side.report(slot.job.point_id, slot.epoch, value)
    if action is Action.STOP:
        run.stopped += 1
        return False
    if action is Action.PAUSE:
        run.paused += 1
        return False
    if last:
        side.complete(slot.job.point_id, value)
        run.completed += 1
        return False
    return True


def _finished(run: Run) -> Run:
    if not run.at_budget:
        run.at_budget = run.counts()  # it ended before the budget (the side ran dry, or a short horizon)
    return run
