"""The steering protocol: ``generate(space, history, n, seed) -> list[point]``.

Stateless per call, like iDDS: the history holds every point so far with its loss, or None
while it is unevaluated, and a failure flag, so any process can run it after a crash.
Runners that keep an optimiser warm between calls (hposteer.service.steering.optimizers.warm) tell it only
what is new; a rebuilt optimiser knows the same points and results, though its random
draws may differ from those of the one it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hposteer.core.searchspace import Params, SearchSpace


@dataclass(frozen=True)
class Observation:
    """One point of the history as a steering run sees it."""

    point_id: int  # sequential id within the task (iDDS content id)
    params: Params
    loss: float | None  # None while unevaluated
    failed: bool = False  # every attempt failed; loss then holds the failure loss

    @property
    def pending(self) -> bool:
        return self.loss is None and not self.failed


class Steering(Protocol):
    """Anything that can produce new points for one segment."""

    def generate(self, space: SearchSpace, history: Sequence[Observation], n: int, seed: int) -> list[Params]:
        """Return at most ``n`` new points; ``[]`` means the optimiser is exhausted."""
        ...


class SteeringError(RuntimeError):
    """A steering run failed; the message says why, for the task's owner."""
