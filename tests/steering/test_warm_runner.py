"""The warm runner tells each result once, adopts what it never proposed, and rebuilds when it must.

Calls are counted on real adapters (thin subclasses that count, then delegate) and checked
against the libraries' own state (Optuna's trials, nevergrad's counters), not mocks.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from hposteer.core.searchspace import Params, SearchSpace
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import OptimizerSpec, parse_optimizer_name
from hposteer.service.core.steering import Observation
from hposteer.service.steering.optimizers import registry
from hposteer.service.steering.optimizers.base import Handle, SpaceCodec, Suggestion
from hposteer.service.steering.optimizers.nevergrad_adapter import NevergradOptimizer
from hposteer.service.steering.optimizers.optuna_tpe import TpeOptimizer
from hposteer.service.steering.optimizers.warm import WarmRunner
from tests.steering.helpers import ONE_OF_EACH, drive

SPACE = parse_search_space({"x": ONE_OF_EACH["uniform"], "n": ONE_OF_EACH["uniformint"], "f": ONE_OF_EACH["fixed"]})
TPE = parse_optimizer_name("tpe")


class CountingTpe(TpeOptimizer):
    """The real TPE adapter, counting what the runner asks of it."""

    built: list[CountingTpe] = []

    def __init__(self, codec: SpaceCodec, *, seed: int, fail_next_ask: bool = False):
        super().__init__(codec, seed=seed)
        self.calls: Counter[str] = Counter()
        self.fail_next_ask = fail_next_ask
        CountingTpe.built.append(self)

    def ask(self, n: int) -> list[Suggestion]:
        if self.fail_next_ask:
            self.fail_next_ask = False
            raise RuntimeError("boom")
        self.calls["ask"] += n
        return super().ask(n)

    def adopt(self, params: Params) -> Handle:
        self.calls["adopt"] += 1
        return super().adopt(params)

    def tell(self, handle: Handle, loss: float) -> None:
        self.calls["tell"] += 1
        super().tell(handle, loss)

    def tell_failure(self, handle: Handle) -> None:
        self.calls["tell_failure"] += 1
        super().tell_failure(handle)

    def discard(self, handle: Handle) -> None:
        self.calls["discard"] += 1
        super().discard(handle)

    def close(self) -> None:
        self.calls["close"] += 1
        super().close()


@pytest.fixture
def counting_tpe(monkeypatch: pytest.MonkeyPatch) -> list[CountingTpe]:
    def build(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> CountingTpe:
        return CountingTpe(SpaceCodec(space), seed=seed)

    CountingTpe.built = []
    monkeypatch.setitem(registry.LIBRARIES, "tpe", registry.Library(registry.LIBRARIES["tpe"].unsupported, build))
    return CountingTpe.built


def run(
    runner: WarmRunner, history: list[Observation], n: int, spec: OptimizerSpec = TPE, seed: int = 7
) -> list[Params]:
    return runner.run(key=1, spec=spec, space=SPACE, history=history, n=n, seed=seed, budget=20, parallelism=2)


def states(optimizer: Any) -> Counter[str]:
    return Counter(t.state.name for t in optimizer.study.trials)


def test_each_result_is_told_once_when_it_first_appears(counting_tpe: list[CountingTpe]) -> None:
    runner = WarmRunner()
    history: list[Observation] = []
    for _ in range(5):
        params = run(runner, history, 2)
        history += [Observation(len(history) + i, p, None) for i, p in enumerate(params, 1)]  # stored, pending
        run(runner, history, 0)  # a run that sees the pending points tells nothing
        history = [Observation(o.point_id, o.params, 0.5) for o in history]  # evaluated
    (tpe,) = counting_tpe
    assert tpe.calls == Counter(ask=10, tell=8), "the last two results are not seen yet"
    run(runner, history, 0)
    run(runner, history, 0)
    assert tpe.calls == Counter(ask=10, tell=10), "each told once, none twice"
    assert states(tpe) == Counter(COMPLETE=10)
    assert runner.stats(1) == (10, 0)
    runner.close()
    assert tpe.calls["close"] == 1


def test_nevergrad_is_told_only_what_is_new() -> None:
    spec = parse_optimizer_name("nevergrad")
    runner = WarmRunner()
    try:
        history = drive(runner, spec, SPACE, rounds=4, batch=3)
        adapter = runner.optimizer(1)
        assert isinstance(adapter, NevergradOptimizer)
        assert (adapter.optimizer.num_ask, adapter.optimizer.num_tell) == (12, 9)
        for _ in range(2):
            runner.run(key=1, spec=spec, space=SPACE, history=history, n=0, seed=7, budget=12, parallelism=3)
        assert (adapter.optimizer.num_ask, adapter.optimizer.num_tell) == (12, 12)
    finally:
        runner.close()


def test_a_new_runner_rebuilds_from_the_history_in_one_pass(counting_tpe: list[CountingTpe]) -> None:
    first = WarmRunner()
    history = drive(first, TPE, SPACE, rounds=4, batch=2, key=1)
    pending = run(first, history, 2)  # stored but not evaluated when the service stopped
    first.close()
    history += [Observation(len(history) + i, p, None) for i, p in enumerate(pending, 1)]
    restarted = WarmRunner()
    more = run(restarted, history, 3)
    rebuilt = counting_tpe[-1]
    assert rebuilt.calls == Counter(adopt=10, tell=8, ask=3)
    assert states(rebuilt) == Counter(COMPLETE=8, RUNNING=5), "pending points are RUNNING trials: the liar sees them"
    assert len(more) == 3 and all(SPACE.contains(p) for p in more)
    assert {SPACE.point_key(p) for p in more}.isdisjoint({SPACE.point_key(o.params) for o in history})
    restarted.close()


def test_failures_are_failures_unless_panda_behaviour_is_asked(counting_tpe: list[CountingTpe]) -> None:
    def half_fail(params: Params) -> float | None:
        return None if params["x"] > 0 else float(params["x"] ** 2)

    for failures_as_losses in (False, True):
        runner = WarmRunner(failures_as_losses=failures_as_losses)
        history = drive(runner, TPE, SPACE, rounds=4, batch=3, loss=half_fail)
        run(runner, history, 0)
        failed = {o.point_id for o in history if o.failed}
        assert failed and len(failed) < len(history)
        tpe = counting_tpe[-1]
        values = {t.number + 1: (t.state.name, t.value) for t in tpe.study.trials}  # trial n <-> point n + 1
        if failures_as_losses:
            assert {values[i] for i in failed} == {("COMPLETE", 1e5)}
        else:
            assert {values[i] for i in failed} == {("FAIL", None)}
            assert tpe.calls["tell_failure"] == len(failed)
        runner.close()


def test_max_mode_negates_losses_and_failures_stay_the_worst(counting_tpe: list[CountingTpe]) -> None:
    spec = OptimizerSpec("tpe", "TPE", "max")
    runner = WarmRunner(failures_as_losses=True)
    history = [
        Observation(1, {"x": 0.5, "n": 2, "f": "adam"}, 3.0),
        Observation(2, {"x": 1.5, "n": 3, "f": "adam"}, 1e5, failed=True),
        Observation(3, {"x": 2.5, "n": 4, "f": "adam"}, math.nan),
        Observation(4, {"x": -1.0, "n": 5, "f": "adam"}, math.inf),
    ]
    run(runner, history, 1, spec=spec)
    trials = counting_tpe[-1].study.trials
    assert [(t.state.name, t.value) for t in trials[:4]] == [
        ("COMPLETE", -3.0),  # maximised: negated for the minimiser
        ("COMPLETE", 1e5),  # PanDA's failure loss, told as the worst value, not as -1e5
        ("FAIL", None),  # no optimiser can use NaN
        ("FAIL", None),  # nor inf
    ]
    runner.close()


def test_suggestions_that_never_reached_the_history_are_discarded(counting_tpe: list[CountingTpe]) -> None:
    runner = WarmRunner()
    params = run(runner, [], 3)
    stored = [Observation(1, params[1], None)]  # the use case kept one point of three
    run(runner, stored, 1)
    tpe = counting_tpe[-1]
    assert tpe.calls == Counter(ask=4, discard=2)
    assert runner.stats(1) == (0, 0), "the stored point was matched to its suggestion, not adopted"
    runner.close()


def test_identical_suggestions_are_matched_first_in_first_out(counting_tpe: list[CountingTpe]) -> None:
    space = parse_search_space({"c": {"method": "categorical", "dimension": {"categories": ["a", "b"]}}})
    runner = WarmRunner()
    history: list[Observation] = []
    for _ in range(3):
        params = runner.run(key=1, spec=TPE, space=space, history=history, n=4, seed=3, budget=12, parallelism=4)
        history += [Observation(len(history) + i, p, 1.0) for i, p in enumerate(params, 1)]
    keys = [space.point_key(o.params) for o in history]
    assert len(set(keys)) < len(keys), "duplicates were proposed"
    runner.run(key=1, spec=TPE, space=space, history=history, n=0, seed=3, budget=12, parallelism=4)
    assert runner.stats(1) == (12, 0), "every point matched to its own suggestion"
    assert counting_tpe[-1].calls["discard"] == 0
    runner.close()


@pytest.mark.parametrize("change", ["params", "removed", "seed", "space"])
def test_a_contradicting_history_or_a_changed_task_rebuilds(counting_tpe: list[CountingTpe], change: str) -> None:
    runner = WarmRunner()
    history = drive(runner, TPE, SPACE, rounds=2, batch=2)
    seed, space = 7, SPACE
    if change == "params":
        history[0] = Observation(1, {**history[0].params, "x": 0.125}, history[0].loss)
    elif change == "removed":
        history = history[1:]
    elif change == "seed":
        seed = 8
    else:
        space = parse_search_space({**SPACE.to_json(), "x": {"method": "uniform", "dimension": {"low": -3, "high": 4}}})
        history = [o for o in history if space.contains(o.params)]
    runner.run(key=1, spec=TPE, space=space, history=history, n=1, seed=seed, budget=20, parallelism=2)
    assert len(counting_tpe) == 2 and counting_tpe[0].calls["close"] == 1
    assert counting_tpe[1].calls["adopt"] == len(history)
    runner.close()


def test_an_error_inside_the_optimizer_drops_it(counting_tpe: list[CountingTpe]) -> None:
    runner = WarmRunner()
    history = [Observation(i, p, 1.0) for i, p in enumerate(run(runner, [], 4), 1)]
    counting_tpe[0].fail_next_ask = True
    with pytest.raises(RuntimeError, match="boom"):
        run(runner, history, 1)
    assert runner.optimizer(1) is None and counting_tpe[0].calls["close"] == 1
    assert len(run(runner, history, 1)) == 1
    assert counting_tpe[1].calls["adopt"] == 4
    runner.close()


def test_retain_drops_the_optimizers_of_ended_segments(counting_tpe: list[CountingTpe]) -> None:
    runner = WarmRunner()
    for key in (1, 2, 3):
        runner.run(key=key, spec=TPE, space=SPACE, history=[], n=1, seed=1, budget=5, parallelism=1)
    runner.retain({2})
    assert [runner.optimizer(k) is not None for k in (1, 2, 3)] == [False, True, False]
    assert [t.calls["close"] for t in counting_tpe] == [1, 0, 1]
    runner.close()
    assert [t.calls["close"] for t in counting_tpe] == [1, 1, 1]


def test_a_history_with_a_repeated_point_id_is_an_error() -> None:
    runner = WarmRunner()
    point = {"x": 0.5, "n": 2, "f": "adam"}
    with pytest.raises(ValueError, match="point id 1 appears twice"):
        run(runner, [Observation(1, point, 1.0), Observation(1, point, 2.0)], 1)
    runner.close()
