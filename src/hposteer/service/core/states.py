"""States of tasks, segments, points and attempts, and the one table of allowed transitions.

Every state change in the service goes through :data:`TRANSITIONS`: the store turns a
transition into ``UPDATE ... SET state = :to WHERE state IN (sources(to))``, so a change that
the table does not allow can never be written, even by two racing requests.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    RUNNING = "running"  # accepted; steering and evaluation under way
    FINISHED = "finished"  # every segment reached its end (budget, exhaustion, job limit)
    FAILED = "failed"  # the task could not go on (its optimiser raised) or ended with no point done
    KILLED = "killed"  # stopped by its owner


class SegmentState(StrEnum):
    ACTIVE = "active"  # steering may add points
    EXHAUSTED = "exhausted"  # no more points will be generated; waits for its points to end
    DONE = "done"  # every point of the segment is terminal and no more will come
    FAILED = "failed"  # steering failed for good
    CANCELLED = "cancelled"  # the task was killed


class PointState(StrEnum):
    PENDING = "pending"  # generated, waiting for a pilot slot
    RUNNING = "running"  # an attempt holds it
    DONE = "done"  # a loss was accepted
    FAILED = "failed"  # every attempt failed; records the failure loss
    CANCELLED = "cancelled"  # the task ended before it was evaluated


class AttemptState(StrEnum):
    RUNNING = "running"  # leased to a pilot slot
    SUCCEEDED = "succeeded"  # the pilot reported a loss
    FAILED = "failed"  # the pilot reported a failure
    EXPIRED = "expired"  # the lease ran out (lost pilot)
    CANCELLED = "cancelled"  # the task was killed while it ran


State = TaskState | SegmentState | PointState | AttemptState

TRANSITIONS: dict[type[State], dict[State, frozenset[State]]] = {
    TaskState: {
        TaskState.RUNNING: frozenset({TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED}),
        # finished -> running: `task retry` re-queued failed points
        TaskState.FINISHED: frozenset({TaskState.RUNNING}),
        # failed -> running: `task retry` of a task that failed only because no point was done
        TaskState.FAILED: frozenset({TaskState.RUNNING}),
        TaskState.KILLED: frozenset(),
    },
    SegmentState: {
        SegmentState.ACTIVE: frozenset(
            {SegmentState.EXHAUSTED, SegmentState.DONE, SegmentState.FAILED, SegmentState.CANCELLED}
        ),
        SegmentState.EXHAUSTED: frozenset({SegmentState.DONE, SegmentState.CANCELLED}),
        # done -> exhausted: `task retry` re-queued failed points; no new points are generated for it
        SegmentState.DONE: frozenset({SegmentState.EXHAUSTED}),
        SegmentState.FAILED: frozenset(),
        SegmentState.CANCELLED: frozenset(),
    },
    PointState: {
        PointState.PENDING: frozenset({PointState.RUNNING, PointState.CANCELLED}),
        # running -> pending: the attempt failed or expired and attempts remain
        PointState.RUNNING: frozenset({PointState.DONE, PointState.FAILED, PointState.PENDING, PointState.CANCELLED}),
        PointState.DONE: frozenset(),
        # failed -> pending: `task retry` gives the point a fresh round of maxAttempts attempts
        PointState.FAILED: frozenset({PointState.PENDING}),
        PointState.CANCELLED: frozenset(),
    },
    AttemptState: {
        AttemptState.RUNNING: frozenset(
            {AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.EXPIRED, AttemptState.CANCELLED}
        ),
        AttemptState.SUCCEEDED: frozenset(),
        AttemptState.FAILED: frozenset(),
        AttemptState.EXPIRED: frozenset(),
        AttemptState.CANCELLED: frozenset(),
    },
}

# Terminal unless the owner asks for a retry (the only ways out of finished/done/failed).
TERMINAL_POINT_STATES = frozenset({PointState.DONE, PointState.FAILED, PointState.CANCELLED})
UNEVALUATED_POINT_STATES = frozenset({PointState.PENDING, PointState.RUNNING})
TERMINAL_TASK_STATES = frozenset({TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED})


class IllegalTransition(ValueError):
    """A state change that the transition table does not allow."""


def allowed(source: State, target: State) -> bool:
    return target in TRANSITIONS[type(source)][source]


def check(source: State, target: State) -> None:
    if type(source) is not type(target):
        raise IllegalTransition(f"cannot mix {type(source).__name__} and {type(target).__name__}")
    if not allowed(source, target):
        raise IllegalTransition(f"{type(source).__name__} {source.value} -> {target.value} is not allowed")


def sources(target: State) -> frozenset[State]:
    """Every state from which ``target`` may be entered (the WHERE clause of an update)."""
    table = TRANSITIONS[type(target)]
    return frozenset(state for state, targets in table.items() if target in targets)
