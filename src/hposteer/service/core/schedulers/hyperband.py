"""Hyperband: brackets of SuccessiveHalving that trade many cheap starts for few long ones.

With ``s_max = floor(log_eta(max_resource / min_resource))``, bracket ``s`` (from ``s_max`` down to
0) starts ``ceil((s_max + 1) / (s + 1) * eta**s)`` points at ``max_resource / eta**s`` and halves
them as :mod:`.sha` does (Li et al., "Hyperband", JMLR 2018). Points are dealt to brackets in
creation order; when every bracket is full the sequence starts again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hposteer.service.core.schedulers.objective import Objective
from hposteer.service.core.schedulers.rungs import RungLadder, ladder_problems
from hposteer.service.core.schedulers.sha import SuccessiveHalving


@dataclass(frozen=True)
class Hyperband:
    min_resource: int
    max_resource: int
    reduction_factor: int = 3
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        problems = ladder_problems(self.min_resource, self.max_resource, self.reduction_factor, 0)
        if problems:
            raise ValueError("hyperband: " + "; ".join(problems))

    @property
    def s_max(self) -> int:
        s, eta = 0, self.reduction_factor
        while self.min_resource * eta ** (s + 1) <= self.max_resource:
            s += 1
        return s

    @property
    def brackets(self) -> tuple[SuccessiveHalving, ...]:
        eta, out = self.reduction_factor, []
        for s in range(self.s_max, -1, -1):
            count = -(-(self.s_max + 1) * eta**s // (s + 1))  # ceil without floats
            start = max(self.min_resource, self.max_resource // eta**s)
            out.append(SuccessiveHalving(count, RungLadder(start, self.max_resource, eta), self.objective))
        return tuple(out)

    def bracket_of(self, index: int) -> int:
        """The bracket of the ``index``-th point of the task (0-based creation order)."""
        sizes = [b.num_runs for b in self.brackets]
        index %= sum(sizes)
        for bracket, size in enumerate(sizes):
            if index < size:
                return bracket
            index -= size
        raise AssertionError("unreachable")
