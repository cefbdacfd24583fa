"""Grid search over finite dimensions, in a stable order, never proposing a point twice.

Points are enumerated in ``itertools.product`` order of the parameters as written (the last
one varies fastest), computed from an index so that a grid of 10^9 points costs no memory.
Points already in the history in any state (pending, running, done, failed) are skipped,
unlike hpogrid's grid, which re-emitted in-flight points. ``[]`` means every point was
proposed.
"""

from __future__ import annotations

from hposteer.core.searchspace import Dimension, Params, SearchSpace
from hposteer.service.steering.optimizers.base import Handle, Suggestion

FINITE_METHODS = "categorical, fixed, uniformint and quniform"


def unsupported(dim: Dimension) -> str | None:
    if dim.is_finite:
        return None
    return (
        f"method {dim.json_method!r} has no finite set of values to put on a grid; "
        f"grid search takes {FINITE_METHODS} parameters"
    )


class GridOptimizer:
    def __init__(self, space: SearchSpace):
        size = space.cardinality
        if size is None:
            raise ValueError(f"grid search needs {FINITE_METHODS} parameters only")
        self._space = space
        self._size = size
        self._next_index = 0
        self._seen: set[str] = set()
        self._returned: list[Params] = []  # discarded suggestions, offered again first (in order)

    def _next(self) -> Params | None:
        while self._returned:
            params = self._returned.pop(0)
            if self._space.point_key(params) not in self._seen:
                return params
        while self._next_index < self._size:
            params = self._space.point_at(self._next_index)
            self._next_index += 1
            if self._space.point_key(params) not in self._seen:
                return params
        return None

    def ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        while len(out) < n:
            params = self._next()
            if params is None:
                break
            self._seen.add(self._space.point_key(params))
            out.append(Suggestion(params, params))
        return out

    def adopt(self, params: Params) -> Handle:
        self._seen.add(self._space.point_key(params))
        return params

    def tell(self, handle: Handle, loss: float) -> None:
        return None

    def tell_failure(self, handle: Handle) -> None:
        return None

    def discard(self, handle: Handle) -> None:
        self._seen.discard(self._space.point_key(handle))
        self._returned.append(handle)

    def close(self) -> None:
        return None
