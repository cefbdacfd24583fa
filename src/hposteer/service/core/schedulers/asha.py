"""Asynchronous successive halving, the stopping form (Li et al., MLSys 2020).

When a point's report first reaches a rung, the point is compared with every point that had
reached that rung before it (by report order): it goes on only if its value at the rung is among
the best ``max(1, n // eta)`` of the ``n`` values there, itself included. A point is never paused:
a loser stops for good (pruned), which needs no checkpoint and suits any payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hposteer.service.core.schedulers.curves import Curve, Report
from hposteer.service.core.schedulers.objective import Objective
from hposteer.service.core.schedulers.rungs import RungLadder
from hposteer.service.core.schedulers.verdict import CONTINUE, Action, Verdict


def keeps(costs: Sequence[float], mine: float, eta: int) -> bool:
    """Whether ``mine`` is among the best ``max(1, len(costs) // eta)`` of ``costs`` (ties stay)."""
    kept = max(1, len(costs) // eta)
    return mine <= sorted(costs)[kept - 1]


@dataclass(frozen=True)
class Asha:
    ladder: RungLadder
    objective: Objective = field(default_factory=Objective)

    def decide(self, point: Curve, report: Report, others: Sequence[Curve]) -> Verdict:
        mine = point.before(report.seq + 1)
        cost = self.objective.cost
        for rung in self.ladder.judged:
            if mine.first_at_or_after(rung) != report:
                continue  # this report did not reach the rung first (or not at all)
            costs = [cost(report.value)]
            for other in others:
                if other.point_id == point.point_id:
                    continue
                there = other.before(report.seq).first_at_or_after(rung)
                if there is not None:
                    costs.append(cost(there.value))
            if not keeps(costs, cost(report.value), self.ladder.reduction_factor):
                kept = max(1, len(costs) // self.ladder.reduction_factor)
                return Verdict(
                    Action.STOP,
                    f"asha rung {rung}: {self.objective.metric} {report.value:.6g} at step {report.step} is not "
                    f"among the best {kept} of {len(costs)} points that reached the rung",
                )
        return CONTINUE
