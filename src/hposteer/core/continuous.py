"""The real-valued dimensions (uniform, loguniform, normal, lognormal) and their q-variants.

See ``hposteer.core.searchspace`` for the conventions; that module re-exports these names.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import ClassVar

from hposteer.core.dimensions import Dimension, JsonValue, is_number


def _decimals(q: float) -> int:
    """Decimal places needed to print multiples of q without float noise (0.1 -> 1)."""
    text = repr(float(f"{q:.12g}"))
    if "e" in text:
        mantissa, exp = text.split("e")
        digits = len(mantissa.split(".")[1].rstrip("0")) if "." in mantissa else 0
        return max(0, digits - int(exp))
    return len(text.split(".")[1].rstrip("0"))


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
        if not is_number(value) or not math.isfinite(value):
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

    @property
    def cardinality(self) -> int | None:
        if self.q is None:
            return None
        return round(self.high / self.q) - round(self.low / self.q) + 1

    def value_at(self, index: int) -> JsonValue:
        size = self.cardinality
        if size is None:
            return super().value_at(index)
        if not 0 <= index < size:
            raise IndexError(index)
        assert self.q is not None
        return self.quantize((round(self.low / self.q) + index) * self.q)

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
