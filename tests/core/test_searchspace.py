"""Search spaces: every method, every bad input with a precise message, and sampling properties."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.searchspace import METHODS, SearchSpaceError, Uniform
from service.core.space_json import parse_search_space

EVERY_METHOD: dict[str, Any] = {
    "cat": {"method": "categorical", "dimension": {"categories": ["a", 1, [2, 3], {"k": 4}], "grid_search": 0}},
    "u": {"method": "uniform", "dimension": {"low": -1.5, "high": 2.5}},
    "ui": {"method": "uniformint", "dimension": {"low": 1, "high": 30}},
    "qu": {"method": "quniform", "dimension": {"low": 16, "high": 256, "q": 16}},
    "lu": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1, "base": 10}},
    "qlu": {"method": "qloguniform", "dimension": {"low": 1, "high": 1000, "q": 5}},
    "n": {"method": "normal", "dimension": {"mu": 0, "sigma": 2}},
    "qn": {"method": "qnormal", "dimension": {"mu": 10, "sigma": 3, "q": 0.5}},
    "ln": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 1}},
    "qln": {"method": "qlognormal", "dimension": {"mu": 2, "sigma": 0.5, "q": 1, "base": 2}},
    "f": {"method": "fixed", "dimension": {"value": "adam"}},
}


def issues(raw: Any) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(raw)
    return [(i.parameter, i.key, i.message) for i in info.value.issues]


def test_all_eleven_methods_parse_and_round_trip() -> None:
    space = parse_search_space(EVERY_METHOD)
    assert [d.json_method for d in space] == [v["method"] for v in EVERY_METHOD.values()]
    assert sorted(d.json_method for d in space) == sorted(METHODS)
    again = parse_search_space(space.to_json())
    assert again == space


def test_conventions_defaults_and_integer_quantisation() -> None:
    space = parse_search_space(EVERY_METHOD)
    lu, ln, qu = space["lu"], space["ln"], space["qu"]
    assert lu.base == 10  # type: ignore[attr-defined]
    assert ln.base == math.e  # type: ignore[attr-defined]
    rng = random.Random(1)
    values = [qu.sample(rng) for _ in range(200)]
    assert all(isinstance(v, int) and v % 16 == 0 and 16 <= v <= 256 for v in values)
    assert space["ui"].contains(1) and space["ui"].contains(30), "uniformint includes both ends"
    assert not space["ui"].contains(31)
    qn = space["qn"]
    assert all(abs(v * 2 - round(v * 2)) < 1e-9 for v in (qn.sample(rng) for _ in range(100)))


def test_lognormal_draws_are_base_to_a_normal() -> None:
    dim = parse_search_space({"x": {"method": "lognormal", "dimension": {"mu": 1.0, "sigma": 0.5, "base": 10}}})["x"]
    rng = random.Random(3)
    logs = [math.log10(dim.sample(rng)) for _ in range(4000)]
    mean = sum(logs) / len(logs)
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
    assert abs(mean - 1.0) < 0.05 and abs(std - 0.5) < 0.05


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"lr": {"method": "loguniform", "dimension": {"low": 0, "high": 1}}}, ("lr", "low", "greater than 0")),
        ({"lr": {"method": "uniform", "dimension": {"low": 2, "high": 1}}}, ("lr", "high", "greater than low")),
        ({"lr": {"method": "uniform", "dimension": {"low": "a", "high": 1}}}, ("lr", "low", "must be a number")),
        ({"n": {"method": "uniformint", "dimension": {"low": 1.5, "high": 4}}}, ("n", "low", "must be an integer")),
        ({"q": {"method": "quniform", "dimension": {"low": 0, "high": 1}}}, ("q", "q", "is required by method")),
        ({"q": {"method": "quniform", "dimension": {"low": 0, "high": 1, "q": 0}}}, ("q", "q", "greater than 0")),
        ({"s": {"method": "normal", "dimension": {"mu": 0, "sigma": -1}}}, ("s", "sigma", "greater than 0")),
        ({"b": {"method": "loguniform", "dimension": {"low": 1, "high": 9, "base": 1}}}, ("b", "base", "other than 1")),
        ({"c": {"method": "categorical", "dimension": {"categories": []}}}, ("c", "categories", "non-empty list")),
        ({"c": {"method": "categorical", "dimension": {"categories": [1, 1]}}}, ("c", "categories", "twice")),
        (
            {"c": {"method": "categorical", "dimension": {"categories": [1], "grid_search": 2}}},
            ("c", "grid_search", "0 or 1"),
        ),
        ({"x": {"method": "uniform", "dimension": {"low": 0, "hi": 1}}}, ("x", "hi", "did you mean 'high'")),
        ({"x": {"method": "unifrom", "dimension": {}}}, ("x", "method", "did you mean 'uniform'")),
        ({"x": {"method": "loguniformint", "dimension": {"low": 1, "high": 9}}}, ("x", "method", "not part of")),
        ({"x": {"dimension": {"low": 1, "high": 9}}}, ("x", "method", "is missing")),
        ({"x": {"method": "uniform", "dimensions": {}}}, ("x", "dimensions", "did you mean 'dimension'")),
        ({"x": {"method": "fixed", "dimension": 3}}, ("x", "dimension", "must be an object")),
        ({"x": [1, 2]}, ("x", None, "must be an object")),
        ({"x": {"method": "uniform", "dimension": {"low": 0, "high": float("inf")}}}, ("x", "high", "finite")),
    ],
)
def test_each_bad_input_names_parameter_key_and_rule(raw: Any, expected: tuple[str, str | None, str]) -> None:
    found = issues(raw)
    assert any(p == expected[0] and k == expected[1] and expected[2] in m for p, k, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "a": {"method": "uniform", "dimension": {"low": 1, "high": 0}},
        "b": {"method": "nope", "dimension": {}},
        "ok": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
    }
    assert {p for p, _, _ in issues(raw)} == {"a", "b"}


@pytest.mark.parametrize("raw", [[], "x", 3, None, {}])
def test_the_space_itself_must_be_a_non_empty_object(raw: Any) -> None:
    found = issues(raw)
    assert found[0][0] is None and ("JSON object" in found[0][2] or "no parameter" in found[0][2])


# -- property tests ------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def dimensions(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS))
    if method == "categorical":
        cats = draw(st.lists(st.one_of(st.integers(), st.text(max_size=5), st.booleans()), min_size=1, max_size=6))
        cats = list({repr(c): c for c in cats}.values())
        return {"method": method, "dimension": {"categories": cats}}
    if method == "fixed":
        return {"method": method, "dimension": {"value": draw(st.one_of(st.integers(), st.text(max_size=4)))}}
    if method == "uniformint":
        low = draw(st.integers(-1000, 1000))
        return {"method": method, "dimension": {"low": low, "high": low + draw(st.integers(1, 1000))}}
    if method in ("uniform", "quniform"):
        low = draw(finite)
        high = low + draw(st.floats(min_value=1e-3, max_value=1e6))
        dim: dict[str, Any] = {"low": low, "high": high}
        if method == "quniform":
            dim["q"] = draw(st.floats(min_value=1e-3, max_value=max(1e-3, (high - low))))
        return {"method": method, "dimension": dim}
    if method in ("loguniform", "qloguniform"):
        low = draw(st.floats(min_value=1e-8, max_value=1e3))
        dim = {"low": low, "high": low * draw(st.floats(min_value=1.01, max_value=1e4))}
        if method == "qloguniform":
            dim["q"] = draw(st.floats(min_value=1e-4, max_value=10))
        return {"method": method, "dimension": dim}
    dim = {"mu": draw(st.floats(-5, 5)), "sigma": draw(st.floats(min_value=1e-3, max_value=3))}
    if method.startswith("q"):
        dim["q"] = draw(st.floats(min_value=1e-3, max_value=5))
    return {"method": method, "dimension": dim}


spaces = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), dimensions(), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(raw=spaces, seed=st.integers(0, 2**31))
def test_sampled_points_lie_in_the_space(raw: dict[str, Any], seed: int) -> None:
    space = parse_search_space(raw)
    rng = random.Random(seed)
    for _ in range(20):
        point = space.sample(rng)
        assert space.contains(point), (raw, point)


@settings(max_examples=100, deadline=None)
@given(raw=spaces)
def test_json_round_trip_preserves_the_space(raw: dict[str, Any]) -> None:
    space = parse_search_space(raw)
    assert parse_search_space(space.to_json()) == space


def test_quantised_uniform_values_enumerate_the_grid() -> None:
    dim = Uniform("x", q=0.1, low=0.0, high=0.5)
    assert list(dim.values()) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
