"""PostgreSQL: a claim's statement sent with the COMMIT in one round trip (store.claim_write
``ClaimWrite.last_write``, pipelined), and what happens when that claim meets a limit at the last
moment (``Database.write_ending_with_claim`` runs the use case once more, not pipelined)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.store.claim_write import ClaimWrite, FinalStatementMissed, WriteAfterClaim
from hposteer.service.store.database import Database, StoreBusy
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


def _bump(conn: Connection, n: int) -> Mapping[str, Any] | None:
    """The probe's bump as a claim's last write, sent with the COMMIT; the guard wants n == ``n`` after it."""
    return ClaimWrite(conn, pipelined=True).last_write(BUMP, {"p_id": 1, "p_n": n}, guard=BUMPED)


def _count_tries(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every ClaimWrite made from now on, as its ``pipelined`` flag (one per run of a use case)."""
    tries: list[bool] = []
    real = ClaimWrite.__init__

    def spy(self: ClaimWrite, conn: Connection, *, pipelined: bool = False) -> None:
        tries.append(pipelined)
        real(self, conn, pipelined=pipelined)

    monkeypatch.setattr(ClaimWrite, "__init__", spy)
    return tries


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
        row = _bump(conn, 1)
        assert row == {"n": 1}
        with db.read() as other:  # committed already, before the block ends
            assert other.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 1
    assert _count(backend_services) == 1
    with db.write() as conn:
        conn.execute(text("DELETE FROM probe WHERE id = 2"))
        conn.execute(update(probe).where(probe.c.id == 1).values(n=2))  # the limit: the bump changes nothing
        with pytest.raises(FinalStatementMissed):
            _bump(conn, 3)
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
        _bump(conn, 1)


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
    last_writes: list[tuple[bool, str]] = []  # (pipelined, outcome) of every claim's last statement
    real = ClaimWrite.last_write

    def spy(self: ClaimWrite, *args: Any, **kwargs: Any) -> Mapping[str, Any] | None:
        try:
            row = real(self, *args, **kwargs)
        except FinalStatementMissed:
            last_writes.append((self.pipelined, "missed"))
            raise
        last_writes.append((self.pipelined, "claimed" if row is not None else "nothing"))
        return row

    monkeypatch.setattr(ClaimWrite, "last_write", spy)
    tries = _count_tries(monkeypatch)
    holder = services.db.engine.connect()  # "another transaction" takes the last job of the budget
    holder.begin()
    holder.execute(text("UPDATE segments SET jobs = jobs + 1 WHERE id = :s"), {"s": segment_id})
    timer = threading.Timer(0.3, holder.commit)  # while the completion's claim waits for the row
    timer.start()
    answer = completion.complete(
        services, PILOT, attempt_id=job.attempt_id,
        report=completion.Report(job.lease_token, "success", loss=0.5, request_key="k"), acquire_next=True,
    )  # fmt: skip
    timer.join()
    holder.close()
    assert tries == [True, False], "the use case ran twice: pipelined, then once more the ordinary way"
    assert last_writes[0] == (True, "missed") and len(last_writes) <= 2, last_writes
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
        _bump(conn, 1)
    for _ in range(2 * backend_services.settings.db_pool_size):  # every pooled connection works
        with db.read() as conn:
            assert conn.execute(text("SELECT n FROM probe WHERE id = 1")).scalar_one() == 0


def test_a_miss_runs_the_use_case_once_more_not_pipelined(backend_services: Services) -> None:
    """``write_ending_with_claim`` owns the one retry: a pipelined miss rolls the first run back
    (its earlier write too), the second run sends its statement apart from the COMMIT and goes on."""
    db = backend_services.db
    _probe_row(db)
    with db.write() as conn:
        conn.execute(update(probe).where(probe.c.id == 1).values(n=2))  # the limit: the bump changes nothing
    runs: list[tuple[bool, Mapping[str, Any] | None]] = []

    def use_case(tx: ClaimWrite) -> int:
        tx.conn.execute(insert(probe).values(id=2 + len(runs), n=0))
        runs.append((tx.pipelined, None))
        row = tx.last_write(BUMP, {"p_id": 1, "p_n": 3}, guard=BUMPED)  # misses
        runs[-1] = (tx.pipelined, row)
        return len(runs)

    assert db.write_ending_with_claim(use_case) == 2
    assert runs == [(True, None), (False, None)]
    with db.read() as conn:
        assert sorted(conn.execute(text("SELECT id FROM probe")).scalars()) == [1, 3], "run 1 was rolled back"


def test_the_retry_happens_once(backend_services: Services) -> None:
    runs: list[bool] = []

    def use_case(tx: ClaimWrite) -> None:
        runs.append(tx.pipelined)
        raise FinalStatementMissed("missed again")

    with pytest.raises(FinalStatementMissed):
        backend_services.db.write_ending_with_claim(use_case)
    assert runs == [True, False]


def test_a_write_after_the_pipelined_claim_is_refused(backend_services: Services) -> None:
    """The claim's statement committed with it; a later write on the connection raises, a read works."""
    db = backend_services.db
    _probe_row(db)
    with pytest.raises(WriteAfterClaim), db.write() as conn:  # noqa: PT012 (the refusal comes after the claim)
        tx = ClaimWrite(conn, pipelined=True)
        assert tx.last_write(BUMP, {"p_id": 1, "p_n": 1}, guard=BUMPED) == {"n": 1}
        assert conn.execute(select(probe.c.n).where(probe.c.id == 1)).scalar_one() == 1  # reads go on
        conn.execute(insert(probe).values(id=2, n=0))
    with pytest.raises(WriteAfterClaim), db.write() as conn:  # noqa: PT012
        tx = ClaimWrite(conn, pipelined=True)
        tx.last_write(BUMP, {"p_id": 1, "p_n": 2}, guard=BUMPED)
        conn.execute(text("UPDATE probe SET n = 0 WHERE id = 1"))
    with pytest.raises(WriteAfterClaim), db.write() as conn:  # noqa: PT012
        conn.execute(update(probe).where(probe.c.id == 1).values(n=0))
        tx = ClaimWrite(conn, pipelined=True)
        tx.last_write(BUMP, {"p_id": 1, "p_n": 1}, guard=BUMPED)
        tx.last_write(BUMP, {"p_id": 1, "p_n": 2}, guard=BUMPED)  # a second claim is a write after the first
    with db.read() as conn:
        assert conn.execute(select(probe.c.id, probe.c.n)).all() == [(1, 1)], "the bumps stayed, nothing after them"
    with db.write() as conn:  # the mark went with its Connection: the pooled connection writes again
        conn.execute(insert(probe).values(id=2, n=0))
