"""Engine set-up, transactions and the database clock.

SQLite (the embedded default) runs in WAL mode; write transactions start with
``BEGIN IMMEDIATE`` so that two writers never both read and then fail to upgrade their
lock, and readers use plain ``BEGIN``. PostgreSQL gets ``FOR UPDATE SKIP LOCKED`` claims
(see store.claims), and a ``lock_timeout`` (the busy timeout) and ``statement_timeout`` on every
connection. A database that stays locked past the busy timeout, a statement past its limit, or no
free pooled connection within the busy timeout raises :class:`StoreBusy`, which the API answers
with 503 and ``Retry-After``.

A pooled PostgreSQL connection is checked with a ping before use only when it has been idle for
``PING_AFTER_IDLE_S`` (a restarted or failed-over server, a connection cut by a firewall): a busy
service reuses its connections within milliseconds, and a ping before each transaction was a
round trip of the pilots' hot path (docs/benchmarks.md (e)).

Three kinds of transaction: ``read``, ``write`` (committed when its block ends), and
``write_ending_with_claim`` (acquire; complete, then claim), which on PostgreSQL ends with its
claim's statement sent with the COMMIT (store.claim_write) and is run once more, the ordinary way,
when that statement finds a limit reached at the last moment. No store function commits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Float

from hposteer.service.store.claim_write import ClaimWrite, FinalStatementMissed, refuse_writes_after_the_claim

PING_AFTER_IDLE_S = 1.0
T = TypeVar("T")


class StoreBusy(RuntimeError):
    """The database could not take the request in time (lock or pool timeout); retry later."""


class db_now(FunctionElement[float]):
    """The database's clock in seconds since the epoch, with sub-second precision."""

    type = Float()
    inherit_cache = True


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


def now_expr() -> ColumnElement[float]:
    return db_now()


def database_time(conn: Connection) -> float:
    """The database clock now, as seen from this connection."""
    return float(conn.execute(select(db_now())).scalar_one())


class Database:
    """One engine plus the two kinds of transaction the use cases need."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_s: float = 5.0,
        pool_size: int = 16,
        statement_timeout_s: float = 30.0,
        echo: bool = False,
    ):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.busy_timeout_s = busy_timeout_s
        # 2 x pool_size kept connections and no overflow: the same most connections as pool_size plus
        # as many in overflow, but an overflow connection is closed at every check-in while the
        # pool is full, so under load PostgreSQL forked a new backend per request (figures:
        # docs/benchmarks.md (e)).
        pool = {"pool_size": 2 * pool_size, "max_overflow": 0, "pool_timeout": busy_timeout_s}
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"timeout": busy_timeout_s, "check_same_thread": False}
            self.engine = create_engine(url, echo=echo, connect_args=connect_args, **pool)
            _configure_sqlite(self.engine, busy_timeout_s)
        else:
            # A lock wait past the busy timeout, or a statement past its own limit, is cancelled by the
            # server (-> StoreBusy -> 503), so a request never hangs on the database.
            options = (
                f"-c lock_timeout={int(busy_timeout_s * 1000)} -c statement_timeout={int(statement_timeout_s * 1000)}"
            )
            self.engine = create_engine(url, echo=echo, connect_args={"options": options}, **pool)
            _ping_when_idle(self.engine, PING_AFTER_IDLE_S)
        refuse_writes_after_the_claim(self.engine)
        self._writer = self.engine.execution_options(hposteer_write=True)
        # SQLite has one writer at a time. Threads of this process queue on a mutex, which
        # wakes the next one at once, instead of in SQLite's busy handler, which sleeps in
        # steps of up to 100 ms; other processes (the steering child) still meet the busy timeout.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=self.busy_timeout_s):
            raise StoreBusy(f"no write slot within {self.busy_timeout_s} s")
        try:
            with _busy_as_store_busy(), self._writer.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    def write_ending_with_claim(self, use_case: Callable[[ClaimWrite], T]) -> T:
        """Run ``use_case`` in one write transaction whose last write is its claim (store.claim_write).

        PostgreSQL: the claim's statement goes with the COMMIT, so the transaction ends inside
        ``ClaimWrite.last_write``, before this block does. Should that statement find a limit
        reached (:class:`FinalStatementMissed`: everything was rolled back), ``use_case`` runs once
        more in a new transaction with the statement and the COMMIT apart; that one cannot miss
        (it tries the next candidate instead). SQLite: one ordinary write transaction.
        """
        pipelined = not self.is_sqlite
        try:
            with self.write() as conn:
                return use_case(ClaimWrite(conn, pipelined=pipelined))
        except FinalStatementMissed:
            if not pipelined:
                raise
        with self.write() as conn:
            return use_case(ClaimWrite(conn, pipelined=False))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot; rolled back at the end)."""
        with _busy_as_store_busy(), self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """``pool_pre_ping`` for connections unused for ``idle_s`` or more: a dead one is replaced (the
    pool tries again with a fresh connection) before a transaction could fail on it."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_s:
            return  # connected just now, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool drops this connection and checks out another
            raise DisconnectionError(
                f"a pooled connection failed its ping after {time.monotonic() - since:.0f} s idle"
            ) from exc


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE (site matching) is case-sensitive on PostgreSQL; make SQLite agree.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("hposteer_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        "database is locked" in text
        or "database table is locked" in text
        or "queuepool limit" in text
        or "could not obtain lock" in text
        or "lock timeout" in text
        or "statement timeout" in text
    )


@contextmanager
def _busy_as_store_busy() -> Iterator[None]:
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if _is_busy(exc):
            raise StoreBusy(str(exc.orig) if exc.orig is not None else str(exc)) from exc
        raise
    except PoolTimeout as exc:  # no connection free in the pool
        raise StoreBusy(str(exc)) from exc
