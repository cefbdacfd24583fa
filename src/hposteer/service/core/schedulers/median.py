"""The median stopping rule (Golovin et al., "Google Vizier", KDD 2017, section 3.2.2).

A point is stopped at step ``s`` when the best value it has reported up to ``s`` is strictly
worse than the median, over completed points, of their running averages up to ``s``. A completed
point counts only when it reported at or before ``s``; the rule waits for ``min_completed`` of them
and does not judge before ``warmup_steps``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from hposteer.service.core.schedulers.curves import Curve, Report
from hposteer.service.core.schedulers.objective import Objective
from hposteer.service.core.schedulers.verdict import CONTINUE, Action, Verdict


@dataclass(frozen=True)
class MedianRule:
    objective: Objective = field(default_factory=Objective)
    min_completed: int = 3
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.min_completed < 1:
            raise ValueError(f"median: min_completed must be at least 1, got {self.min_completed}")
        if self.warmup_steps < 0:
            raise ValueError(f"median: warmup_steps must not be negative, got {self.warmup_steps}")

    def decide(self, point: Curve, report: Report, others: Sequence[Curve]) -> Verdict:
        """The verdict on ``point`` after ``report`` (one of its own), given the task's other points."""
        step = report.step
        if step < self.warmup_steps:
            return CONTINUE
        cost = self.objective.cost
        mine = [cost(r.value) for r in point.before(report.seq + 1).up_to(step)]
        averages = []
        for other in others:
            then = other.before(report.seq)
            if other.point_id == point.point_id or not then.completed:
                continue
            seen = then.up_to(step)
            if seen:
                averages.append(statistics.fmean(cost(r.value) for r in seen))
        if len(averages) < self.min_completed or not mine:
            return CONTINUE
        best, median = min(mine), statistics.median(averages)
        if best > median:
            shown = best if self.objective.direction == "min" else -best
            target = median if self.objective.direction == "min" else -median
            return Verdict(
                Action.STOP,
                f"median rule at step {step}: best {self.objective.metric} so far {shown:.6g} is worse than the "
                f"median {target:.6g} of {len(averages)} completed points' running averages",
            )
        return CONTINUE
