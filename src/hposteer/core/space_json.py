"""Parsing and validating hpogrid's search-space JSON (docs/search-space.md).

Every problem is collected, not just the first: each names the parameter, the key and
what is allowed, with a "did you mean" for near-misses.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from hposteer.core.searchspace import (
    DIMENSION_KEYS,
    METHODS,
    Categorical,
    Dimension,
    Fixed,
    LogNormal,
    LogUniform,
    Normal,
    SearchSpace,
    SearchSpaceError,
    SpaceIssue,
    Uniform,
    UniformInt,
    canonical,
)

Dim = Mapping[str, Any]


class _Collector:
    def __init__(self) -> None:
        self.issues: list[SpaceIssue] = []
        self.warnings: list[str] = []

    def add(self, parameter: str | None, key: str | None, message: str) -> None:
        self.issues.append(SpaceIssue(parameter, key, message))


def _closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(out: _Collector, name: str, dim: Dim, key: str) -> float | None:
    value = dim[key]
    if not _is_number(value):
        out.add(name, key, f"must be a number, got {json.dumps(value)}")
        return None
    if not math.isfinite(value):
        out.add(name, key, f"must be finite, got {value}")
        return None
    return float(value) if isinstance(value, float) else value


def _positive(out: _Collector, name: str, dim: Dim, key: str) -> float | None:
    value = _number(out, name, dim, key)
    if value is not None and value <= 0:
        out.add(name, key, f"must be greater than 0, got {value}")
        return None
    return value


def _base(out: _Collector, name: str, dim: Dim, default: float) -> float | None:
    if "base" not in dim:
        return default
    value = _positive(out, name, dim, "base")
    if value is not None and value == 1:
        out.add(name, "base", "must not be 1 (a logarithm needs a base other than 1)")
        return None
    return value


def _bounds(out: _Collector, name: str, dim: Dim) -> tuple[float, float] | None:
    low = _number(out, name, dim, "low")
    high = _number(out, name, dim, "high")
    if low is None or high is None:
        return None
    if not low < high:
        out.add(name, "high", f"must be greater than low ({low}), got {high}")
        return None
    return low, high


def _q(out: _Collector, name: str, dim: Dim) -> tuple[bool, float | None]:
    """(ok, q): q is optional in this helper; the key table says which methods require it."""
    if "q" not in dim:
        return True, None
    q = _positive(out, name, dim, "q")
    return q is not None, q


def _categorical(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    categories = dim["categories"]
    if not isinstance(categories, list) or not categories:
        out.add(name, "categories", f"must be a non-empty list, got {json.dumps(categories)}")
        return None
    first: dict[str, Any] = {}
    for category in categories:
        first.setdefault(canonical(category), category)
    distinct = list(first.values())  # each value once, where it first occurs
    if len(distinct) != len(categories):
        out.warnings.append(_repetition_warning(name, categories, distinct))
    grid_search = dim.get("grid_search", 0)
    if isinstance(grid_search, bool) or grid_search not in (0, 1):
        out.add(name, "grid_search", f"must be 0 or 1, got {json.dumps(grid_search)}")
        return None
    return Categorical(name, tuple(distinct), int(grid_search))


def _repetition_warning(name: str, categories: list[Any], distinct: list[Any]) -> str:
    """PanDA passes repeated categories on to its libraries; here each value counts once, for every optimiser."""
    keys = [canonical(c) for c in categories]
    repeated = [c for c in distinct if keys.count(canonical(c)) > 1]
    first = repeated[0]
    return (
        f"parameter {name!r}: categories {json.dumps(categories)} repeat {', '.join(json.dumps(r) for r in repeated)}; "
        f"each value counts once, so every optimiser (grid, random, tpe, nevergrad, skopt...) chooses among the "
        f"{len(distinct)} distinct values {json.dumps(distinct)} with equal weight: random search draws "
        f"{json.dumps(first)} with probability 1/{len(distinct)} (not {keys.count(canonical(first))}/{len(keys)}), "
        "TPE and the others start from that uniform prior, and grid search evaluates each value once. "
        "List each value once to silence this warning"
    )


def _fixed(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    return Fixed(name, dim["value"])


def _uniformint(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    ints = []
    for key in ("low", "high"):
        value = dim[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            out.add(name, key, f"must be an integer for uniformint, got {json.dumps(dim[key])}")
            return None
        ints.append(value)
    if not ints[0] < ints[1]:
        out.add(name, "high", f"must be greater than low ({ints[0]}), got {ints[1]}")
        return None
    return UniformInt(name, ints[0], ints[1])


def _uniform(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    ok, q = _q(out, name, dim)
    bounds = _bounds(out, name, dim)
    if not ok or bounds is None:
        return None
    return Uniform(name, q=q, low=bounds[0], high=bounds[1])


def _loguniform(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    ok, q = _q(out, name, dim)
    bounds = _bounds(out, name, dim)
    base = _base(out, name, dim, 10.0)
    if not ok or bounds is None or base is None:
        return None
    if bounds[0] <= 0:
        out.add(name, "low", f"must be greater than 0 for a log scale, got {bounds[0]}")
        return None
    return LogUniform(name, q=q, low=bounds[0], high=bounds[1], base=base)


def _normal(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    ok, q = _q(out, name, dim)
    mu = _number(out, name, dim, "mu")
    sigma = _positive(out, name, dim, "sigma")
    if not ok or mu is None or sigma is None:
        return None
    return Normal(name, q=q, mu=mu, sigma=sigma)


def _lognormal(out: _Collector, name: str, dim: Dim) -> Dimension | None:
    ok, q = _q(out, name, dim)
    mu = _number(out, name, dim, "mu")
    sigma = _positive(out, name, dim, "sigma")
    base = _base(out, name, dim, math.e)
    if not ok or mu is None or sigma is None or base is None:
        return None
    # base ** (mu ± 10 sigma) must stay a finite, non-zero float, or draws overflow.
    if (abs(mu) + 10 * sigma) * abs(math.log(base)) > _MAX_LOG:
        out.add(
            name,
            "sigma",
            f"base ** normal(mu={mu}, sigma={sigma}) with base {base} leaves the floating-point range; "
            "mu and sigma are exponents: use smaller values",
        )
        return None
    return LogNormal(name, q=q, mu=mu, sigma=sigma, base=base)


_MAX_LOG = 700.0  # math.exp(709.8) is the largest float


_PARSERS: dict[str, Callable[[_Collector, str, Dim], Dimension | None]] = {
    "categorical": _categorical,
    "fixed": _fixed,
    "uniformint": _uniformint,
    "uniform": _uniform,
    "quniform": _uniform,
    "loguniform": _loguniform,
    "qloguniform": _loguniform,
    "normal": _normal,
    "qnormal": _normal,
    "lognormal": _lognormal,
    "qlognormal": _lognormal,
}


def _method(out: _Collector, name: str, entry: Mapping[str, Any]) -> str | None:
    method = entry.get("method")
    if method is None:
        out.add(name, "method", "is missing; allowed: " + ", ".join(METHODS))
        return None
    if method == "loguniformint":
        out.add(
            name, "method", "'loguniformint' is not part of the JSON format; use 'qloguniform' with q=1 or 'uniformint'"
        )
        return None
    if method not in METHODS:
        hint = _closest(method, METHODS) if isinstance(method, str) else ""
        out.add(name, "method", f"unknown method {json.dumps(method)}; allowed: {', '.join(METHODS)}{hint}")
        return None
    return str(method)


def _entry(out: _Collector, name: str, entry: object) -> Dimension | None:
    if not name.strip():
        out.add(name, None, "a parameter name must not be empty")
        return None
    if not isinstance(entry, dict):
        out.add(name, None, 'must be an object {"method": ..., "dimension": {...}}')
        return None
    for key in entry:
        if key not in ("method", "dimension"):
            out.add(name, key, "unknown key; allowed: 'method', 'dimension'" + _closest(key, ["dimension"]))
    method = _method(out, name, entry)
    if method is None:
        return None
    dim = entry.get("dimension")
    if not isinstance(dim, dict):
        out.add(name, "dimension", f"must be an object with the keys of {method!r}")
        return None
    required, optional = DIMENSION_KEYS[method]
    allowed = ", ".join(required + optional)
    missing = [k for k in required if k not in dim]
    unknown = [k for k in dim if k not in required + optional]
    for key in missing:
        out.add(name, key, f"is required by method {method!r} (keys: {allowed})")
    for key in unknown:
        out.add(
            name, key, f"is not a key of method {method!r}; allowed: {allowed}" + _closest(key, required + optional)
        )
    if missing or unknown:
        return None
    return _PARSERS[method](out, name, dim)


def parse_search_space(raw: object) -> SearchSpace:
    """Validate hpogrid JSON and return the typed space; raise SearchSpaceError listing every issue."""
    if not isinstance(raw, dict):
        raise SearchSpaceError(
            [SpaceIssue(None, None, f"a search space must be a JSON object, got {type(raw).__name__}")]
        )
    if not raw:
        raise SearchSpaceError([SpaceIssue(None, None, "the search space defines no parameter")])
    out = _Collector()
    dimensions = [d for name, entry in raw.items() if (d := _entry(out, name, entry)) is not None]
    if out.issues:
        raise SearchSpaceError(out.issues)
    return SearchSpace(tuple(dimensions), tuple(out.warnings))
