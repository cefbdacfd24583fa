"""Every optimiser, for every method it honours, proposes only points that lie in the space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hposteer.core.searchspace import METHODS
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import parse_optimizer_name
from hposteer.service.steering.optimizers import registry
from hposteer.service.steering.optimizers.base import is_constant
from hposteer.service.steering.optimizers.warm import WarmRunner
from tests.steering.helpers import BOUNDED, ONE_OF_EACH, UNBOUNDED, drive, space_json


def _honours(library: str, method: str) -> bool:
    dim = parse_search_space({"p": ONE_OF_EACH[method]})["p"]
    return registry.LIBRARIES[library].unsupported(dim) is None


# skopt's GP is slow to fit (about 0.3 s a fit here): it gets two small rounds per method.
OPTIMIZERS = ("tpe", "nevergrad", "nevergrad:TwoPointsDE", "skopt", "random", "grid")
CASES = [(o, m) for o in OPTIMIZERS for m in METHODS if _honours(parse_optimizer_name(o).library, m)]


def _documented_table() -> dict[str, set[str]]:
    """The support table of docs/search-space.md: library -> methods marked ✓."""
    lines = (Path(__file__).parents[2] / "docs" / "search-space.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | tpe |"))
    libraries = [cell.strip() for cell in lines[start].strip("|").split("|")][1:]
    table: dict[str, set[str]] = {lib: set() for lib in libraries}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        method, *marks = (cell.strip() for cell in line.strip("|").split("|"))
        for lib, mark in zip(libraries, marks, strict=True):
            if mark == "✓":
                table[lib].add(method)
    return table


def test_the_support_table_is_what_the_documentation_promises() -> None:
    honoured = {lib: {m for m in METHODS if _honours(lib, m)} for lib in registry.LIBRARIES}
    bounded = {"categorical", "uniform", "uniformint", "quniform", "loguniform", "qloguniform", "fixed"}
    assert honoured == {
        "tpe": bounded,
        "nevergrad": set(METHODS),
        "skopt": bounded,
        "random": set(METHODS),
        "grid": {"categorical", "uniformint", "quniform", "fixed"},
    }
    assert _documented_table() == honoured


@pytest.mark.parametrize(("optimizer", "method"), CASES)
def test_each_honoured_method_gives_points_in_the_space(optimizer: str, method: str) -> None:
    raw = {"p": ONE_OF_EACH[method], "c": {"method": "categorical", "dimension": {"categories": [0, [1]]}}}
    space = parse_search_space(raw)
    spec = parse_optimizer_name(optimizer)
    assert registry.validate(spec, space) == []
    runner = WarmRunner()
    try:
        rounds, batch = (2, 3) if spec.library == "skopt" else (6, 3)
        history = drive(runner, spec, space, rounds=rounds, batch=batch)
    finally:
        runner.close()
    assert len(history) >= 2
    for obs in history:
        assert space.contains(obs.params), obs.params
    if method == "fixed":
        assert {o.params["p"] for o in history} == {"adam"}, "constants are added back unchanged"
    if method == "categorical":
        assert all(
            any(o.params["p"] == c for c in ONE_OF_EACH["categorical"]["dimension"]["categories"]) for o in history
        )


@pytest.mark.parametrize("optimizer", ["tpe", "nevergrad", "skopt:GBRT", "random"])
def test_a_space_mixing_every_honoured_method_gives_points_in_it(optimizer: str) -> None:
    spec = parse_optimizer_name(optimizer)
    raw = {**BOUNDED, **UNBOUNDED} if spec.library in ("nevergrad", "random") else BOUNDED
    space = parse_search_space(raw)
    assert registry.validate(spec, space) == []
    runner = WarmRunner()
    try:
        history = drive(runner, spec, space, rounds=4, batch=3)
    finally:
        runner.close()
    assert len(history) == 12
    assert all(space.contains(o.params) for o in history)


@pytest.mark.parametrize("optimizer", ["tpe", "nevergrad", "random", "grid"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(raw=space_json(), seed=st.integers(0, 2**20))
def test_generated_spaces_give_points_in_the_space(optimizer: str, raw: dict[str, Any], seed: int) -> None:
    space = parse_search_space(raw)
    spec = parse_optimizer_name(optimizer)
    library = registry.LIBRARIES[spec.library]
    assume(all(library.unsupported(d) is None for d in space))
    assume(not library.needs_a_searched_parameter or not all(is_constant(d) for d in space))
    runner = WarmRunner()
    try:
        history = drive(runner, spec, space, rounds=3, batch=2, seed=seed)
    finally:
        runner.close()
    assert history
    for obs in history:
        assert space.contains(obs.params), (raw, obs.params)
