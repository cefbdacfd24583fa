"""Grid and random search over finite spaces: no point twice, whatever its state, then exhaustion."""

from __future__ import annotations

import itertools
import time

import pytest

from hposteer.core.searchspace import Params
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import parse_optimizer_name
from hposteer.service.core.steering import Observation
from hposteer.service.steering.optimizers import random_search
from hposteer.service.steering.optimizers.grid import GridOptimizer
from hposteer.service.steering.optimizers.random_search import RandomOptimizer
from hposteer.service.steering.optimizers.warm import WarmRunner, generate
from tests.steering.helpers import FINITE, drive

SPACE = parse_search_space(FINITE)
GRID = parse_optimizer_name("grid")
RANDOM = parse_optimizer_name("random")


def keys(points: list[Params]) -> list[str]:
    return [SPACE.point_key(p) for p in points]


def test_grid_enumerates_every_combination_in_a_stable_order() -> None:
    points = generate(GRID, SPACE, [], 100, 0, budget=100)
    expected = [
        dict(zip(SPACE.names, combo, strict=True)) for combo in itertools.product(*(list(d.values()) for d in SPACE))
    ]
    assert points == expected and len(points) == 18
    assert points[:2] == [{"a": 1, "b": 0, "c": "z", "d": 0.0}, {"a": 1, "b": 0, "c": "z", "d": 0.1}]


@pytest.mark.parametrize("state", ["pending", "running", "done", "failed"])
def test_grid_never_reproposes_a_point_of_the_history_in_any_state(state: str) -> None:
    everything = generate(GRID, SPACE, [], 100, 0, budget=100)
    loss = {"pending": None, "running": None, "done": 0.5, "failed": 1e5}[state]
    # after a restart: a fresh grid sees the first 7 points in the given state
    history = [Observation(i + 1, p, loss, state == "failed") for i, p in enumerate(everything[:7])]
    rest = generate(GRID, SPACE, history, 100, 0, budget=100)
    assert keys(rest) == keys(everything[7:])


def test_grid_warm_skips_pending_points_and_exhausts() -> None:
    runner = WarmRunner()
    try:
        first = runner.run(key=1, spec=GRID, space=SPACE, history=[], n=5, seed=0, budget=18, parallelism=1)
        pending = [Observation(i + 1, p, None) for i, p in enumerate(first)]  # in flight, no loss yet
        second = runner.run(key=1, spec=GRID, space=SPACE, history=pending, n=100, seed=0, budget=18, parallelism=1)
        assert len(first) + len(second) == 18
        assert len(set(keys(first + second))) == 18
        done = [Observation(i + 1, p, 0.5) for i, p in enumerate(first + second)]
        assert runner.run(key=1, spec=GRID, space=SPACE, history=done, n=3, seed=0, budget=18, parallelism=1) == []
    finally:
        runner.close()


def test_grid_offers_discarded_points_again_in_order() -> None:
    grid = GridOptimizer(SPACE)
    first = grid.ask(4)
    for suggestion in first[2:]:
        grid.discard(suggestion.handle)
    again = grid.ask(3)
    assert [s.params for s in again[:2]] == [s.params for s in first[2:]]


def test_a_huge_grid_costs_no_memory() -> None:
    space = parse_search_space(
        {f"p{i}": {"method": "uniformint", "dimension": {"low": 0, "high": 999}} for i in range(4)}
    )  # 10^12 points
    assert space.cardinality == 10**12
    began = time.perf_counter()
    points = GridOptimizer(space).ask(3)
    assert time.perf_counter() - began < 0.5
    assert [p.params["p3"] for p in points] == [0, 1, 2]
    assert space.point_at(10**12 - 1) == {"p0": 999, "p1": 999, "p2": 999, "p3": 999}


def test_random_over_a_finite_space_exhausts_without_repeats() -> None:
    runner = WarmRunner()
    try:
        history = drive(runner, RANDOM, SPACE, rounds=10, batch=4)
    finally:
        runner.close()
    assert len(history) == 18
    assert len(set(keys([o.params for o in history]))) == 18
    assert generate(RANDOM, SPACE, history, 3, 7, budget=18) == []


def test_random_skips_points_of_the_history_in_any_state() -> None:
    everything = generate(GRID, SPACE, [], 100, 0, budget=100)
    history = [
        Observation(i + 1, p, loss, failed)
        for i, (p, (loss, failed)) in enumerate(
            zip(everything[:16], itertools.cycle([(None, False), (0.5, False), (1e5, True)]), strict=False)
        )
    ]
    rest = generate(RANDOM, SPACE, history, 10, 3, budget=18)
    assert sorted(keys(rest)) == sorted(keys(everything[16:]))


def test_random_over_a_large_finite_space_finds_the_last_free_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random_search, "SHUFFLE_LIMIT", 1000)  # "large" made small enough to fill
    space = parse_search_space(
        {
            "a": {"method": "uniformint", "dimension": {"low": 0, "high": 99}},
            "b": {"method": "uniformint", "dimension": {"low": 0, "high": 49}},
        }
    )  # 5,000 points: sampled with rejection, not shuffled
    size = space.cardinality
    assert size is not None and size > random_search.SHUFFLE_LIMIT
    optimizer = RandomOptimizer(space, seed=1)
    free = {5, 3_456, size - 1}
    for index in range(size):
        if index not in free:
            optimizer.adopt(space.point_at(index))
    found = optimizer.ask(5)
    assert sorted(space.point_key(s.params) for s in found) == sorted(space.point_key(space.point_at(i)) for i in free)
    assert optimizer.ask(1) == []


def test_random_over_a_continuous_space_never_runs_out() -> None:
    space = parse_search_space({"x": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}})
    assert len(RandomOptimizer(space, seed=0).ask(500)) == 500
