"""Synchronous SuccessiveHalving with RapidFire AI's parameters.

``num_runs`` points start together in rung 0 with the budget ``min_epochs * eta**rate``. A point
that reaches its rung's budget **pauses** (its checkpoint is kept). Once every point of the rung has
ended there (paused, failed or stopped), the best ``max(1, n // eta)`` of those with a value are
**promoted**: each resumes from its checkpoint, on any pilot, with the next rung's budget; the others
end pruned. The last rung trains to ``max_epochs`` and its points complete normally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hposteer.service.core.schedulers.objective import Objective, parse_objective
from hposteer.service.core.schedulers.rungs import RungLadder, ladder_problems
from hposteer.service.core.schedulers.verdict import CONTINUE, Action, Verdict


@dataclass(frozen=True)
class RungMember:
    """A point of a rung as it ended there: ``value`` is its metric at the rung's budget, ``None`` if it failed."""

    point_id: int
    value: float | None
    ended: bool = True


@dataclass(frozen=True)
class Promotion:
    rung: int  # the rung whose points were compared
    promoted: tuple[int, ...]  # resume with budgets[rung + 1], best first
    pruned: tuple[int, ...]


@dataclass(frozen=True)
class SuccessiveHalving:
    num_runs: int
    ladder: RungLadder
    objective: Objective = field(default_factory=Objective)

    @classmethod
    def from_options(
        cls,
        num_runs: int,
        min_epochs: int,
        max_epochs: int,
        reduction_factor: int,
        metric: str = "loss",
        direction: str = "min",
        min_early_stopping_rate: int = 0,
    ) -> SuccessiveHalving:
        """RapidFire's ``SuccessiveHalving(cfg, num_runs, min_epochs, max_epochs, reduction_factor, metric,
        direction, min_early_stopping_rate)``, minus the config (the task's search space)."""
        problems = (
            [] if isinstance(num_runs, int) and num_runs >= 1 else [f"num_runs must be at least 1, got {num_runs!r}"]
        )
        problems += ladder_problems(min_epochs, max_epochs, reduction_factor, min_early_stopping_rate)
        if problems:
            raise ValueError("sha: " + "; ".join(problems))
        ladder = RungLadder(min_epochs, max_epochs, reduction_factor, min_early_stopping_rate)
        return cls(num_runs, ladder, parse_objective(metric, direction, "sha"))

    @property
    def budgets(self) -> tuple[int, ...]:
        return self.ladder.budgets

    def decide(self, rung: int, step: int) -> Verdict:
        """A running point of ``rung`` that reported ``step``: pause it once it reached the rung's budget."""
        if rung < len(self.budgets) - 1 and step >= self.budgets[rung]:
            return Verdict(Action.PAUSE, f"sha rung {rung}: reached its budget of {self.budgets[rung]} steps")
        return CONTINUE

    def promote(self, rung: int, members: Sequence[RungMember]) -> Promotion | None:
        """The outcome of ``rung`` once every member ended there, else ``None`` (wait)."""
        if rung >= len(self.budgets) - 1 or not members or not all(m.ended for m in members):
            return None
        cost = self.objective.cost
        valued = sorted((m for m in members if m.value is not None), key=lambda m: (cost(m.value or 0.0), m.point_id))
        kept = max(1, len(members) // self.ladder.reduction_factor)
        promoted = tuple(m.point_id for m in valued[:kept])
        pruned = tuple(sorted(m.point_id for m in members if m.point_id not in promoted and m.value is not None))
        return Promotion(rung, promoted, pruned)
