"""Shared spaces and a small steering simulator for the steering tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from hposteer.core.searchspace import METHODS, Params, SearchSpace
from hposteer.service.core.optimizer_spec import OptimizerSpec
from hposteer.service.core.steering import Observation
from hposteer.service.steering.optimizers.warm import WarmRunner

# One dimension per method, with the keys spelled as users write them.
ONE_OF_EACH: dict[str, dict[str, Any]] = {
    "categorical": {"method": "categorical", "dimension": {"categories": ["relu", ["tanh", 2], {"k": 1}, 3.5]}},
    "uniform": {"method": "uniform", "dimension": {"low": -3, "high": 3}},
    "uniformint": {"method": "uniformint", "dimension": {"low": 1, "high": 6}},
    "quniform": {"method": "quniform", "dimension": {"low": 16, "high": 128, "q": 16}},
    "loguniform": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}},
    "qloguniform": {"method": "qloguniform", "dimension": {"low": 1, "high": 64, "q": 1}},
    "normal": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}},
    "qnormal": {"method": "qnormal", "dimension": {"mu": 5, "sigma": 2, "q": 0.5}},
    "lognormal": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 1}},
    "qlognormal": {"method": "qlognormal", "dimension": {"mu": 1, "sigma": 0.5, "q": 1, "base": 2}},
    "fixed": {"method": "fixed", "dimension": {"value": "adam"}},
}
assert sorted(ONE_OF_EACH) == sorted(METHODS)

BOUNDED = {
    m: ONE_OF_EACH[m]
    for m in ("categorical", "uniform", "uniformint", "quniform", "loguniform", "qloguniform", "fixed")
}
UNBOUNDED = {m: ONE_OF_EACH[m] for m in ("normal", "qnormal", "lognormal", "qlognormal")}
FINITE = {
    "a": {"method": "categorical", "dimension": {"categories": [1, "two", [3]]}},
    "b": {"method": "uniformint", "dimension": {"low": 0, "high": 1}},
    "c": {"method": "fixed", "dimension": {"value": "z"}},
    "d": {"method": "quniform", "dimension": {"low": 0, "high": 0.2, "q": 0.1}},
}  # 3 * 2 * 1 * 3 = 18 points

Loss = Callable[[Params], float | None]  # None: the evaluation failed


def spread(params: Params) -> float:
    """A deterministic loss for any point (its canonical text, hashed stably)."""
    text = repr(sorted(params.items()))
    return float(sum(ord(c) * (i + 1) for i, c in enumerate(text)) % 997) / 997


def drive(
    runner: WarmRunner,
    spec: OptimizerSpec,
    space: SearchSpace,
    *,
    rounds: int,
    batch: int,
    seed: int = 7,
    loss: Loss = spread,
    history: list[Observation] | None = None,
    key: int = 1,
    failure_loss: float = 1e5,
) -> list[Observation]:
    """Simulate the service: ask a batch, store it with sequential ids, evaluate it, repeat.

    Stops early when the optimiser returns [] (exhausted).
    """
    history = list(history or [])
    budget = rounds * batch + len(history)
    for _ in range(rounds):
        params = runner.run(
            key=key, spec=spec, space=space, history=history, n=batch, seed=seed, budget=budget, parallelism=batch
        )
        if not params:
            break
        for p in params:
            value = loss(p)
            failed = value is None
            history.append(Observation(len(history) + 1, p, failure_loss if failed else value, failed))
    return history


# -- hypothesis: valid search spaces -------------------------------------------------------------

_finite_float = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def dimension_json(draw: st.DrawFn, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """One valid dimension of one of ``methods``."""
    method = draw(st.sampled_from(methods))
    if method == "categorical":
        values = st.one_of(st.integers(-5, 5), st.text("xyz", max_size=3), st.lists(st.integers(0, 3), max_size=2))
        cats = draw(st.lists(values, min_size=1, max_size=5))
        return {"method": method, "dimension": {"categories": list({repr(c): c for c in cats}.values())}}
    if method == "fixed":
        return {"method": method, "dimension": {"value": draw(st.one_of(st.integers(), st.text(max_size=4)))}}
    if method == "uniformint":
        first = draw(st.integers(-100, 100))
        return {"method": method, "dimension": {"low": first, "high": first + draw(st.integers(1, 50))}}
    if method in ("uniform", "quniform"):
        low: float = draw(_finite_float)
        width = draw(st.floats(min_value=1e-2, max_value=1e4))
        dim: dict[str, Any] = {"low": low, "high": low + width}
        if method == "quniform":
            dim["q"] = draw(st.floats(min_value=width / 50, max_value=width))
        return {"method": method, "dimension": dim}
    if method in ("loguniform", "qloguniform"):
        low = draw(st.floats(min_value=1e-6, max_value=1e3))
        dim = {"low": low, "high": low * draw(st.floats(min_value=1.5, max_value=1e4))}
        if draw(st.booleans()):
            dim["base"] = draw(st.sampled_from([2, 10, 2.718281828459045]))
        if method == "qloguniform":
            dim["q"] = draw(st.floats(min_value=1e-3, max_value=10))
        return {"method": method, "dimension": dim}
    dim = {"mu": draw(st.floats(-3, 3)), "sigma": draw(st.floats(min_value=1e-2, max_value=2))}
    if method.startswith("q"):
        dim["q"] = draw(st.floats(min_value=1e-2, max_value=2))
    if "lognormal" in method and draw(st.booleans()):
        dim["base"] = draw(st.sampled_from([2, 10]))
    return {"method": method, "dimension": dim}


def space_json(methods: tuple[str, ...] = METHODS) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text("abcdef", min_size=1, max_size=3), dimension_json(methods), min_size=1, max_size=4)
