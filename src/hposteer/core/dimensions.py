"""The typed dimensions of a search space: one class per method family.

The base class and the discrete dimensions are here, the real-valued ones in
``hposteer.core.continuous``. Parsing lives in ``hposteer.core.space_json``; the conventions
are written down in ``hposteer.core.searchspace``, which re-exports these names.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

JsonValue = Any
Params = dict[str, JsonValue]


def canonical(value: JsonValue) -> str:
    """A stable text key for a JSON value (used to compare categories and whole points)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def is_number(value: object) -> bool:
    """A JSON number (bool is not one, although Python says it is an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


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

    @property
    def cardinality(self) -> int | None:
        """How many values a finite dimension has (None when infinite), counted without enumerating."""
        return None

    def value_at(self, index: int) -> JsonValue:
        """The ``index``-th value of ``values()`` in O(1), so huge finite dimensions need no list."""
        raise TypeError(f"parameter {self.name!r} ({self.method}) has no finite set of values")

    def values(self) -> Iterator[JsonValue]:
        """Every value of a finite dimension, in a stable order."""
        size = self.cardinality
        if size is None:
            raise TypeError(f"parameter {self.name!r} ({self.method}) has no finite set of values")
        return (self.value_at(i) for i in range(size))

    def to_json(self) -> dict[str, JsonValue]:
        raise NotImplementedError


@dataclass(frozen=True)
class Categorical(Dimension):
    categories: tuple[JsonValue, ...] = ()
    grid_search: int = 0
    method: ClassVar[str] = "categorical"

    def sample(self, rng: random.Random) -> JsonValue:
        return self.categories[rng.randrange(len(self.categories))]

    @cached_property
    def _indices(self) -> dict[str, int]:
        # Computed once per dimension: index_of runs for every replayed point.
        return {canonical(category): i for i, category in enumerate(self.categories)}

    def index_of(self, value: JsonValue) -> int | None:
        """Position of a category, compared as canonical JSON (so 1, 1.0 and true differ)."""
        return self._indices.get(canonical(value))

    def contains(self, value: JsonValue) -> bool:
        return self.index_of(value) is not None

    @property
    def is_finite(self) -> bool:
        return True

    @property
    def cardinality(self) -> int | None:
        return len(self.categories)

    def value_at(self, index: int) -> JsonValue:
        return self.categories[index]

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

    @property
    def cardinality(self) -> int | None:
        return 1

    def value_at(self, index: int) -> JsonValue:
        if index != 0:
            raise IndexError(index)
        return self.value

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

    @property
    def cardinality(self) -> int | None:
        return self.high - self.low + 1

    def value_at(self, index: int) -> JsonValue:
        if not 0 <= index <= self.high - self.low:
            raise IndexError(index)
        return self.low + index

    def to_json(self) -> dict[str, JsonValue]:
        return {"method": self.method, "dimension": {"low": self.low, "high": self.high}}
