"""Search spaces in hpogrid's JSON format (docs/search-space.md).

A space is ``{"<name>": {"method": "<method>", "dimension": {<keys>}}, ...}``.
``hposteer.core.space_json`` parses and validates it into the typed dimensions of
``hposteer.core.dimensions`` and ``hposteer.core.continuous`` (re-exported here); a
``SearchSpace`` samples from them, checks membership, and counts and indexes finite spaces.
It knows nothing about optimiser libraries: adapters map these dimensions onto their own
parameter types (hposteer.service.steering) and say which ones they can honour.

Conventions (the same as hpogrid's adapters, written down here once):

* ``uniformint`` includes both ends, as every hpogrid backend does.
* ``loguniform``/``qloguniform`` take ``low``/``high`` as the values themselves (> 0), not
  their logarithms; ``base`` (default 10) does not change the distribution, which is
  log-uniform between the two values whatever the base.
* ``lognormal``/``qlognormal`` draw ``base ** normal(mu, sigma)`` (default base e), so
  ``mu``/``sigma`` live in log space, as in hyperopt.
* q-variants return ``round(x / q) * q`` of the unquantised draw ``x`` (so a value may lie
  up to q/2 outside ``low``/``high`` when they are not multiples of q, as in hyperopt); when
  ``q`` and the bounds are integers the values are ints.
* Categories, fixed values and whole points compare as canonical JSON: ``1``, ``1.0`` and
  ``true`` are three different categories.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from hposteer.core.continuous import Continuous, LogNormal, LogUniform, Normal, Uniform
from hposteer.core.dimensions import Categorical, Dimension, Fixed, JsonValue, Params, UniformInt, canonical

__all__ = [
    "DIMENSION_KEYS",
    "METHODS",
    "Categorical",
    "Continuous",
    "Dimension",
    "Fixed",
    "JsonValue",
    "LogNormal",
    "LogUniform",
    "Normal",
    "Params",
    "SearchSpace",
    "SearchSpaceError",
    "SpaceIssue",
    "Uniform",
    "UniformInt",
    "canonical",
]

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


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of dimensions; iteration order is the order in the JSON file."""

    dimensions: tuple[Dimension, ...] = field(default_factory=tuple)
    # what the parser accepted but changed (repeated categories): shown to the submitter, never compared
    warnings: tuple[str, ...] = field(default=(), compare=False)

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

    @property
    def cardinality(self) -> int | None:
        """Number of distinct points when every dimension is finite, else None."""
        total = 1
        for dim in self.dimensions:
            size = dim.cardinality
            if size is None:
                return None
            total *= size
        return total

    def point_at(self, index: int) -> Params:
        """The ``index``-th point of a finite space, in ``itertools.product`` order (last name fastest)."""
        out: Params = {}
        for dim in reversed(self.dimensions):
            size = dim.cardinality
            if size is None:
                raise TypeError(f"parameter {dim.name!r} ({dim.json_method}) has no finite set of values")
            index, position = divmod(index, size)
            out[dim.name] = dim.value_at(position)
        if index:
            raise IndexError("point index beyond the size of the space")
        return {name: out[name] for name in self.names}

    def contains(self, params: Mapping[str, JsonValue]) -> bool:
        if set(params) != set(self.names):
            return False
        return all(d.contains(params[d.name]) for d in self.dimensions)

    def point_key(self, params: Mapping[str, JsonValue]) -> str:
        """Identity of a point for de-duplication (grid, random over finite spaces)."""
        return canonical({name: params.get(name) for name in self.names})

    def to_json(self) -> dict[str, JsonValue]:
        return {d.name: d.to_json() for d in self.dimensions}
