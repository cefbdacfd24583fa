"""The ask-and-tell protocol every optimiser adapter implements, and the value encoding they share.

Adapters never see constants (fixed parameters and one-category choices are added back to
every point) nor raw categories (they choose an index, so any JSON value can be a category).
q-variants are searched unquantised and rounded on the way out, so every point an adapter
returns satisfies ``space.contains``. Losses reach adapters already oriented for
minimisation: the runner negates them when the task maximises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hposteer.core.searchspace import (
    Categorical,
    Continuous,
    Dimension,
    Fixed,
    LogUniform,
    Params,
    SearchSpace,
    Uniform,
)

Handle = Any  # whatever the library needs to tell a result back (an optuna trial, a nevergrad child...)


@dataclass(frozen=True)
class Suggestion:
    params: Params  # the point as the evaluation will see it
    handle: Handle


class AskTell(Protocol):
    """A stateful optimiser for one segment."""

    def ask(self, n: int) -> list[Suggestion]:
        """Up to ``n`` new points; fewer (or none) when the optimiser has no more to give."""
        ...

    def adopt(self, params: Params) -> Handle:
        """Make a point the optimiser did not propose its own (a replay after a restart, or a
        point from another source); it is pending until told."""
        ...

    def tell(self, handle: Handle, loss: float) -> None:
        """A finite result, already negated when the task maximises."""
        ...

    def tell_failure(self, handle: Handle) -> None:
        """The point could not be evaluated; no loss is invented for it."""
        ...

    def discard(self, handle: Handle) -> None:
        """A suggestion that was never stored (the steering run lost a race, or was cut short)."""
        ...

    def close(self) -> None:
        """Release the library's resources (nevergrad threads); the adapter is unusable after."""
        ...


def is_constant(dim: Dimension) -> bool:
    """Fixed parameters and one-category choices are constants: no optimiser needs to see them."""
    return isinstance(dim, Fixed) or (isinstance(dim, Categorical) and len(dim.categories) == 1)


class SpaceCodec:
    """Maps points between the user's values and an optimiser's internal values.

    Internal values: a category's index; the unquantised number of a q-variant; any other
    number unchanged. Constants are left out of the internal point.
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        self.searched: list[Dimension] = [d for d in space if not is_constant(d)]
        self.constants: dict[str, Any] = {d.name: _constant_value(d) for d in space if is_constant(d)}

    def decode(self, internal: dict[str, Any]) -> Params:
        out: Params = {}
        for dim in self.space:
            if dim.name in self.constants:
                out[dim.name] = self.constants[dim.name]
                continue
            value = internal[dim.name]
            if isinstance(dim, Categorical):
                out[dim.name] = dim.categories[int(value)]
            elif isinstance(dim, Uniform | LogUniform) and dim.q is None:
                # A library's exp(log(high)) may land a hair outside the range: clip.
                out[dim.name] = min(max(float(value), float(dim.low)), float(dim.high))
            elif isinstance(dim, Continuous):
                out[dim.name] = dim.quantize(float(value))
            else:
                out[dim.name] = int(value)
        return out

    def encode(self, params: Params) -> dict[str, Any]:
        """The internal point of stored params. Values are clamped into bounded ranges, since a
        quantised value may lie just outside them (quniform rounds to multiples of q)."""
        out: dict[str, Any] = {}
        for dim in self.searched:
            value = params[dim.name]
            if isinstance(dim, Categorical):
                index = dim.index_of(value)
                if index is None:
                    raise ValueError(f"{value!r} is not a category of {dim.name!r}")
                out[dim.name] = index
            elif isinstance(dim, Uniform | LogUniform):
                out[dim.name] = min(max(float(value), float(dim.low)), float(dim.high))
            elif isinstance(dim, Continuous):
                out[dim.name] = float(value)
            else:
                out[dim.name] = int(value)
        return out


def _constant_value(dim: Dimension) -> Any:
    if isinstance(dim, Fixed):
        return dim.value
    assert isinstance(dim, Categorical)
    return dim.categories[0]


def unsupported_grid_search(dims: Sequence[Dimension], optimizer: str) -> list[tuple[str, str, str]]:
    """(parameter, key, message) for categorical grid_search flags an optimiser cannot honour."""
    return [
        (
            d.name,
            "grid_search",
            f"grid_search=1 asks for every category in turn, which only the 'grid' optimizer does; "
            f"remove it or use --optimizer grid (this task uses {optimizer!r})",
        )
        for d in dims
        if isinstance(d, Categorical) and d.grid_search
    ]
