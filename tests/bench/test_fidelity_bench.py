"""Benchmark (g), bench/fidelity: the committed tables load whole, the slot simulator keeps the side
protocol (every side, one seed, a small synthetic table), and the comparison's report agrees with
itself. No timing is asserted."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from bench.fidelity.compare import compare_dataset
from bench.fidelity.sides import SIDES, Job, make_side
from bench.fidelity.simulate import simulate
from bench.fidelity.tabulate import DATASETS, EPOCHS, GRID, Table, load
from hposteer.service.core.schedulers.verdict import Action


def small_table(epochs: int = 9, seed: int = 0) -> Table:
    """36 configurations with exponential-decay curves that cross (fast starters are not always best)."""
    rng = random.Random(seed)
    params: dict[str, tuple[object, ...]] = {"a": (1, 2, 3), "b": (0.1, 0.01, 0.001), "c": (16, 64), "d": (1, 2)}
    configs = tuple(itertools.product(*params.values()))
    loss = []
    for _ in configs:
        final, speed = 0.1 + rng.random(), 0.05 + rng.random() * 0.5
        loss.append(tuple(round(final + 2.0 * math.exp(-speed * e), 5) for e in range(1, epochs + 1)))
    accuracy = tuple(tuple(0.5 for _ in row) for row in loss)
    return Table("small", params, configs, tuple(loss), accuracy)


@dataclass
class Checked:
    """Wraps a side and checks, from outside, that the simulator and the side keep the protocol."""

    side: object
    table: Table
    slots: int
    trained: dict[int, int] = field(default_factory=dict)  # point -> epochs trained so far
    running: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    configs: dict[int, int] = field(default_factory=dict)
    reports: int = 0

    @property
    def name(self) -> str:
        return str(getattr(self.side, "name"))  # noqa: B009

    def next_job(self) -> Job | None:
        job: Job | None = self.side.next_job()  # type: ignore[attr-defined]
        if job is None:
            return None
        assert job.point_id not in self.running and job.point_id not in self.ended
        if job.point_id in self.paused:  # a promotion resumes from where the point paused, same configuration
            assert job.start_epoch == self.trained[job.point_id] and job.config == self.configs[job.point_id]
            self.paused.remove(job.point_id)
        else:
            assert job.start_epoch == 0 and job.point_id not in self.trained
            self.trained[job.point_id] = 0
            self.configs[job.point_id] = job.config
        self.running.add(job.point_id)
        assert len(self.running) <= self.slots
        return job

    def report(self, point_id: int, epoch: int, value: float) -> Action:
        assert point_id in self.running and epoch == self.trained[point_id] + 1 <= self.table.epochs
        assert value == self.table.loss[self.configs[point_id]][epoch - 1]
        self.trained[point_id] = epoch
        self.reports += 1
        action: Action = self.side.report(point_id, epoch, value)  # type: ignore[attr-defined]
        if action is Action.STOP:
            self.running.remove(point_id)
            self.ended.add(point_id)
        elif action is Action.PAUSE:
            assert epoch < self.table.epochs
            self.running.remove(point_id)
            self.paused.add(point_id)
        return action

    def complete(self, point_id: int, value: float) -> None:
        assert point_id in self.running and self.trained[point_id] == self.table.epochs
        self.running.remove(point_id)
        self.ended.add(point_id)
        self.side.complete(point_id, value)  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", SIDES)
def test_every_side_keeps_the_protocol_in_the_simulator(key: str) -> None:
    table = small_table()
    checked = Checked(make_side(key, table, seed=0), table, slots=4)
    run = simulate(checked, table, horizon=300, slots=4, budget=150)

    assert run.epochs == checked.reports == sum(checked.trained.values()) == 300
    assert run.points == len(checked.trained) and run.completed + run.stopped <= len(checked.ended)
    assert run.time_units >= run.epochs / 4
    bests = [b for _, b in run.best]
    assert bests == sorted(bests, reverse=True) and len(set(bests)) == len(bests)  # only improvements
    assert bests[-1] == min(table.loss[checked.configs[p]][e] for p, n in checked.trained.items() for e in range(n))
    assert run.best_at(300) == bests[-1] and run.epochs_to(bests[-1]) == run.best[-1][0]
    assert all(full >= run.best_at(spent) for spent, full in run.best_full)  # a full training counts in both
    assert run.at_budget["points"] <= run.points
    if key == "no-stopping":
        assert run.stopped == run.paused == 0 and run.completed == 4 * (run.time_units // table.epochs)
    if key == "hposteer-hyperband":
        assert run.paused > 0 and run.resumed > 0 and run.stopped == 0
    if key in ("hposteer-asha", "optuna-sha"):
        assert run.stopped > 0 and run.paused == 0


def test_the_report_agrees_with_itself() -> None:
    table = small_table()
    result = compare_dataset(table, [0], budget_trainings=6, cap_trainings=12, slots=4)

    assert result["budget_epochs"] == 54 and result["cap_epochs"] == 108
    sides = result["sides"]
    assert list(sides) == list(SIDES)
    base = sides["no-stopping"]
    assert base["loss_at_budget_median"] == result["target_loss"]  # one seed: its own value is the median
    assert base["epochs_to_target_ratio"] == 1.0 and base["not_reached"] == 0
    assert base["epochs_to_target_median"] <= result["budget_epochs"]
    for row in sides.values():
        reached = row["epochs_to_target_median"]
        if reached == "inf":
            assert row["not_reached"] == 1 and row["epochs_to_target_ratio"] == "inf"
        else:
            assert reached <= result["cap_epochs"]
            assert row["epochs_to_target_ratio"] == round(reached / base["epochs_to_target_median"], 3)
            assert (row["loss_at_budget_median"] <= result["target_loss"]) == (reached <= result["budget_epochs"])
    assert result["checkpoints_trainings"] == [5, 6] and list(result["quality_test"]) == ["5", "6"]
    for trainings, test in result["quality_test"].items():
        at = f"loss_at_{trainings}_trainings_median"
        assert test["hposteer"].startswith("hposteer-") and test["optuna"].startswith("optuna-")
        assert test["hposteer_median"] == min(sides[k][at] for k in sides if k.startswith("hposteer"))
        assert test["optuna_median"] == sides[test["optuna"]][at]
        assert 0.0 <= test["p"] <= 1.0 and 0.0 <= test["U"] <= 1.0  # one seed against one
    assert sides["no-stopping"]["loss_at_6_trainings_median"] == base["loss_at_budget_median"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_committed_tables_load_whole(dataset: str) -> None:
    table = load(dataset)
    assert table.params == {name: tuple(values) for name, values in GRID.items()}
    assert len(table.configs) == math.prod(len(v) for v in GRID.values()) == len(table.loss) == len(table.accuracy)
    assert {len(row) for row in table.loss} == {len(row) for row in table.accuracy} == {EPOCHS}
    assert all(math.isfinite(v) and v >= 0 for row in table.loss for v in row)
    assert all(0.0 <= v <= 1.0 for row in table.accuracy for v in row)
    assert table.index_of(table.config(17)) == 17
