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
    ALL_POINTS_FAILED = "all_points_failed"  # the task ended and every evaluated point failed
    NO_POINTS_EVALUATED = "no_points_evaluated"  # the task ended before any point had a result


# Task ends that `task retry` may reopen (the task failed only because its points did).
RETRYABLE_FAILURES = frozenset({EndReason.ALL_POINTS_FAILED.value, EndReason.NO_POINTS_EVALUATED.value})


@dataclass(frozen=True)
class TaskEnd:
    succeeded: bool  # False: the task is ``failed``, not ``finished``
    reason: str
    message: str | None  # for the owner, when it failed


def retryable(task_state: str, task_end_reason: str | None) -> bool:
    """Whether `task retry` may re-queue the task's failed points."""
    if task_state in ("running", "finished"):
        return True
    return task_state == "failed" and task_end_reason in RETRYABLE_FAILURES


def task_end(segment_reasons: list[str | None], done: int, failed: int) -> TaskEnd:
    """How a task ends once every segment has: ``finished`` only if at least one point was done
    (a loss accepted); a task whose every point failed, or that evaluated none, ``failed``."""
    reasons = set(segment_reasons)
    reason = (reasons.pop() or "completed") if len(reasons) == 1 else "completed"
    if done > 0:
        return TaskEnd(True, reason, None)
    if failed > 0:
        message = f"all {failed} evaluated points failed (the task ended: {reason}); no loss to report"
        return TaskEnd(False, EndReason.ALL_POINTS_FAILED.value, message)
    message = f"no point was evaluated (the task ended: {reason})"
    return TaskEnd(False, EndReason.NO_POINTS_EVALUATED.value, message)


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
