"""How segments and tasks end, checked after every change that could end them.

Called inside the write transaction of the change (a completed, failed, expired or
cancelled attempt; a steering run), so the end is recorded atomically with its cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

from hposteer.service.core.scheduling import EndReason, SegmentBudget, end_reason, points_to_generate, task_end
from hposteer.service.core.states import PointState, SegmentState, TaskState
from hposteer.service.operations.context import Services
from hposteer.service.operations.outbox import Outbox
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import points as point_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.claims import CarriedMove
from hposteer.service.store.records import AttemptRecord, SegmentRecord, TaskLimits, TaskRecord

_TERMINAL_SEGMENT = {SegmentState.DONE.value, SegmentState.FAILED.value, SegmentState.CANCELLED.value}


class HasBudget(Protocol):
    @property
    def max_points(self) -> int: ...
    @property
    def n_points_per_iteration(self) -> int: ...
    @property
    def min_unevaluated_points(self) -> int: ...
    @property
    def max_evaluation_jobs(self) -> int: ...


def budget_of(task: HasBudget) -> SegmentBudget:
    return SegmentBudget(
        max_points=task.max_points,
        n_points_per_iteration=task.n_points_per_iteration,
        min_unevaluated_points=task.min_unevaluated_points,
        max_evaluation_jobs=task.max_evaluation_jobs,
    )


def settle_segment(conn: Connection, task: TaskLimits | TaskRecord, segment: SegmentRecord) -> bool:
    """End the segment if its budget, job limit or optimiser is used up; True if it ended.

    ``segment`` must be current (as returned by the statement that last moved its counters).
    """
    if segment.state in _TERMINAL_SEGMENT:
        return False
    counts = segment.counts
    reason = end_reason(budget_of(task), counts, exhausted=segment.state == SegmentState.EXHAUSTED.value)
    if reason is None:
        return False
    if counts.pending:
        point_store.cancel_unfinished_points(conn, segment_id=segment.id, include_running=False)
    if not task_store.set_segment_state(conn, segment.id, SegmentState.DONE, end_reason=reason.value):
        return False
    finish_task_if_over(conn, task.id)
    return True


@dataclass(frozen=True)
class EndingAttempt:
    """An ended attempt whose point is settled but whose segment counters have not moved yet:
    ``carry`` goes to the claim of the slot's next job (store.claims), then ``finish_ending``."""

    attempt: AttemptRecord
    task: TaskLimits | None
    point: point_store.PointEnd | None
    carry: CarriedMove | None
    loss: float | None


def begin_ending(conn: Connection, services: Services, attempt: AttemptRecord, loss: float | None) -> EndingAttempt:
    """Settle the point of an attempt that just ended (``loss`` None: it failed or expired)."""
    task = services.limits(conn, attempt.task_id)
    if task is None:
        return EndingAttempt(attempt, None, None, None, loss)
    ended = point_store.end_point(
        conn,
        point_id=attempt.point_id,
        segment_id=attempt.segment_id,
        loss=loss,
        max_attempts=task.max_attempts,
        failure_loss=task.failure_loss,
    )
    if ended is None:
        return EndingAttempt(attempt, task, None, None, loss)

    def settle(conn: Connection, segment: SegmentRecord) -> None:  # with the move, in its transaction
        settle_segment(conn, task, segment)

    return EndingAttempt(attempt, task, ended, CarriedMove(ended.move, then=settle), loss)


def finish_ending(conn: Connection, ending: EndingAttempt, outbox: Outbox | None = None) -> point_store.Settled | None:
    """Write the counter move if no claim did, then end the segment and task if that was their last
    point; ``outbox`` collects what to tell handlers and meters once the transaction committed."""
    if ending.task is None:
        return None
    settled = None
    if ending.point is not None and ending.carry is not None:
        # Writes the move if no claim did, and ends the segment if that was its last point. When a
        # claim merged the move into its own UPDATE, it took a pending point of the segment, which
        # therefore cannot end now: nothing is written here after such a claim (its commit may
        # already have been sent with it, store.claims ``final``).
        settled = point_store.Settled(ending.point.state, ending.carry.write(conn))
    if outbox is not None:
        outbox.attempt_ended(conn, ending.attempt, settled, ending.loss)
    return settled


def may_need_steering(ending: EndingAttempt, settled: point_store.Settled | None) -> bool:
    """Whether the steering loop must look at the segment after this attempt's end: False only
    when the counters this transaction left (every counter change of a segment is serialised on
    its row, so the change that crosses a threshold sees it) show that no point is wanted, which
    spares the steering process a read per completion. Its periodic scan remains the backstop."""
    if ending.task is None or settled is None:
        return True
    segment = settled.segment
    return segment.state == SegmentState.ACTIVE.value and points_to_generate(budget_of(ending.task), segment.counts) > 0


def attempt_ended(
    conn: Connection,
    services: Services,
    attempt: AttemptRecord,
    loss: float | None,
    outbox: Outbox | None = None,
) -> point_store.Settled | None:
    """Settle the point of an attempt that just ended (``loss`` None: it failed or expired),
    then end its segment and task if that was their last point; ``outbox`` collects what to
    tell handlers and meters once the caller's transaction committed."""
    return finish_ending(conn, begin_ending(conn, services, attempt, loss), outbox)


def finish_task_if_over(conn: Connection, task_id: int) -> bool:
    """End a running task once every segment has ended: ``finished`` if a point was done, else
    ``failed`` (core.scheduling.task_end); True if it ended now."""
    segments = task_store.segments_of(conn, task_id)
    if not segments or any(s.state not in _TERMINAL_SEGMENT for s in segments):
        return False
    counts = task_store.state_counts(conn, [s.id for s in segments]).values()
    done = sum(c.get(PointState.DONE.value, 0) for c in counts)
    failed = sum(c.get(PointState.FAILED.value, 0) for c in counts)
    end = task_end([s.end_reason for s in segments], done=done, failed=failed)
    target = TaskState.FINISHED if end.succeeded else TaskState.FAILED
    return task_store.set_task_state(conn, task_id, target, end_reason=end.reason, message=end.message)


def fail_task(conn: Connection, task_id: int, message: str, outbox: Outbox) -> None:
    """Stop a task that cannot go on: cancel what is left and record why."""
    was_open = outbox.open_rounds(conn, task_id)
    for segment in task_store.segments_of(conn, task_id):
        point_store.cancel_unfinished_points(conn, segment_id=segment.id, include_running=True)
        target = SegmentState.FAILED if segment.state == SegmentState.ACTIVE.value else SegmentState.CANCELLED
        task_store.set_segment_state(conn, segment.id, target, end_reason=EndReason.STEERING_FAILED.value)
    cancelled = attempt_store.cancel_running_attempts(conn, task_id, "the task failed: its steering failed repeatedly")
    outbox.task_stopped(conn, task_id, cancelled, was_open)
    task_store.set_task_state(
        conn, task_id, TaskState.FAILED, end_reason=EndReason.STEERING_FAILED.value, message=message
    )
