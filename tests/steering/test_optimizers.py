"""Builtin optimisers through the warm runner: validity, refusals, seeding, warmth, failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from service.core.optimizer_spec import OptimizerSpec, parse_optimizer_name
from service.core.searchspace import Params, SearchSpace
from service.core.space_json import parse_search_space
from service.core.steering import Observation
from service.steering import registry
from service.steering.warm import WarmRunner, generate

BOUNDED = {
    "x": {"method": "uniform", "dimension": {"low": -3, "high": 3}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}},
    "units": {"method": "quniform", "dimension": {"low": 16, "high": 128, "q": 16}},
    "lq": {"method": "qloguniform", "dimension": {"low": 1, "high": 64, "q": 1}},
    "depth": {"method": "uniformint", "dimension": {"low": 1, "high": 6}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", ["tanh", 2], {"k": 1}]}},
    "opt": {"method": "fixed", "dimension": {"value": "adam"}},
}
UNBOUNDED = {
    "w": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}},
    "qw": {"method": "qnormal", "dimension": {"mu": 5, "sigma": 2, "q": 0.5}},
    "s": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 1}},
    "qs": {"method": "qlognormal", "dimension": {"mu": 1, "sigma": 0.5, "q": 1}},
}
FINITE = {
    "a": {"method": "categorical", "dimension": {"categories": [1, 2, 3]}},
    "b": {"method": "uniformint", "dimension": {"low": 0, "high": 1}},
    "c": {"method": "fixed", "dimension": {"value": "z"}},
}


def objective(params: Params) -> float:
    return float((params["x"] - 1.0) ** 2) if "x" in params else float(hash(str(params)) % 100) / 100


def drive(
    runner: WarmRunner,
    spec: OptimizerSpec,
    space: SearchSpace,
    *,
    rounds: int,
    batch: int,
    seed: int = 7,
    loss: Callable[[Params], float | None] = objective,
    history: list[Observation] | None = None,
    key: int = 1,
) -> list[Observation]:
    """Simulate steering: ask a batch, store it with ids, evaluate it, repeat."""
    history = history if history is not None else []
    budget = rounds * batch + len(history)
    for _ in range(rounds):
        params = runner.run(
            key=key, spec=spec, space=space, history=history, n=batch, seed=seed, budget=budget, parallelism=batch
        )
        start = len(history) + 1
        history = history + [Observation(start + i, p, None) for i, p in enumerate(params)]
        history = [
            Observation(o.point_id, o.params, loss(o.params), failed=loss(o.params) is None) if o.loss is None else o
            for o in history
        ]
        history = [Observation(o.point_id, o.params, 1e5 if o.failed else o.loss, o.failed) for o in history]
        if not params:
            break
    return history


@pytest.mark.parametrize(
    ("optimizer", "raw"),
    [
        ("tpe", BOUNDED),
        ("nevergrad", BOUNDED),
        ("nevergrad", UNBOUNDED),
        ("nevergrad:CMA", BOUNDED),
        ("skopt:RF", BOUNDED),
        ("skopt", {"x": BOUNDED["x"], "act": BOUNDED["act"]}),
        ("random", {**BOUNDED, **UNBOUNDED}),
        ("grid", FINITE),
    ],
)
def test_every_suggested_point_lies_in_the_space(optimizer: str, raw: dict[str, Any]) -> None:
    space = parse_search_space(raw)
    spec = parse_optimizer_name(optimizer)
    assert registry.validate(spec, space) == []
    runner = WarmRunner()
    try:
        rounds = 3 if optimizer.startswith("skopt") else 6  # skopt's surrogates are slow to fit
        history = drive(runner, spec, space, rounds=rounds, batch=3)
    finally:
        runner.close()
    assert history
    for obs in history:
        assert space.contains(obs.params), obs.params
    if "opt" in raw:
        assert {o.params["opt"] for o in history} == {"adam"}


@pytest.mark.parametrize(
    ("optimizer", "raw", "parameter", "fragment"),
    [
        ("tpe", {"w": UNBOUNDED["w"]}, "w", "honour it: nevergrad, random"),
        ("skopt", {"s": UNBOUNDED["qs"]}, "s", "bounded ranges only"),
        ("grid", {"x": BOUNDED["x"]}, "x", "no finite set of values"),
        (
            "tpe",
            {"c": {"method": "categorical", "dimension": {"categories": [1, 2], "grid_search": 1}}},
            "c",
            "only the 'grid' optimizer",
        ),
        ("nevergrad:NGOptt", {"x": BOUNDED["x"]}, None, "did you mean NGOpt"),
        ("tpe", {"f": {"method": "fixed", "dimension": {"value": 1}}}, None, "nothing for tpe:TPE to search"),
    ],
)
def test_methods_an_optimizer_cannot_honour_are_refused(
    optimizer: str, raw: dict[str, Any], parameter: str | None, fragment: str
) -> None:
    issues = registry.validate(parse_optimizer_name(optimizer), parse_search_space(raw))
    assert issues, "must be refused, never turned into a constant"
    assert issues[0].parameter == parameter
    assert fragment in issues[0].message, issues[0].message


@pytest.mark.parametrize("optimizer", ["tpe", "nevergrad", "nevergrad:TwoPointsDE", "skopt:GBRT", "random"])
def test_same_seed_and_history_give_the_same_points(optimizer: str) -> None:
    space = parse_search_space({k: BOUNDED[k] for k in ("x", "lr", "depth", "act")})
    spec = parse_optimizer_name(optimizer)
    rounds = 3 if optimizer.startswith("skopt") else 4  # past skopt's random initial points, kept short
    runs = []
    for _ in range(2):
        runner = WarmRunner()
        try:
            runs.append([o.params for o in drive(runner, spec, space, rounds=rounds, batch=2, seed=11)])
        finally:
            runner.close()
    assert runs[0] == runs[1]
    other = WarmRunner()
    try:
        different = [o.params for o in drive(other, spec, space, rounds=rounds, batch=2, seed=12)]
    finally:
        other.close()
    assert different != runs[0]


def test_warm_runner_tells_only_what_is_new_and_rebuilds_after_a_restart() -> None:
    space = parse_search_space({k: BOUNDED[k] for k in ("x", "depth")})
    spec = parse_optimizer_name("nevergrad")
    runner = WarmRunner()
    history = drive(runner, spec, space, rounds=5, batch=2)
    assert runner.stats(1) == (8, 0), "each result told once, at the next run; nothing adopted"
    runner.run(key=1, spec=spec, space=space, history=history, n=0, seed=7, budget=10, parallelism=2)
    assert runner.stats(1) == (10, 0), "the last two results"
    runner.run(key=1, spec=spec, space=space, history=history, n=0, seed=7, budget=10, parallelism=2)
    assert runner.stats(1) == (10, 0), "nothing new, nothing told"
    runner.close()
    restarted = WarmRunner()
    try:
        more = restarted.run(key=1, spec=spec, space=space, history=history, n=2, seed=7, budget=10, parallelism=2)
        assert restarted.stats(1) == (10, 10), "a new runner adopts the whole history in one pass"
        assert len(more) == 2 and all(space.contains(p) for p in more)
    finally:
        restarted.close()


def test_a_changed_history_rebuilds_the_optimizer() -> None:
    space = parse_search_space({"x": BOUNDED["x"]})
    spec = parse_optimizer_name("random")
    runner = WarmRunner()
    history = drive(runner, spec, space, rounds=2, batch=2)
    tampered = [Observation(history[0].point_id, {"x": 0.123}, 1.0), *history[1:]]
    runner.run(key=1, spec=spec, space=space, history=tampered, n=1, seed=7, budget=10, parallelism=1)
    assert runner.stats(1) == (4, 4), "rebuilt from scratch: everything adopted again"
    runner.close()


def test_failures_are_told_as_failures_unless_panda_behaviour_is_asked() -> None:
    space = parse_search_space({"x": BOUNDED["x"]})
    spec = parse_optimizer_name("tpe")

    def sometimes_fail(params: Params) -> float | None:
        return None if params["x"] > 0 else float(params["x"] ** 2)

    for failures_as_losses, expected in ((False, "FAIL"), (True, "COMPLETE")):
        runner = WarmRunner(failures_as_losses=failures_as_losses)
        try:
            history = drive(runner, spec, space, rounds=4, batch=3, loss=sometimes_fail)
            runner.run(key=1, spec=spec, space=space, history=history, n=0, seed=7, budget=12, parallelism=3)
            failed_ids = {o.point_id for o in history if o.failed}
            assert failed_ids
            study = runner._segments[1].optimizer._study  # type: ignore[attr-defined]
            states = {t.params["x"]: t.state.name for t in study.trials}
            failed_xs = {o.params["x"] for o in history if o.failed}
            assert {states[x] for x in failed_xs} == {expected}
            if failures_as_losses:
                assert {t.value for t in study.trials if t.params["x"] in failed_xs} == {1e5}
        finally:
            runner.close()


def test_grid_never_reproposes_a_known_point_and_exhausts() -> None:
    space = parse_search_space(FINITE)
    spec = parse_optimizer_name("grid")
    runner = WarmRunner()
    try:
        first = runner.run(key=1, spec=spec, space=space, history=[], n=2, seed=0, budget=6, parallelism=1)
        pending = [Observation(i + 1, p, None) for i, p in enumerate(first)]  # in flight, no loss yet
        second = runner.run(key=1, spec=spec, space=space, history=pending, n=10, seed=0, budget=6, parallelism=1)
        everything = first + second
        assert len(everything) == 6
        assert len({space.point_key(p) for p in everything}) == 6
        done = [Observation(i + 1, p, 0.5) for i, p in enumerate(everything)]
        assert runner.run(key=1, spec=spec, space=space, history=done, n=3, seed=0, budget=6, parallelism=1) == []
    finally:
        runner.close()
    # a fresh grid given a history (after a restart) skips what was already proposed
    rest = generate(spec, space, done[:4], 10, 0, budget=6)
    assert {space.point_key(p) for p in rest} == {space.point_key(p) for p in everything[4:]}


def test_random_over_a_finite_space_exhausts_without_repeats() -> None:
    space = parse_search_space(FINITE)
    history = drive(WarmRunner(), parse_optimizer_name("random"), space, rounds=5, batch=4)
    assert len(history) == 6
    assert len({space.point_key(o.params) for o in history}) == 6


def test_tpe_beats_random_on_a_quadratic() -> None:
    space = parse_search_space({"x": {"method": "uniform", "dimension": {"low": -10, "high": 10}}, "y": BOUNDED["x"]})

    def bowl(params: Params) -> float:
        return float((params["x"] - 3) ** 2 + (params["y"] + 1) ** 2)

    best = {}
    for optimizer in ("tpe", "random"):
        medians = []
        for seed in (1, 2, 3):
            runner = WarmRunner()
            try:
                history = drive(
                    runner, parse_optimizer_name(optimizer), space, rounds=20, batch=2, seed=seed, loss=bowl
                )
            finally:
                runner.close()
            medians.append(min(o.loss for o in history if o.loss is not None))
        best[optimizer] = sorted(medians)[1]
    assert best["tpe"] < best["random"], best


def test_dropping_nevergrad_optimizers_lets_the_process_exit() -> None:
    script = textwrap.dedent(
        """
        from service.core.optimizer_spec import parse_optimizer_name
        from service.core.space_json import parse_search_space
        from service.steering.warm import WarmRunner
        space = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
                                    "y": {"method": "uniform", "dimension": {"low": 0, "high": 1}}})
        runner = WarmRunner()
        for key, name in enumerate(["nevergrad:Cobyla", "nevergrad"]):
            spec = parse_optimizer_name(name)
            history = []
            for i in range(6):
                (p,) = runner.run(key=key, spec=spec, space=space, history=history, n=1, seed=1, budget=50,
                                  parallelism=1)
                from service.core.steering import Observation
                history.append(Observation(i + 1, p, p["x"] + p["y"]))
        runner.close()
        print("done")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
