"""The phpo scheduling rule, segment ends, placeholders and the transition table."""

from __future__ import annotations

import pytest

from hposteer.core.placeholders import fill_evaluation_exec
from hposteer.service.core.scheduling import (
    EndReason,
    SegmentBudget,
    SegmentCounts,
    TaskEnd,
    end_reason,
    points_to_generate,
)
from hposteer.service.core.states import (
    TRANSITIONS,
    AttemptState,
    IllegalTransition,
    PointState,
    TaskState,
    allowed,
    check,
    sources,
)

BUDGET = SegmentBudget(max_points=10, n_points_per_iteration=4, min_unevaluated_points=0, max_evaluation_jobs=20)


def counts(generated: int = 0, pending: int = 0, running: int = 0, evaluated: int = 0, jobs: int = 0) -> SegmentCounts:
    return SegmentCounts(generated, pending, running, evaluated, jobs)


@pytest.mark.parametrize(
    ("budget", "state", "expected"),
    [
        (BUDGET, counts(), 4),  # first iteration
        (BUDGET, counts(generated=4, pending=1, evaluated=3), 0),  # minUnevaluatedPoints 0: wait for all
        (BUDGET, counts(generated=4, evaluated=4), 4),
        (BUDGET, counts(generated=8, evaluated=8), 2),  # capped by maxPoints
        (BUDGET, counts(generated=10, evaluated=10), 0),
        (SegmentBudget(10, 4, 2, 20), counts(generated=4, running=1, evaluated=3), 3),  # 1 < 2: refill to 4
        (SegmentBudget(10, 4, 2, 20), counts(generated=4, running=2, evaluated=2), 0),
        (SegmentBudget(10, 4, 0, 3), counts(generated=3, evaluated=3, jobs=3), 0),  # job budget spent
    ],
)
def test_points_to_generate_follows_phpo(budget: SegmentBudget, state: SegmentCounts, expected: int) -> None:
    assert points_to_generate(budget, state) == expected


def test_end_reasons() -> None:
    assert end_reason(BUDGET, counts(generated=10, evaluated=10), exhausted=False) == EndReason.MAX_POINTS
    assert end_reason(BUDGET, counts(generated=5, evaluated=5), exhausted=True) == EndReason.EXHAUSTED
    assert end_reason(BUDGET, counts(generated=5, pending=1, evaluated=4), exhausted=True) is None
    jobs_spent = counts(generated=6, pending=2, running=0, evaluated=4, jobs=20)
    assert end_reason(BUDGET, jobs_spent, exhausted=False) == EndReason.MAX_EVALUATION_JOBS
    assert end_reason(BUDGET, counts(generated=6, running=1, evaluated=4, jobs=20), exhausted=False) is None


def test_placeholders() -> None:
    template = "python train.py --seed %RNDM:100 --other %RNDM=5 --keep %RNDM --seg %SEGMENT_NAME"
    assert fill_evaluation_exec(template, job_number=3, segment_name="segA") == (
        "python train.py --seed 103 --other 8 --keep %RNDM --seg segA"
    )


def test_transition_table_is_complete_and_terminal_states_are_final() -> None:
    for enum, table in TRANSITIONS.items():
        assert set(table) == set(enum)  # type: ignore[call-overload]
    check(PointState.RUNNING, PointState.PENDING)
    with pytest.raises(IllegalTransition, match="done -> running"):
        check(PointState.DONE, PointState.RUNNING)
    with pytest.raises(IllegalTransition):
        check(TaskState.KILLED, TaskState.RUNNING)
    with pytest.raises(IllegalTransition, match="cannot mix"):
        check(TaskState.RUNNING, PointState.DONE)
    assert sources(PointState.RUNNING) == {PointState.PENDING}
    assert sources(AttemptState.EXPIRED) == {AttemptState.RUNNING}


def test_a_task_ends_failed_unless_a_point_was_done() -> None:
    from hposteer.service.core.scheduling import retryable, task_end

    assert task_end(["max_points", "max_points"], done=1, failed=9) == TaskEnd(True, "max_points", None)
    assert task_end(["max_points", "exhausted"], done=2, failed=0).reason == "completed"
    failed = task_end(["max_evaluation_jobs"], done=0, failed=4)
    assert (failed.succeeded, failed.reason) == (False, "all_points_failed")
    assert failed.message == "all 4 evaluated points failed (the task ended: max_evaluation_jobs); no loss to report"
    assert task_end(["exhausted"], done=0, failed=0) == TaskEnd(
        False, "no_points_evaluated", "no point was evaluated (the task ended: exhausted)"
    )
    assert allowed(TaskState.FAILED, TaskState.RUNNING), "task retry reopens it"
    assert retryable("failed", "all_points_failed") and retryable("finished", "max_points")
    assert not retryable("failed", "steering_failed") and not retryable("killed", "killed")
