"""Random sampling from every method of the format; never repeats a point of a finite space."""

from __future__ import annotations

import itertools
import random
from math import prod

from service.core.searchspace import Dimension, Params, SearchSpace
from service.steering.base import Handle, Suggestion

SHUFFLE_LIMIT = 100_000  # finite spaces up to this size are drawn exactly without replacement


def unsupported(dim: Dimension) -> str | None:
    return None


def finite_size(space: SearchSpace) -> int | None:
    if not all(d.is_finite for d in space):
        return None
    return prod(sum(1 for _ in d.values()) for d in space)


class RandomOptimizer:
    def __init__(self, space: SearchSpace, *, seed: int):
        self._space = space
        self._rng = random.Random(seed)
        self._seen: set[str] = set()
        self._size = finite_size(space)
        self._order: list[Params] | None = None  # a shuffled enumeration of a small finite space
        self._position = 0
        self._returned: list[Params] = []

    def _fresh(self, params: Params) -> bool:
        return self._space.point_key(params) not in self._seen

    def _next(self) -> Params | None:
        while self._returned:
            params = self._returned.pop()
            if self._fresh(params):
                return params
        if self._size is not None and self._size <= SHUFFLE_LIMIT:
            if self._order is None:
                names = self._space.names
                combos = itertools.product(*(list(d.values()) for d in self._space))
                self._order = [dict(zip(names, combo, strict=True)) for combo in combos]
                self._rng.shuffle(self._order)
            while self._position < len(self._order):
                params = self._order[self._position]
                self._position += 1
                if self._fresh(params):
                    return params
            return None
        for _ in range(1000):
            params = self._space.sample(self._rng)
            if self._size is None or self._fresh(params):
                return params
        return None  # a huge finite space that is nearly used up

    def ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        for _ in range(n):
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
