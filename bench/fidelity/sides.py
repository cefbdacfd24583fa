"""The sides of the multi-fidelity comparison, each behind one small protocol, :class:`Side`.

A side hands a free slot its next job (a new point, or a paused one resumed), hears each epoch's
validation loss and answers continue, stop or pause, and hears when a point trained to the full
budget. Every side samples with Optuna's seeded TPE over the table's grid through ask/tell; they
differ in who decides to stop:

* :class:`NoStopping`: nobody;
* :class:`HposteerAsha`, :class:`HposteerMedian`, :class:`HposteerHyperband`: hposteer's pure
  schedulers (src/hposteer/service/core/schedulers), fed :class:`Curve`/:class:`Report` objects
  with one task-wide ``seq`` counter, as the service will feed them from its database; a stopped
  or pruned point is told to Optuna as ``PRUNED`` after its ``trial.report`` calls;
* :class:`OptunaPruning`: Optuna's own pruner, ``trial.report`` then ``trial.should_prune`` each
  epoch, as an Optuna objective does.

To run hposteer's sides through the real service later, a side that creates a task, acquires
points and posts reports over HTTP implements the same three methods.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import Trial, TrialState

from bench.fidelity.tabulate import Table
from hposteer.service.core.schedulers.asha import Asha
from hposteer.service.core.schedulers.curves import Curve, Report
from hposteer.service.core.schedulers.hyperband import Hyperband
from hposteer.service.core.schedulers.median import MedianRule
from hposteer.service.core.schedulers.rungs import RungLadder
from hposteer.service.core.schedulers.sha import RungMember, SuccessiveHalving
from hposteer.service.core.schedulers.verdict import Action

REDUCTION_FACTOR = 3
MIN_COMPLETED = 3  # the median rule's (and MedianPruner's n_startup_trials) wait for completed points


@dataclass(frozen=True)
class Job:
    """What a slot runs: point ``point_id`` (configuration ``config`` of the table), from ``start_epoch`` on."""

    point_id: int
    config: int
    start_epoch: int = 0


class Side(Protocol):
    @property
    def name(self) -> str:
        """What the side is called in the results."""

    def next_job(self) -> Job | None:
        """The job for a free slot (a paused point promoted since comes first), or ``None`` to leave it idle."""

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        """Point ``point_id``'s validation loss after ``epoch``; the verdict is applied at once."""

    def complete(self, point_id: int, value: float) -> None:
        """Point ``point_id`` trained to the full budget (called after its last report, unless that stopped it)."""


class TpeAsker:
    """Optuna's seeded TPE over the table's grid (categorical distributions), through ask/tell."""

    def __init__(self, table: Table, seed: int, pruner: optuna.pruners.BasePruner | None = None) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.table = table
        self.study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner or optuna.pruners.NopPruner(),
            study_name=f"fidelity-{table.dataset}-{seed}",  # HyperbandPruner deals brackets by a hash of it
        )
        self.distributions: dict[str, BaseDistribution] = {
            name: CategoricalDistribution(values) for name, values in table.params.items()
        }
        self.trials: dict[int, Trial] = {}

    def ask(self) -> Job:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask(self.distributions)
        self.trials[trial.number] = trial
        return Job(trial.number, self.table.index_of(trial.params))

    def report(self, point_id: int, epoch: int, value: float) -> None:
        self.trials[point_id].report(value, epoch)

    def pruned(self, point_id: int) -> None:
        self.study.tell(self.trials.pop(point_id), state=TrialState.PRUNED)

    def completed(self, point_id: int, value: float) -> None:
        self.study.tell(self.trials.pop(point_id), value)


class NoStopping:
    name = "TPE, no early stopping"

    def __init__(self, table: Table, seed: int) -> None:
        self.asker = TpeAsker(table, seed)

    def next_job(self) -> Job | None:
        return self.asker.ask()

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        self.asker.report(point_id, epoch, value)
        return Action.CONTINUE

    def complete(self, point_id: int, value: float) -> None:
        self.asker.completed(point_id, value)


class OptunaPruning:
    """Optuna's own pruning: ``trial.report`` and ``trial.should_prune`` after every epoch."""

    def __init__(self, name: str, table: Table, seed: int, pruner: optuna.pruners.BasePruner) -> None:
        self.name = name
        self.asker = TpeAsker(table, seed, pruner)

    def next_job(self) -> Job | None:
        return self.asker.ask()

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        self.asker.report(point_id, epoch, value)
        if self.asker.trials[point_id].should_prune():
            self.asker.pruned(point_id)
            return Action.STOP
        return Action.CONTINUE

    def complete(self, point_id: int, value: float) -> None:
        self.asker.completed(point_id, value)


class _Reports:
    """The task's reports as hposteer's schedulers see them: one ``Curve`` per point, one ``seq`` for all events."""

    def __init__(self) -> None:
        self.seq = 0
        self.curves: dict[int, Curve] = {}

    def add(self, point_id: int, epoch: int, value: float) -> tuple[Curve, Report]:
        report = Report(self._next(), epoch, value)
        before = self.curves.get(point_id)
        curve = Curve(point_id, (*(before.reports if before else ()), report))
        self.curves[point_id] = curve
        return curve, report

    def complete(self, point_id: int) -> None:
        curve = self.curves[point_id]
        self.curves[point_id] = Curve(point_id, curve.reports, completed_seq=self._next())

    def _next(self) -> int:
        self.seq += 1
        return self.seq


class HposteerAsha:
    name = "TPE + hposteer ASHA"

    def __init__(self, table: Table, seed: int) -> None:
        self.asker = TpeAsker(table, seed)
        self.reports = _Reports()
        self.asha = Asha(RungLadder(1, table.epochs, REDUCTION_FACTOR))

    def next_job(self) -> Job | None:
        return self.asker.ask()

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        self.asker.report(point_id, epoch, value)
        curve, report = self.reports.add(point_id, epoch, value)
        verdict = self.asha.decide(curve, report, list(self.reports.curves.values()))
        if verdict.stops:
            self.asker.pruned(point_id)
        return verdict.action

    def complete(self, point_id: int, value: float) -> None:
        self.reports.complete(point_id)
        self.asker.completed(point_id, value)


class HposteerMedian:
    name = "TPE + hposteer median rule"

    def __init__(self, table: Table, seed: int) -> None:
        self.asker = TpeAsker(table, seed)
        self.reports = _Reports()
        self.rule = MedianRule(min_completed=MIN_COMPLETED)
        self.completed: list[int] = []

    def next_job(self) -> Job | None:
        return self.asker.ask()

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        self.asker.report(point_id, epoch, value)
        curve, report = self.reports.add(point_id, epoch, value)
        # the rule reads only completed points: handing it just those decides the same, in a fraction of the time
        others = [self.reports.curves[p] for p in self.completed]
        verdict = self.rule.decide(curve, report, others)
        if verdict.stops:
            self.asker.pruned(point_id)
        return verdict.action

    def complete(self, point_id: int, value: float) -> None:
        self.reports.complete(point_id)
        self.completed.append(point_id)
        self.asker.completed(point_id, value)


@dataclass
class _Group:
    """One SuccessiveHalving bracket instance of Hyperband: its points, and who is where."""

    sha: SuccessiveHalving
    points: list[int] = field(default_factory=list)
    rung_of: dict[int, int] = field(default_factory=dict)
    members: dict[int, dict[int, float | None]] = field(default_factory=dict)  # rung -> point -> value there
    ended: dict[int, set[int]] = field(default_factory=dict)  # rung -> points that ended there


class HposteerHyperband:
    """hposteer's Hyperband: points pause at their rung's budget and the best ``1/eta`` resume from there."""

    name = "TPE + hposteer Hyperband"

    def __init__(self, table: Table, seed: int) -> None:
        self.asker = TpeAsker(table, seed)
        self.reports = _Reports()
        self.hyperband = Hyperband(1, table.epochs, REDUCTION_FACTOR)
        self.brackets = self.hyperband.brackets
        self.cycle = sum(b.num_runs for b in self.brackets)
        self.groups: dict[tuple[int, int], _Group] = {}
        self.group_of: dict[int, _Group] = {}
        self.config_of: dict[int, int] = {}
        self.created = 0
        self.resumable: list[Job] = []
        self.promotions = 0

    def next_job(self) -> Job | None:
        if self.resumable:
            return self.resumable.pop(0)
        job = self.asker.ask()
        key = (self.created // self.cycle, self.hyperband.bracket_of(self.created))
        self.created += 1
        group = self.groups.setdefault(key, _Group(self.brackets[key[1]]))
        group.points.append(job.point_id)
        group.rung_of[job.point_id] = 0
        group.members.setdefault(0, {})[job.point_id] = None
        self.group_of[job.point_id] = group
        self.config_of[job.point_id] = job.config
        return job

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        self.asker.report(point_id, epoch, value)
        self.reports.add(point_id, epoch, value)
        group = self.group_of[point_id]
        rung = group.rung_of[point_id]
        verdict = group.sha.decide(rung, epoch)
        if verdict.action is Action.PAUSE:
            group.members[rung][point_id] = value
            group.ended.setdefault(rung, set()).add(point_id)
            self._promote(group, rung)
        return verdict.action

    def _promote(self, group: _Group, rung: int) -> None:
        if rung == 0 and len(group.points) < group.sha.num_runs:
            return  # the bracket's points are not all created yet: the rung waits for them
        ended = group.ended.get(rung, set())
        members = [RungMember(p, v, p in ended) for p, v in group.members[rung].items()]
        promotion = group.sha.promote(rung, members)
        if promotion is None:
            return
        self.promotions += 1
        start = group.sha.budgets[rung]
        for point_id in promotion.promoted:
            group.rung_of[point_id] = rung + 1
            group.members.setdefault(rung + 1, {})[point_id] = None
            self.resumable.append(Job(point_id, self.config_of[point_id], start))
        for point_id in promotion.pruned:
            self.asker.pruned(point_id)

    def complete(self, point_id: int, value: float) -> None:
        self.reports.complete(point_id)
        self.asker.completed(point_id, value)


HPOSTEER_SIDES = ("hposteer-asha", "hposteer-hyperband", "hposteer-median")
OPTUNA_SIDES = ("optuna-sha", "optuna-hyperband", "optuna-median")
SIDES = ("no-stopping", *HPOSTEER_SIDES, *OPTUNA_SIDES)


def make_side(key: str, table: Table, seed: int) -> Any:
    """A fresh side by its key in :data:`SIDES` (typed ``Any`` so each class need not name the protocol)."""
    eta, epochs = REDUCTION_FACTOR, table.epochs
    pruner: optuna.pruners.BasePruner
    match key:
        case "no-stopping":
            return NoStopping(table, seed)
        case "hposteer-asha":
            return HposteerAsha(table, seed)
        case "hposteer-hyperband":
            return HposteerHyperband(table, seed)
        case "hposteer-median":
            return HposteerMedian(table, seed)
        case "optuna-sha":
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta)
            return OptunaPruning("TPE + Optuna SuccessiveHalvingPruner", table, seed, pruner)
        case "optuna-hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=eta)
            return OptunaPruning("TPE + Optuna HyperbandPruner", table, seed, pruner)
        case "optuna-median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=MIN_COMPLETED)
            return OptunaPruning("TPE + Optuna MedianPruner", table, seed, pruner)
    raise ValueError(f"unknown side {key!r}; one of {', '.join(SIDES)}")
