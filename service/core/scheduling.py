"""When steering runs and when a segment ends: phpo's documented rules, not iDDS's barrier.

``nPointsPerIteration`` caps the unevaluated points a segment holds after a steering run;
``minUnevaluatedPoints`` says when the next run starts: as soon as fewer than that many
points are unevaluated (0, the default, behaves as 1: when every point has a result).
A run asks for ``nPointsPerIteration - unevaluated`` points, never more than ``maxPoints``
in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class SegmentBudget:
    max_points: int
    n_points_per_iteration: int
    min_unevaluated_points: int
    max_evaluation_jobs: int


@dataclass(frozen=True)
class SegmentCounts:
    generated: int  # every point ever generated for the segment
    pending: int
    running: int
    evaluated: int  # done or failed
    jobs: int  # attempts started (PanDA's evaluation jobs)

    @property
    def unevaluated(self) -> int:
        return self.pending + self.running


class EndReason(StrEnum):
    MAX_POINTS = "max_points"  # maxPoints points have a result
    MAX_EVALUATION_JOBS = "max_evaluation_jobs"  # maxEvaluationJobs attempts were started
    EXHAUSTED = "exhausted"  # the optimiser has no more points to give
    KILLED = "killed"
    STEERING_FAILED = "steering_failed"


def points_to_generate(budget: SegmentBudget, counts: SegmentCounts) -> int:
    """How many new points the next steering run should ask for (0: do not run)."""
    if counts.jobs >= budget.max_evaluation_jobs:
        return 0
    threshold = max(budget.min_unevaluated_points, 1)
    if counts.unevaluated >= threshold:
        return 0
    wanted = budget.n_points_per_iteration - counts.unevaluated
    room = budget.max_points - counts.generated
    return max(0, min(wanted, room))


def end_reason(budget: SegmentBudget, counts: SegmentCounts, exhausted: bool) -> EndReason | None:
    """Why the segment is over, or None while it should go on.

    A segment whose job budget is spent ends once its running attempts are over; points
    still pending then are cancelled by the caller.
    """
    if counts.evaluated >= budget.max_points:
        return EndReason.MAX_POINTS
    if counts.jobs >= budget.max_evaluation_jobs and counts.running == 0:
        return EndReason.MAX_EVALUATION_JOBS
    if exhausted and counts.unevaluated == 0:
        return EndReason.EXHAUSTED
    return None


def can_claim(budget: SegmentBudget, counts: SegmentCounts, n_parallel_evaluation: int) -> bool:
    """Whether another attempt may start now (concurrency slots and the job budget)."""
    return counts.running < n_parallel_evaluation and counts.jobs < budget.max_evaluation_jobs
