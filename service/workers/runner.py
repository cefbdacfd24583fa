"""The in-process segment runner used by the steering loop (temporary: random sampling)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from service.core.optimizer_spec import OptimizerSpec
from service.core.searchspace import Params, SearchSpace
from service.core.steering import Observation


class _RandomRunner:
    name = "in-process"

    def run(
        self,
        *,
        key: int,
        spec: OptimizerSpec,
        space: SearchSpace,
        history: Sequence[Observation],
        n: int,
        seed: int,
        budget: int,
        parallelism: int,
    ) -> list[Params]:
        rng = random.Random(seed + len(history))
        return [space.sample(rng) for _ in range(n)]

    def retain(self, keys: set[int]) -> None:
        return None

    def close(self) -> None:
        return None


def make_segment_runner() -> _RandomRunner:
    return _RandomRunner()
