"""Search spaces: every method, every bad input with a precise message, and sampling properties."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hposteer.core.searchspace import METHODS, Categorical, SearchSpaceError, Uniform, canonical
from hposteer.core.space_json import parse_search_space

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


@pytest.mark.parametrize("name", list(EVERY_METHOD))
def test_each_method_parses_alone(name: str) -> None:
    space = parse_search_space({name: EVERY_METHOD[name]})
    (dim,) = space
    assert dim.name == name and dim.json_method == EVERY_METHOD[name]["method"]
    assert dim.contains(dim.sample(random.Random(0)))
    assert parse_search_space({name: dim.to_json()}) == space


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
        # low >= high, for every bounded method
        ({"x": {"method": "uniform", "dimension": {"low": 1, "high": 1}}}, ("x", "high", "greater than low (1)")),
        ({"x": {"method": "uniformint", "dimension": {"low": 3, "high": 3}}}, ("x", "high", "greater than low")),
        ({"x": {"method": "quniform", "dimension": {"low": 5, "high": 1, "q": 1}}}, ("x", "high", "greater than low")),
        ({"x": {"method": "loguniform", "dimension": {"low": 2, "high": 1}}}, ("x", "high", "greater than low")),
        # wrong types
        ({"x": {"method": "quniform", "dimension": {"low": 0, "high": 1, "q": "1"}}}, ("x", "q", "must be a number")),
        ({"x": {"method": "normal", "dimension": {"mu": [0], "sigma": 1}}}, ("x", "mu", "must be a number")),
        ({"x": {"method": "normal", "dimension": {"mu": 0, "sigma": None}}}, ("x", "sigma", "must be a number")),
        ({"x": {"method": "uniform", "dimension": {"low": True, "high": 2}}}, ("x", "low", "must be a number")),
        ({"x": {"method": "uniformint", "dimension": {"low": 0, "high": "9"}}}, ("x", "high", "must be an integer")),
        ({"x": {"method": "loguniform", "dimension": {"low": 1, "high": 9, "base": "e"}}}, ("x", "base", "a number")),
        ({"c": {"method": "categorical", "dimension": {"categories": "abc"}}}, ("c", "categories", "non-empty list")),
        (
            {"c": {"method": "categorical", "dimension": {"categories": [1], "grid_search": True}}},
            ("c", "grid_search", "0 or 1"),
        ),
        ({"x": {"method": 3, "dimension": {}}}, ("x", "method", "allowed: categorical, uniform")),
        # non-positive q, sigma, base; base 1; log scale starting at or below 0
        ({"x": {"method": "qnormal", "dimension": {"mu": 0, "sigma": 1, "q": -1}}}, ("x", "q", "greater than 0")),
        ({"x": {"method": "qloguniform", "dimension": {"low": 1, "high": 9, "q": 0}}}, ("x", "q", "greater than 0")),
        ({"x": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 0}}}, ("x", "sigma", "greater than 0")),
        (
            {"x": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 1, "base": 0}}},
            ("x", "base", "greater than 0"),
        ),
        ({"x": {"method": "loguniform", "dimension": {"low": 1, "high": 9, "base": -2}}}, ("x", "base", "than 0")),
        ({"x": {"method": "qlognormal", "dimension": {"mu": 0, "sigma": 1, "q": 1, "base": 1}}}, ("x", "base", "1")),
        ({"x": {"method": "loguniform", "dimension": {"low": -1, "high": 1}}}, ("x", "low", "for a log scale")),
        ({"x": {"method": "qloguniform", "dimension": {"low": 0, "high": 9, "q": 1}}}, ("x", "low", "for a log scale")),
        ({"x": {"method": "lognormal", "dimension": {"mu": 300, "sigma": 50}}}, ("x", "sigma", "floating-point")),
        # missing and unknown keys say which keys the method takes
        ({"x": {"method": "normal", "dimension": {"mu": 0}}}, ("x", "sigma", "(keys: mu, sigma)")),
        ({"x": {"method": "fixed", "dimension": {}}}, ("x", "value", "is required by method 'fixed'")),
        ({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1, "q": 1}}}, ("x", "q", "allowed: low, high")),
        ({"x": {"method": "normal", "dimension": {"mu": 0, "sigma": 1, "sigmaa": 1}}}, ("x", "sigmaa", "'sigma'?")),
        ({"x": {"method": "uniformint", "dimension": {"low": 0, "high": 1}, "q": 1}}, ("x", "q", "allowed: 'method'")),
        (
            {"x": {"method": "categorical", "dimension": {"categories": [1], "gridsearch": 1}}},
            ("x", "gridsearch", "'grid_search'?"),
        ),
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
        first = draw(st.integers(-1000, 1000))
        return {"method": method, "dimension": {"low": first, "high": first + draw(st.integers(1, 1000))}}
    if method in ("uniform", "quniform"):
        low: float = draw(finite)
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
    assert dim.cardinality == 6 and dim.value_at(3) == 0.3


def test_categories_compare_as_json() -> None:
    dim = parse_search_space(
        {"c": {"method": "categorical", "dimension": {"categories": [1, 1.0, True, [1], {"a": 1}]}}}
    )
    c = dim["c"]
    assert isinstance(c, Categorical)
    assert [c.index_of(v) for v in (1, 1.0, True, [1], {"a": 1}, "1", None)] == [0, 1, 2, 3, 4, None, None]


def test_points_outside_the_space_are_not_contained() -> None:
    space = parse_search_space(EVERY_METHOD)
    good = space.sample(random.Random(0))
    assert space.contains(good)
    for name, bad in [
        ("u", 2.6),
        ("ui", 2.5),
        ("ui", True),
        ("qu", 24),
        ("lu", 0.5),
        ("qlu", 3),
        ("qn", 10.25),
        ("ln", -1.0),
        ("cat", "b"),
        ("f", "sgd"),
        ("n", math.nan),
        ("u", "1"),
    ]:
        assert not space.contains({**good, name: bad}), (name, bad)
    assert not space.contains({k: v for k, v in good.items() if k != "f"}), "a missing parameter"
    assert not space.contains({**good, "extra": 1}), "an unknown parameter"


def test_a_finite_space_is_counted_and_indexed_without_enumeration() -> None:
    raw = {k: EVERY_METHOD[k] for k in ("cat", "ui", "qu", "f")}
    space = parse_search_space(raw)
    dims = list(space)
    assert space.cardinality == 4 * 30 * 16 * 1
    product = [dict(zip(space.names, combo, strict=True)) for combo in itertools.product(*(d.values() for d in dims))]
    assert [space.point_at(i) for i in range(len(product))] == product
    with pytest.raises(IndexError):
        space.point_at(len(product))
    assert parse_search_space(EVERY_METHOD).cardinality is None
    huge = Uniform("h", q=1e-3, low=0.0, high=1e6)
    assert huge.cardinality == 10**9 + 1 and huge.value_at(10**9) == 1e6


@settings(max_examples=100, deadline=None)
@given(raw=dimensions(), seed=st.integers(0, 2**31))
def test_finite_dimensions_sample_among_their_values(raw: dict[str, Any], seed: int) -> None:
    dim = parse_search_space({"p": raw})["p"]
    size = dim.cardinality
    if size is None:
        with pytest.raises(TypeError, match="no finite set of values"):
            dim.value_at(0)
        return
    assert dim.is_finite and size >= 1
    if size > 2000:
        return
    values = {canonical(v) for v in dim.values()}
    assert len(values) == size, "values are distinct"
    assert all(dim.contains(v) for v in dim.values())
    rng = random.Random(seed)
    assert all(canonical(dim.sample(rng)) in values for _ in range(20))


def test_repeated_categories_count_once_with_a_warning() -> None:
    """PanDA accepts ``[1, 1, 2]`` (its phpo guide's example); every optimiser here sees ``[1, 2]``."""
    space = parse_search_space(
        {
            "d": {"method": "categorical", "dimension": {"categories": [1, "a", 1, 1.0, "a", 2]}},
            "e": {"method": "categorical", "dimension": {"categories": [True, False]}},
        }
    )
    assert space["d"] == Categorical("d", (1, "a", 1.0, 2)), "first occurrences, in order; 1 and 1.0 differ"
    assert space == parse_search_space(
        {
            "d": {"method": "categorical", "dimension": {"categories": [1, "a", 1.0, 2]}},
            "e": {"method": "categorical", "dimension": {"categories": [True, False]}},
        }
    )
    (warning,) = space.warnings
    assert warning.startswith('parameter \'d\': categories [1, "a", 1, 1.0, "a", 2] repeat 1, "a";')
    assert "probability 1/4 (not 2/6)" in warning and "grid search evaluates each value once" in warning
    rng = random.Random(5)
    draws = [space["d"].sample(rng) for _ in range(4000)]
    ones = sum(canonical(d) == "1" for d in draws) / 4000
    assert abs(ones - 0.25) < 0.03, "random search draws a repeated value like any other"
