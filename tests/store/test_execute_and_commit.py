"""PostgreSQL: a claim's statement sent with the COMMIT in one round trip (store.database
``execute_and_commit``), and what happens when that claim meets a limit at the last moment."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, func, insert, literal, select, text, update
from sqlalchemy.exc import DBAPIError

from hposteer.service.operations import pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.store import claims
from hposteer.service.store.database import Database, FinalStatementMissed, StoreBusy, execute_and_commit
from tests.support.steered_tasks import PILOT, one_slot_pilot, steered_segment

# Row locks and the pipelined COMMIT are PostgreSQL's (SQLite has one writer at a time and no pipeline).
pytestmark = pytest.mark.parametrize("backend_services", ["postgresql"], indirect=True)

probe = Table("probe", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
BUMP = update(probe).where(probe.c.id == bindparam("p_id"), probe.c.n < 2).values(n=probe.c.n + 1).returning(probe.c.n)
BUMPED = select(literal(1, Integer) / func.count()).select_from(probe).where(probe.c.n == bindparam("p_n"))


def _probe_row(db: Database) -> None:
    """The probe table with its one row (id 1, n 0)."""
    with db.write() as conn:
        probe.create(conn)
        conn.execute(insert(probe).values(id=1, n=0))


def _count(services: Services) -> int:
    with services.db.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM probe WHERE id = 2")).scalar_one())


def test_the_statement_and_the_commit_go_together_and_a_miss_rolls_everything_back(
    backend_services: Services,
) -> None:
    db = backend_services.db
    _probe_row(db)
    with db.write() as conn:
        conn.execute(insert(probe).values(id=2, n=0))  # an earlier write of the same transaction
        row = execute_and_commit(conn, BUMP, BUMPED, {"p_id": 1, "p_n": 1})
        assert row == {"n": 1}
        with db.read() as other:  # committed already, before the block ends
            assert other.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 1
    assert _count(backend_services) == 1
    with db.write() as conn:
        conn.execute(text("DELETE FROM probe WHERE id = 2"))
        conn.execute(update(probe).where(probe.c.id == 1).values(n=2))  # the limit: the bump changes nothing
        with pytest.raises(FinalStatementMissed):
            execute_and_commit(conn, BUMP, BUMPED, {"p_id": 1, "p_n": 3})
    assert _count(backend_services) == 1, "the earlier writes of the transaction were rolled back too"
    with db.read() as conn:
        assert conn.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 1


def test_a_lock_wait_past_the_timeout_is_store_busy(backend_services: Services) -> None:
    db = backend_services.db
    _probe_row(db)
    holder = db.engine.connect()
    holder.begin()
    holder.execute(text("SELECT n FROM probe WHERE id = 1 FOR UPDATE"))
    try:
        with pytest.raises(StoreBusy):
            _bump_with_short_lock_timeout(db)
    finally:
        holder.rollback()
        holder.close()
    with db.read() as conn:
        assert conn.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 0


def _bump_with_short_lock_timeout(db: Database) -> None:
    with db.write() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '200ms'"))
        execute_and_commit(conn, BUMP, BUMPED, {"p_id": 1, "p_n": 1})


def test_a_completion_whose_next_claim_meets_the_limit_at_the_last_moment_is_stored_once(
    backend_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate query (no lock) sees job budget left; by the time the claim's statement has
    the segment's row, another transaction started the last job. The fast path rolls back the
    whole completion and the use case runs again the ordinary way: the result is stored once, no
    job beyond maxEvaluationJobs is started, and the segment ends with its budget spent."""
    services = backend_services
    _, segment_id = steered_segment(services, points=4, site="FINAL", max_evaluation_jobs=2)
    pilot_id = one_slot_pilot(services, "FINAL")
    job = pilot_jobs.acquire(services, PILOT, pilot_id=pilot_id, slot="0")
    assert job is not None
    misses: list[str] = []
    real = claims.execute_and_commit

    def spy(*args: Any) -> dict[str, Any]:
        try:
            return real(*args)
        except FinalStatementMissed as exc:
            misses.append(str(exc))
            raise

    monkeypatch.setattr(claims, "execute_and_commit", spy)
    holder = services.db.engine.connect()  # "another transaction" takes the last job of the budget
    holder.begin()
    holder.execute(text("UPDATE segments SET jobs = jobs + 1 WHERE id = :s"), {"s": segment_id})
    timer = threading.Timer(0.3, holder.commit)  # while the completion's claim waits for the row
    timer.start()
    answer = pilot_jobs.complete(
        services, PILOT, attempt_id=job.attempt_id,
        report=pilot_jobs.Report(job.lease_token, "success", loss=0.5, request_key="k"), acquire_next=True,
    )  # fmt: skip
    timer.join()
    holder.close()
    assert len(misses) == 1, "the fast path met the limit once"
    assert answer.accepted and answer.point_state == "done" and answer.next_job is None
    with services.db.read() as conn:
        states = dict(conn.execute(text("SELECT state, count(*) FROM attempts GROUP BY state")).all())
        segment = conn.execute(
            text("SELECT state, end_reason, running, evaluated, jobs FROM segments WHERE id = :s"), {"s": segment_id}
        ).one()
    assert states == {"succeeded": 1}, "the result is stored once, and no attempt was opened"
    assert tuple(segment) == ("done", "max_evaluation_jobs", 0, 1, 2)


def test_a_connection_lost_before_the_final_statement_is_not_handed_out_again(backend_services: Services) -> None:
    """The error reaches the caller as SQLAlchemy's, and the dead connection leaves the pool (the
    transaction's rollback finds it closed), so no later request meets it."""
    db = backend_services.db
    _probe_row(db)
    with pytest.raises(DBAPIError), db.write() as conn:  # noqa: PT012 (the loss is set up inside the transaction)
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        execute_and_commit(conn, BUMP, BUMPED, {"p_id": 1, "p_n": 1})
    for _ in range(2 * backend_services.settings.db_pool_size):  # every pooled connection works
        with db.read() as conn:
            assert conn.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 0
