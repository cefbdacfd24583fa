"""Search spaces in hpogrid's JSON format (panda_protocol.md §7.2).

A space is ``{"<name>": {"method": "<method>", "dimension": {<keys>}}, ...}``. This module
parses and validates it into typed dimensions, samples from them, and checks membership.
It knows nothing about optimiser libraries: adapters map these dimensions onto their own
parameter types (service.steering) and say which ones they can honour.

Conventions (the same as hpogrid's adapters, written down here once):

* ``uniformint`` includes both ends, as every hpogrid backend does.
* ``loguniform``/``qloguniform`` take ``low``/``high`` as the values themselves (> 0), not
  their logarithms; ``base`` (default 10) does not change the distribution, which is
  log-uniform between the two values whatever the base.
* ``lognormal``/``qlognormal`` draw ``base ** normal(mu, sigma)`` (default base e), so
  ``mu``/``sigma`` live in log space, as in hyperopt.
* q-variants return ``round(x / q) * q`` of the unquantised draw ``x``; when ``q`` and the
  bounds are integers the values are ints.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

JsonValue = Any
Params = dict[str, JsonValue]

METHODS: tuple[str, ...] = (
    "categorical",
    "uniform",
    "uniformint",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
    "fixed",
)

# method -> (required keys, optional keys)
DIMENSION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "categorical": (("categories",), ("grid_search",)),
    "uniform": (("low", "high"), ()),
    "uniformint": (("low", "high"), ()),
    "quniform": (("low", "high", "q"), ()),
    "loguniform": (("low", "high"), ("base",)),
    "qloguniform": (("low", "high", "q"), ("base",)),
    "normal": (("mu", "sigma"), ()),
    "qnormal": (("mu", "sigma", "q"), ()),
    "lognormal": (("mu", "sigma"), ("base",)),
    "qlognormal": (("mu", "sigma", "q"), ("base",)),
    "fixed": (("value",), ()),
}


@dataclass(frozen=True)
class SpaceIssue:
    """One thing wrong with a search space: where it is and what is allowed."""

    parameter: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.parameter is not None:
            where.append(f"parameter {self.parameter!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SearchSpaceError(ValueError):
    """The search space is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[SpaceIssue]):
        self.issues = issues
        super().__init__("invalid search space: " + "; ".join(str(i) for i in issues))


def canonical(value: JsonValue) -> str:
    """A stable text key for a JSON value (used to compare categories and whole points)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimals(q: float) -> int:
    """Decimal places needed to print multiples of q without float noise (0.1 -> 1)."""
    text = repr(float(q))
    if "e" in text:
        mantissa, exp = text.split("e")
        digits = len(mantissa.split(".")[1].rstrip("0")) if "." in mantissa else 0
        return max(0, digits - int(exp))
    return len(text.split(".")[1].rstrip("0"))


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter. Subclasses hold the method's keys."""

    name: str
    method: ClassVar[str] = ""

    def sample(self, rng: random.Random) -> JsonValue:
        raise NotImplementedError

    def contains(self, value: JsonValue) -> bool:
        raise NotImplementedError

    @property
    def json_method(self) -> str:
        """The method name as written in the JSON file (``quniform`` rather than ``uniform``)."""
        return self.method

    @property
    def is_finite(self) -> bool:
        """True when the dimension has a finite, enumerable set of values."""
        return False

    def values(self) -> Iterator[JsonValue]:
        """Every value of a finite dimension, in a stable order."""
        raise TypeError(f"parameter {self.name!r} ({self.method}) has no finite set of values")

    def to_json(self) -> dict[str, JsonValue]:
        raise NotImplementedError


@dataclass(frozen=True)
class Categorical(Dimension):
    categories: tuple[JsonValue, ...] = ()
    grid_search: int = 0
    method: ClassVar[str] = "categorical"

    def sample(self, rng: random.Random) -> JsonValue:
        return self.categories[rng.randrange(len(self.categories))]

    def index_of(self, value: JsonValue) -> int | None:
        key = canonical(value)
        for i, category in enumerate(self.categories):
            if canonical(category) == key:
                return i
        return None

    def contains(self, value: JsonValue) -> bool:
        return self.index_of(value) is not None

    @property
    def is_finite(self) -> bool:
        return True

    def values(self) -> Iterator[JsonValue]:
        return iter(self.categories)

    def to_json(self) -> dict[str, JsonValue]:
        dim: dict[str, JsonValue] = {"categories": list(self.categories)}
        if self.grid_search:
            dim["grid_search"] = self.grid_search
        return {"method": self.method, "dimension": dim}


@dataclass(frozen=True)
class Fixed(Dimension):
    value: JsonValue = None
    method: ClassVar[str] = "fixed"

    def sample(self, rng: random.Random) -> JsonValue:
        return self.value

    def contains(self, value: JsonValue) -> bool:
        return canonical(value) == canonical(self.value)

    @property
    def is_finite(self) -> bool:
        return True

    def values(self) -> Iterator[JsonValue]:
        return iter((self.value,))

    def to_json(self) -> dict[str, JsonValue]:
        return {"method": self.method, "dimension": {"value": self.value}}


@dataclass(frozen=True)
class UniformInt(Dimension):
    low: int = 0
    high: int = 1
    method: ClassVar[str] = "uniformint"

    def sample(self, rng: random.Random) -> JsonValue:
        return rng.randint(self.low, self.high)

    def contains(self, value: JsonValue) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    @property
    def is_finite(self) -> bool:
        return True

    def values(self) -> Iterator[JsonValue]:
        return iter(range(self.low, self.high + 1))

    def to_json(self) -> dict[str, JsonValue]:
        return {"method": self.method, "dimension": {"low": self.low, "high": self.high}}


@dataclass(frozen=True)
class Continuous(Dimension):
    """Shared behaviour of the real-valued methods and their q-variants."""

    q: float | None = None

    @property
    def json_method(self) -> str:
        return f"q{self.method}" if self.q is not None else self.method

    @property
    def integral(self) -> bool:
        """q-variants with integer q (and integer bounds, where there are bounds) give ints."""
        return self.q is not None and float(self.q).is_integer() and self._integral_bounds()

    def _integral_bounds(self) -> bool:
        return True

    def quantize(self, x: float) -> JsonValue:
        if self.q is None:
            return float(x)
        steps = round(x / self.q)
        if self.integral:
            return int(steps * int(self.q))
        return round(steps * self.q, _decimals(self.q))

    def draw(self, rng: random.Random) -> float:
        """An unquantised draw from the base distribution."""
        raise NotImplementedError

    def sample(self, rng: random.Random) -> JsonValue:
        return self.quantize(self.draw(rng))

    def _on_grid(self, value: float) -> bool:
        if self.q is None:
            return True
        steps = value / self.q
        return math.isclose(steps, round(steps), rel_tol=0, abs_tol=1e-6)

    def _number(self, value: JsonValue) -> float | None:
        if not _is_number(value) or not math.isfinite(value):
            return None
        if self.integral and not isinstance(value, int):
            return None
        return float(value)


@dataclass(frozen=True)
class Uniform(Continuous):
    low: float = 0.0
    high: float = 1.0
    method: ClassVar[str] = "uniform"

    def _integral_bounds(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer()

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value a draw can take (after quantisation)."""
        if self.q is None:
            return (self.low, self.high)
        return (round(self.low / self.q) * self.q, round(self.high / self.q) * self.q)

    def contains(self, value: JsonValue) -> bool:
        number = self._number(value)
        if number is None:
            return False
        lo, hi = self.bounds()
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        return lo - tol <= number <= hi + tol and self._on_grid(number)

    @property
    def is_finite(self) -> bool:
        return self.q is not None

    def values(self) -> Iterator[JsonValue]:
        if self.q is None:
            return super().values()
        first = round(self.low / self.q)
        last = round(self.high / self.q)
        return (self.quantize(step * self.q) for step in range(first, last + 1))

    def to_json(self) -> dict[str, JsonValue]:
        dim: dict[str, JsonValue] = {"low": self.low, "high": self.high}
        if self.q is not None:
            dim["q"] = self.q
        return {"method": self.json_method, "dimension": dim}


@dataclass(frozen=True)
class LogUniform(Continuous):
    low: float = 1e-3
    high: float = 1.0
    base: float = 10.0
    method: ClassVar[str] = "loguniform"

    def _integral_bounds(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer()

    def draw(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))

    def contains(self, value: JsonValue) -> bool:
        number = self._number(value)
        if number is None:
            return False
        if self.q is None:
            tol = 1e-9 * self.high
            return self.low - tol <= number <= self.high + tol
        lo = round(self.low / self.q) * self.q
        hi = round(self.high / self.q) * self.q
        return lo - 1e-9 * hi <= number <= hi + 1e-9 * hi and self._on_grid(number)

    def to_json(self) -> dict[str, JsonValue]:
        dim: dict[str, JsonValue] = {"low": self.low, "high": self.high, "base": self.base}
        if self.q is not None:
            dim["q"] = self.q
        return {"method": self.json_method, "dimension": dim}


@dataclass(frozen=True)
class Normal(Continuous):
    mu: float = 0.0
    sigma: float = 1.0
    method: ClassVar[str] = "normal"

    def draw(self, rng: random.Random) -> float:
        return rng.gauss(self.mu, self.sigma)

    def contains(self, value: JsonValue) -> bool:
        number = self._number(value)
        return number is not None and self._on_grid(number)

    def to_json(self) -> dict[str, JsonValue]:
        dim: dict[str, JsonValue] = {"mu": self.mu, "sigma": self.sigma}
        if self.q is not None:
            dim["q"] = self.q
        return {"method": self.json_method, "dimension": dim}


@dataclass(frozen=True)
class LogNormal(Continuous):
    mu: float = 0.0
    sigma: float = 1.0
    base: float = math.e
    method: ClassVar[str] = "lognormal"

    def draw(self, rng: random.Random) -> float:
        return float(self.base ** rng.gauss(self.mu, self.sigma))

    def contains(self, value: JsonValue) -> bool:
        number = self._number(value)
        if number is None:
            return False
        # A q-variant may round a tiny draw down to 0; otherwise values are positive.
        return (number > 0 or (self.q is not None and number == 0)) and self._on_grid(number)

    def to_json(self) -> dict[str, JsonValue]:
        dim: dict[str, JsonValue] = {"mu": self.mu, "sigma": self.sigma, "base": self.base}
        if self.q is not None:
            dim["q"] = self.q
        return {"method": self.json_method, "dimension": dim}


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of dimensions; iteration order is the order in the JSON file."""

    dimensions: tuple[Dimension, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def __getitem__(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    def sample(self, rng: random.Random) -> Params:
        return {d.name: d.sample(rng) for d in self.dimensions}

    def contains(self, params: Mapping[str, JsonValue]) -> bool:
        if set(params) != set(self.names):
            return False
        return all(d.contains(params[d.name]) for d in self.dimensions)

    def point_key(self, params: Mapping[str, JsonValue]) -> str:
        """Identity of a point for de-duplication (grid, random over finite spaces)."""
        return canonical({name: params.get(name) for name in self.names})

    def to_json(self) -> dict[str, JsonValue]:
        return {d.name: d.to_json() for d in self.dimensions}


# ---------------------------------------------------------------------------------------------
# Parsing and validation


class _Collector:
    def __init__(self) -> None:
        self.issues: list[SpaceIssue] = []

    def add(self, parameter: str | None, key: str | None, message: str) -> None:
        self.issues.append(SpaceIssue(parameter, key, message))


def _closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _number(out: _Collector, name: str, dim: Mapping[str, Any], key: str) -> float | None:
    value = dim[key]
    if not _is_number(value):
        out.add(name, key, f"must be a number, got {json.dumps(value)}")
        return None
    if not math.isfinite(value):
        out.add(name, key, f"must be finite, got {value}")
        return None
    return value  # type: ignore[no-any-return]


def _positive(out: _Collector, name: str, dim: Mapping[str, Any], key: str) -> float | None:
    value = _number(out, name, dim, key)
    if value is not None and value <= 0:
        out.add(name, key, f"must be greater than 0, got {value}")
        return None
    return value


def _base(out: _Collector, name: str, dim: Mapping[str, Any], default: float) -> float | None:
    if "base" not in dim:
        return default
    value = _positive(out, name, dim, "base")
    if value is not None and value == 1:
        out.add(name, "base", "must not be 1 (a logarithm needs a base other than 1)")
        return None
    return value


def _bounds(out: _Collector, name: str, dim: Mapping[str, Any]) -> tuple[float, float] | None:
    low = _number(out, name, dim, "low")
    high = _number(out, name, dim, "high")
    if low is None or high is None:
        return None
    if not low < high:
        out.add(name, "high", f"must be greater than low ({low}), got {high}")
        return None
    return low, high


def _parse_dimension(out: _Collector, name: str, method: str, dim: Mapping[str, Any]) -> Dimension | None:
    q: float | None = None
    if "q" in dim:
        q = _positive(out, name, dim, "q")
        if q is None:
            return None
    if method == "categorical":
        categories = dim["categories"]
        if not isinstance(categories, list) or not categories:
            out.add(name, "categories", f"must be a non-empty list, got {json.dumps(categories)}")
            return None
        if len({canonical(c) for c in categories}) != len(categories):
            out.add(name, "categories", "must not contain the same value twice")
            return None
        grid_search = dim.get("grid_search", 0)
        if grid_search not in (0, 1) or isinstance(grid_search, float):
            out.add(name, "grid_search", f"must be 0 or 1, got {json.dumps(grid_search)}")
            return None
        return Categorical(name, tuple(categories), int(grid_search))
    if method == "fixed":
        return Fixed(name, dim["value"])
    if method == "uniformint":
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
    if method in ("uniform", "quniform"):
        bounds = _bounds(out, name, dim)
        if bounds is None:
            return None
        if q is not None and round(bounds[1] / q) < round(bounds[0] / q):
            out.add(name, "q", f"is larger than the range [{bounds[0]}, {bounds[1]}]")
            return None
        return Uniform(name, q=q, low=bounds[0], high=bounds[1])
    if method in ("loguniform", "qloguniform"):
        bounds = _bounds(out, name, dim)
        if bounds is None:
            return None
        if bounds[0] <= 0:
            out.add(name, "low", f"must be greater than 0 for a log scale, got {bounds[0]}")
            return None
        base = _base(out, name, dim, 10.0)
        if base is None:
            return None
        return LogUniform(name, q=q, low=bounds[0], high=bounds[1], base=base)
    if method in ("normal", "qnormal", "lognormal", "qlognormal"):
        mu = _number(out, name, dim, "mu")
        sigma = _positive(out, name, dim, "sigma")
        if mu is None or sigma is None:
            return None
        if method in ("normal", "qnormal"):
            return Normal(name, q=q, mu=mu, sigma=sigma)
        base = _base(out, name, dim, math.e)
        if base is None:
            return None
        return LogNormal(name, q=q, mu=mu, sigma=sigma, base=base)
    raise AssertionError(method)  # pragma: no cover - guarded by METHODS


def parse_search_space(raw: object) -> SearchSpace:
    """Validate hpogrid JSON and return the typed space; raise SearchSpaceError listing every issue."""
    out = _Collector()
    if not isinstance(raw, dict):
        raise SearchSpaceError(
            [SpaceIssue(None, None, f"a search space must be a JSON object, got {type(raw).__name__}")]
        )
    if not raw:
        raise SearchSpaceError([SpaceIssue(None, None, "the search space defines no parameter")])
    dimensions: list[Dimension] = []
    for name, entry in raw.items():
        if not name.strip():
            out.add(name, None, "a parameter name must not be empty")
            continue
        if not isinstance(entry, dict):
            out.add(name, None, 'must be an object {"method": ..., "dimension": {...}}')
            continue
        for key in entry:
            if key not in ("method", "dimension"):
                out.add(
                    name, key, "unknown key; allowed: 'method', 'dimension'" + _closest(key, ["dimension"])
                )
        method = entry.get("method")
        if method is None:
            out.add(name, "method", "is missing; allowed: " + ", ".join(METHODS))
            continue
        if method == "loguniformint":
            out.add(
                name,
                "method",
                "'loguniformint' is not part of the JSON format; use 'qloguniform' with q=1 or 'uniformint'",
            )
            continue
        if method not in METHODS:
            out.add(
                name,
                "method",
                f"unknown method {json.dumps(method)}; allowed: "
                + ", ".join(METHODS)
                + (_closest(method, METHODS) if isinstance(method, str) else ""),
            )
            continue
        dim = entry.get("dimension")
        if not isinstance(dim, dict):
            out.add(name, "dimension", f"must be an object with the keys of {method!r}")
            continue
        required, optional = DIMENSION_KEYS[method]
        missing = [k for k in required if k not in dim]
        unknown = [k for k in dim if k not in required + optional]
        allowed = ", ".join(required + optional)
        for key in missing:
            out.add(name, key, f"is required by method {method!r} (keys: {allowed})")
        for key in unknown:
            out.add(
                name,
                key,
                f"is not a key of method {method!r}; allowed: {allowed}" + _closest(key, required + optional),
            )
        if missing or unknown:
            continue
        parsed = _parse_dimension(out, name, method, dim)
        if parsed is not None:
            dimensions.append(parsed)
    if out.issues:
        raise SearchSpaceError(out.issues)
    return SearchSpace(tuple(dimensions))
