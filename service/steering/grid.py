"""Grid search over finite dimensions, in a stable order, never proposing a point twice.

Points already in the history in any state (pending, running, done, failed) are skipped,
unlike hpogrid's grid, which re-emitted in-flight points.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from service.core.searchspace import Dimension, Params, SearchSpace
from service.steering.base import Handle, Suggestion


def unsupported(dim: Dimension) -> str | None:
    if dim.is_finite:
        return None
    return (
        f"method {dim.json_method!r} has no finite set of values to put on a grid; grid search takes "
        "categorical, fixed, uniformint and quniform parameters"
    )


class GridOptimizer:
    def __init__(self, space: SearchSpace):
        self._space = space
        self._seen: set[str] = set()
        self._combos: Iterator[tuple[object, ...]] = itertools.product(*(list(d.values()) for d in space))
        self._returned: list[Params] = []  # discarded suggestions, offered again first

    def _candidates(self) -> Iterator[Params]:
        while self._returned:
            yield self._returned.pop()
        names = self._space.names
        for combo in self._combos:
            yield dict(zip(names, combo, strict=True))

    def ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        if n <= 0:
            return out
        for params in self._candidates():
            key = self._space.point_key(params)
            if key in self._seen:
                continue
            self._seen.add(key)
            out.append(Suggestion(params, params))
            if len(out) == n:
                break
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
