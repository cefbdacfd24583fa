"""The store test suite, run on every backend (SQLite always; PostgreSQL when configured).

Written against store functions and real databases, in the manner of optuna's shared
storage tests: claims, fencing, expiry and guarded transitions behave the same everywhere.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Connection, func, select

from hposteer.service.core.states import AttemptState, PointState, SegmentState, TaskState
from hposteer.service.operations.context import Services
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import claims
from hposteer.service.store import points as point_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store import tokens as token_store
from hposteer.service.store.claim_write import ClaimWrite, WriteAfterClaim
from hposteer.service.store.database import StoreBusy, database_time
from hposteer.service.store.tables import points
from tests.support.store_rows import add_pilot, add_points, add_task, claim_next


def _end(
    services: Services, claim: claims.Claim, loss: float | None, *, max_attempts: int = 3
) -> point_store.Settled | None:
    """Finish the claim's attempt (a loss: success; None: failure) and settle its point, as `complete` does."""
    with services.db.write() as conn:
        attempt_store.finish_attempt(
            conn, attempt_id=claim.attempt_id, lease_token=claim.lease_token,
            target=AttemptState.SUCCEEDED if loss is not None else AttemptState.FAILED,
            loss=loss, exit_code=0 if loss is not None else 1,
            failure_class=None if loss is not None else "payload_error", message=None, log_tail=None,
        )  # fmt: skip
        return _settle(conn, claim.point.id, claim.segment.id, loss, max_attempts)


def _settle(
    conn: Connection, point_id: int, segment_id: int, loss: float | None, max_attempts: int
) -> point_store.Settled | None:
    """What a completion does: the point's end, then its counter move (store.points)."""
    ended = point_store.end_point(
        conn, point_id=point_id, segment_id=segment_id, loss=loss, max_attempts=max_attempts, failure_loss=1e5
    )
    return None if ended is None else point_store.Settled(ended.state, point_store.move_counters(conn, ended.move))


def test_point_numbers_are_sequential_per_task_across_iterations(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services)
    assert add_points(backend_services, task_id, segment_id, 3) == [1, 2, 3]
    assert add_points(backend_services, task_id, segment_id, 2, iteration=2) == [4, 5]
    other_task, other_segment = add_task(backend_services)
    assert add_points(backend_services, other_task, other_segment, 1) == [1]


def test_claim_moves_the_attempt_counter_and_issues_a_lease(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services)
    add_points(backend_services, task_id, segment_id, 2)
    pilot_id = add_pilot(backend_services)
    claim = claim_next(backend_services, pilot_id)
    assert claim is not None
    assert claim.point.number == 1
    assert claim.attempt_number == 1
    assert claim.point.attempts == 1
    assert claim.point.state == PointState.RUNNING.value
    assert claim.job_number == 0
    with backend_services.db.read() as conn:
        now = database_time(conn)
    assert 25 < claim.lease_expires_at - now <= 30.5
    second = claim_next(backend_services, pilot_id)
    assert second is not None and second.point.number == 2 and second.job_number == 1
    assert claim_next(backend_services, pilot_id) is None


def test_claim_respects_parallelism_job_budget_and_site(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services, n_parallel_evaluation=1, max_evaluation_jobs=2, sites=",SITE-B,")
    add_points(backend_services, task_id, segment_id, 3)
    here = add_pilot(backend_services, site="SITE-A")
    there = add_pilot(backend_services, site="SITE-B")
    assert claim_next(backend_services, here, site="SITE-A") is None, "the task asked for SITE-B only"
    first = claim_next(backend_services, there, site="SITE-B")
    assert first is not None
    assert claim_next(backend_services, there, site="SITE-B") is None, "nParallelEvaluation=1 and one is running"
    _end(backend_services, first, 0.5)
    second = claim_next(backend_services, there, site="SITE-B")
    assert second is not None
    settled = _end(backend_services, second, None)
    assert settled is not None and settled.state == PointState.PENDING
    assert claim_next(backend_services, there, site="SITE-B") is None, "maxEvaluationJobs=2 jobs were started"


def test_fair_share_prefers_the_owner_with_fewer_running_attempts(backend_services: Services) -> None:
    a_task, a_seg = add_task(backend_services, owner="alice", priority=5)
    b_task, b_seg = add_task(backend_services, owner="bob")
    add_points(backend_services, a_task, a_seg, 4)
    add_points(backend_services, b_task, b_seg, 4)
    pilot_id = add_pilot(backend_services)
    owners = []
    for _ in range(4):
        claim = claim_next(backend_services, pilot_id)
        assert claim is not None
        owners.append(claim.task.owner)
    assert owners == ["alice", "bob", "alice", "bob"], "priority breaks ties, fair share comes first"


def test_writes_are_fenced_by_lease_token_and_expiry(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services)
    add_points(backend_services, task_id, segment_id, 1)
    claim = claim_next(backend_services, add_pilot(backend_services), ttl=0.5)
    assert claim is not None
    with backend_services.db.write() as conn:
        assert attempt_store.extend_lease(conn, claim.attempt_id, "wrong-token", 0.5) is None
        remaining = attempt_store.extend_lease(conn, claim.attempt_id, claim.lease_token, 0.5)
    assert remaining is not None and 0.3 < remaining <= 0.5
    time.sleep(0.7)
    with backend_services.db.write() as conn:
        assert attempt_store.extend_lease(conn, claim.attempt_id, claim.lease_token, 0.5) is None
        late = attempt_store.finish_attempt(
            conn, attempt_id=claim.attempt_id, lease_token=claim.lease_token, target=AttemptState.SUCCEEDED,
            loss=0.1, exit_code=0, failure_class=None, message=None, log_tail=None,
        )  # fmt: skip
        assert late is None, "a result after the lease expired is refused"
        view = attempt_store.lease_view(conn, claim.attempt_id, claim.lease_token)
        assert view is not None and view.expired and view.token_matches
        expired = attempt_store.expire_due(conn, 100)
    assert [a.id for a in expired] == [claim.attempt_id]
    with backend_services.db.write() as conn:
        assert attempt_store.expire_due(conn, 100) == [], "an attempt expires once"
        settled = _settle(conn, claim.point.id, segment_id, None, 3)
    assert settled is not None and settled.state == PointState.PENDING


def test_last_failed_attempt_fails_the_point_with_the_failure_loss(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services, max_attempts=2)
    add_points(backend_services, task_id, segment_id, 1)
    pilot_id = add_pilot(backend_services)
    states = []
    for _ in range(2):
        claim = claim_next(backend_services, pilot_id)
        assert claim is not None
        states.append(_end(backend_services, claim, None, max_attempts=2))
    assert [s.state if s else None for s in states] == [PointState.PENDING, PointState.FAILED]
    assert claim_next(backend_services, pilot_id) is None
    with backend_services.db.read() as conn:
        row = conn.execute(select(points.c.loss, points.c.is_failure, points.c.attempts)).one()
        history = point_store.history(conn, segment_id)
    assert (row.loss, row.is_failure, row.attempts) == (1e5, True, 2)
    assert history[0].failed and history[0].loss == 1e5


def test_state_changes_follow_the_transition_table(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services)
    with backend_services.db.write() as conn:
        assert task_store.set_task_state(conn, task_id, TaskState.FINISHED, end_reason="max_points")
        assert not task_store.set_task_state(conn, task_id, TaskState.KILLED), "finished is terminal"
        assert task_store.set_segment_state(conn, segment_id, SegmentState.EXHAUSTED)
        assert not task_store.set_segment_state(conn, segment_id, SegmentState.ACTIVE)
        assert task_store.set_segment_state(conn, segment_id, SegmentState.DONE)
        task = task_store.get_task(conn, task_id, None)
    assert task is not None and task.state == "finished" and task.finished_at is not None


def test_concurrent_claims_never_hand_out_a_point_twice(backend_services: Services) -> None:
    task_id, segment_id = add_task(backend_services, n_parallel_evaluation=100, max_evaluation_jobs=100, max_points=60)
    add_points(backend_services, task_id, segment_id, 60)
    pilot_id = add_pilot(backend_services)
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                claim = claim_next(backend_services, pilot_id)
            except StoreBusy:
                continue
            except BaseException as exc:
                errors.append(exc)
                return
            if claim is None:
                return
            with lock:
                claimed.append(claim.point.number)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(claimed) == list(range(1, 61))


def test_tokens_are_stored_hashed_and_can_be_revoked(backend_services: Services) -> None:
    with backend_services.db.write() as conn:
        token_id = token_store.insert_token(conn, "ab" * 32, "user", "alice", "laptop", None)
        expired_id = token_store.insert_token(conn, "cd" * 32, "user", "alice", "old", database_time(conn) - 1)
    with backend_services.db.read() as conn:
        found = token_store.find_valid_token(conn, "ab" * 32)
        assert token_store.find_valid_token(conn, "cd" * 32) is None, f"token {expired_id} has expired"
    assert found is not None and found.owner == "alice" and found.role == "user"
    with backend_services.db.write() as conn:
        assert token_store.revoke_token(conn, token_id)
        assert not token_store.revoke_token(conn, token_id)
    with backend_services.db.read() as conn:
        assert token_store.find_valid_token(conn, "ab" * 32) is None


@pytest.mark.parametrize("n", [0, 1])
def test_history_shows_pending_points_as_none(backend_services: Services, n: int) -> None:
    task_id, segment_id = add_task(backend_services)
    add_points(backend_services, task_id, segment_id, n + 1)
    with backend_services.db.read() as conn:
        history = point_store.history(conn, segment_id)
    assert [h.loss for h in history] == [None] * (n + 1)
    assert all(h.pending for h in history)


def test_segment_counters_match_the_points(backend_services: Services) -> None:
    """The counters the claim relies on agree with a count of the rows after every kind of move."""
    task_id, segment_id = add_task(backend_services, max_attempts=2)
    add_points(backend_services, task_id, segment_id, 6)
    pilot_id = add_pilot(backend_services)
    outcomes = [0.5, None, None, 0.25]  # done, retry, (claim again) failed..., done
    for loss in outcomes:
        claim = claim_next(backend_services, pilot_id)
        assert claim is not None
        _end(backend_services, claim, loss, max_attempts=2)
    assert claim_next(backend_services, pilot_id) is not None  # one left running
    with backend_services.db.write() as conn:
        point_store.cancel_unfinished_points(conn, segment_id=segment_id, include_running=False)
    with backend_services.db.read() as conn:
        segment = task_store.get_segment(conn, segment_id)
        rows = dict(
            conn.execute(
                select(points.c.state, func.count()).where(points.c.segment_id == segment_id).group_by(points.c.state)
            ).all()
        )
    assert segment is not None
    assert segment.generated == sum(rows.values()) == 6
    assert segment.pending == rows.get("pending", 0)
    assert segment.running == rows.get("running", 0) == 1
    assert segment.evaluated == rows.get("done", 0) + rows.get("failed", 0) == 3


def test_incremental_history_matches_a_full_read(backend_services: Services) -> None:
    from hposteer.service.operations.history import HistoryCache

    task_id, segment_id = add_task(backend_services, max_attempts=2)
    cache = HistoryCache(margin_s=5)
    pilot_id = add_pilot(backend_services)

    def check() -> None:
        with backend_services.db.read() as conn:
            assert cache.history(conn, segment_id) == point_store.history(conn, segment_id)

    check()
    add_points(backend_services, task_id, segment_id, 3)
    check()
    for loss in (0.5, None):
        claim = claim_next(backend_services, pilot_id)
        assert claim is not None
        check()
        _end(backend_services, claim, loss, max_attempts=2)
        check()
    add_points(backend_services, task_id, segment_id, 2, iteration=2)
    with backend_services.db.write() as conn:
        point_store.cancel_unfinished_points(conn, segment_id=segment_id, include_running=False)
    check()
    with backend_services.db.read() as conn:
        assert [o.point_id for o in cache.history(conn, segment_id)] == [1]


def test_a_claim_is_its_transactions_last_write(backend_services: Services) -> None:
    """After ``claim_next`` returned a claim the connection refuses writes (store.claim_write), on
    every backend: reads go on; a write raises WriteAfterClaim and, not pipelined, the transaction
    (the claim with it) is rolled back."""
    task_id, segment_id = add_task(backend_services)
    add_points(backend_services, task_id, segment_id, 2)
    pilot_id = add_pilot(backend_services)
    request = claims.ClaimRequest(site="SITE-A", pilot_id=pilot_id, slot="0", lease_ttl_s=30.0)
    with pytest.raises(WriteAfterClaim), backend_services.db.write() as conn:  # noqa: PT012
        tx = ClaimWrite(conn)
        claim = claims.claim_next(tx, request)
        assert claim is not None and tx.writes_over
        assert point_store.point_state(conn, claim.point.id) == PointState.RUNNING.value  # a read
        point_store.cancel_unfinished_points(conn, segment_id=segment_id, include_running=False)
    with backend_services.db.read() as conn:
        states = conn.execute(select(points.c.state).where(points.c.segment_id == segment_id)).scalars().all()
    assert states == [PointState.PENDING.value] * 2, "the refused write and the claim before it were rolled back"
    with backend_services.db.write() as conn:  # a claim that found nothing leaves the transaction open
        point_store.cancel_unfinished_points(conn, segment_id=segment_id, include_running=False)
        tx = ClaimWrite(conn)
        assert claims.claim_next(tx, request) is None
        assert not tx.writes_over
        point_store.cancel_unfinished_points(conn, segment_id=segment_id, include_running=False)
