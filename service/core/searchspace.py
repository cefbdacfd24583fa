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
    text = repr(float(f"{q:.12g}"))
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
        # Values far from 0 carry float error proportional to their size.
        return abs(steps - round(steps)) <= max(1e-6, abs(steps) * 1e-9)

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
