"""Random sampling from every method of the format; never repeats a point of a finite space.

When every dimension is finite the optimiser never proposes a point already in the history
(in any state) and returns fewer points, then none, once the space is used up. Small finite
spaces are drawn as a seeded shuffle of point indices (no point objects are built up front);
large ones are sampled with rejection, and only when rejection keeps failing is the rest of
the space scanned, so "exhausted" is never a guess.
"""

from __future__ import annotations

import random

from hposteer.core.searchspace import Dimension, Params, SearchSpace
from hposteer.service.steering.optimizers.base import Handle, Suggestion

SHUFFLE_LIMIT = 100_000  # finite spaces up to this size are drawn as a shuffle of their indices
REJECTION_TRIES = 200  # draws that may repeat known points before the rest of the space is scanned


def unsupported(dim: Dimension) -> str | None:
    return None


class RandomOptimizer:
    def __init__(self, space: SearchSpace, *, seed: int):
        self._space = space
        self._rng = random.Random(seed)
        self._seen: set[str] = set()
        self._size = space.cardinality  # None: some dimension is continuous, repeats are impossible
        self._order: list[int] | None = None
        self._position = 0  # next index of _order, or of the scan of a large space
        self._returned: list[Params] = []  # discarded suggestions, offered again first

    def _fresh(self, params: Params) -> bool:
        return self._space.point_key(params) not in self._seen

    def _next(self) -> Params | None:
        while self._returned:
            params = self._returned.pop()
            if self._fresh(params):
                return params
        if self._size is None:
            return self._space.sample(self._rng)
        if self._size <= SHUFFLE_LIMIT:
            return self._from_shuffle(self._size)
        for _ in range(REJECTION_TRIES):
            params = self._space.sample(self._rng)
            if self._fresh(params):
                return params
        return self._scan(self._size)

    def _from_shuffle(self, size: int) -> Params | None:
        if self._order is None:
            self._order = list(range(size))
            self._rng.shuffle(self._order)
        while self._position < size:
            params = self._space.point_at(self._order[self._position])
            self._position += 1
            if self._fresh(params):
                return params
        return None

    def _scan(self, size: int) -> Params | None:
        """The next unused point in index order: reached only when the space is nearly used up."""
        while self._position < size:
            params = self._space.point_at(self._position)
            self._position += 1
            if self._fresh(params):
                return params
        return None

    def ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        for _ in range(n):
            params = self._next()
            if params is None:
                break
            if self._size is not None:
                self._seen.add(self._space.point_key(params))
            out.append(Suggestion(params, params))
        return out

    def adopt(self, params: Params) -> Handle:
        if self._size is not None:
            self._seen.add(self._space.point_key(params))
        return params

    def tell(self, handle: Handle, loss: float) -> None:
        return None

    def tell_failure(self, handle: Handle) -> None:
        return None

    def discard(self, handle: Handle) -> None:
        if self._size is not None:
            self._seen.discard(self._space.point_key(handle))
        self._returned.append(handle)

    def close(self) -> None:
        return None
