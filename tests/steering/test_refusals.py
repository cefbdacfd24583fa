"""What an optimiser cannot honour is refused at submit with a message that says how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from hposteer.core.searchspace import METHODS
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import parse_optimizer_name
from hposteer.service.steering.optimizers import registry
from tests.steering.helpers import ONE_OF_EACH

REFUSED = [
    (library, method)
    for library in registry.LIBRARIES
    for method in METHODS
    if registry.LIBRARIES[library].unsupported(parse_search_space({"p": ONE_OF_EACH[method]})["p"]) is not None
]


def test_the_refusals_are_the_documented_ones() -> None:
    unbounded = ["normal", "qnormal", "lognormal", "qlognormal"]
    assert sorted(REFUSED) == sorted(
        [("tpe", m) for m in unbounded]
        + [("skopt", m) for m in unbounded]
        + [("grid", m) for m in ("uniform", "loguniform", "qloguniform", *unbounded)]
    )


@pytest.mark.parametrize(("library", "method"), REFUSED)
def test_a_refused_method_names_parameter_method_optimizer_and_alternatives(library: str, method: str) -> None:
    raw = {"ok": {"method": "categorical", "dimension": {"categories": [1, 2]}}, "param": ONE_OF_EACH[method]}
    space = parse_search_space(raw)
    issues = registry.validate(parse_optimizer_name(library), space)
    assert len(issues) == 1, "refused, never turned into a constant"
    issue = issues[0]
    text = str(issue)
    assert issue.parameter == "param" and issue.key == "method"
    assert "parameter 'param'" in text
    assert f"method {method!r}" in text
    assert library in text
    honoured = registry.honoured_by(space["param"])
    assert library not in honoured and honoured
    assert f"optimizers that honour {method!r}: {', '.join(honoured)}" in text


@pytest.mark.parametrize("optimizer", ["tpe", "nevergrad", "skopt", "random"])
def test_grid_search_is_refused_by_every_optimizer_but_grid(optimizer: str) -> None:
    raw = {"c": {"method": "categorical", "dimension": {"categories": [1, 2], "grid_search": 1}}}
    issues = registry.validate(parse_optimizer_name(optimizer), parse_search_space(raw))
    assert [(i.parameter, i.key) for i in issues] == [("c", "grid_search")]
    assert "only the 'grid' optimizer" in issues[0].message and "--optimizer grid" in issues[0].message
    assert registry.validate(parse_optimizer_name("grid"), parse_search_space(raw)) == []


@pytest.mark.parametrize(
    ("optimizer", "fragment"),
    [
        ("nevergrad:NGOptt", "did you mean NGOpt"),
        ("nevergrad:ngopt", "did you mean NGOpt?"),
        ("nevergrad:NoSuchThingAtAll", "see nevergrad.optimizers.registry"),
        ("nevergrad:Cobyla", "sequential wrapper"),
        ("nevergrad:BOBYQA", "sequential wrapper"),
        ("nevergrad:AXP", "needs a package that is not installed"),
    ],
)
def test_nevergrad_names_that_cannot_run_are_refused(optimizer: str, fragment: str) -> None:
    space = parse_search_space({"x": ONE_OF_EACH["uniform"]})
    issues = registry.validate(parse_optimizer_name(optimizer), space)
    assert len(issues) == 1 and issues[0].key == "optimizer"
    assert fragment in issues[0].message, issues[0].message


def test_sequential_refusal_suggests_parallel_optimizers() -> None:
    (issue,) = registry.validate(
        parse_optimizer_name("nevergrad:Cobyla"), parse_search_space({"x": ONE_OF_EACH["uniform"]})
    )
    assert "NGOpt" in issue.message and "TwoPointsDE" in issue.message


@pytest.mark.parametrize("optimizer", ["tpe", "nevergrad", "skopt"])
def test_a_space_of_constants_is_refused_by_model_based_optimizers(optimizer: str) -> None:
    raw: dict[str, Any] = {
        "f": ONE_OF_EACH["fixed"],
        "one": {"method": "categorical", "dimension": {"categories": [[1, 2]]}},
    }
    (issue,) = registry.validate(parse_optimizer_name(optimizer), parse_search_space(raw))
    assert "nothing for" in issue.message and "--optimizer grid" in issue.message
    for ok in ("grid", "random"):
        assert registry.validate(parse_optimizer_name(ok), parse_search_space(raw)) == []


def test_every_unsupported_parameter_is_reported_at_once() -> None:
    raw = {"a": ONE_OF_EACH["normal"], "b": ONE_OF_EACH["uniform"], "c": ONE_OF_EACH["lognormal"]}
    issues = registry.validate(parse_optimizer_name("tpe"), parse_search_space(raw))
    assert [i.parameter for i in issues] == ["a", "c"]
