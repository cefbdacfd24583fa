"""The write transaction that ends with a claim (acquire; complete, then claim the next point).

A claim is always its transaction's last write. :class:`ClaimWrite` is the handle that makes this a
rule rather than a habit: the claim's last statement goes through ``ClaimWrite.last_write``, and
from then on the connection refuses every statement but a plain ``SELECT`` (:class:`WriteAfterClaim`;
reads that render the job are still allowed). ``Database.write_ending_with_claim`` runs a use case
in such a transaction and owns its one retry.

Where the transaction ends (PostgreSQL, ``pipelined``): the claim's statement, a guard and the
COMMIT are sent in one round trip (psycopg's pipeline mode), so the hot segment row the statement
locks is released without waiting for this process to read the answer and send the COMMIT
(docs/benchmarks.md (e)). The transaction is therefore over inside ``last_write``, before the
``Database.write`` block ends; what the use case reads afterwards runs in a new transaction
on the same connection, committed (with nothing written) when the block ends. If the guard finds
that the statement did nothing (a limit reached at the last moment), the COMMIT rolls the whole
transaction back and :class:`FinalStatementMissed` is raised: ``write_ending_with_claim`` then runs
the use case once more, not pipelined (the statement and the COMMIT apart, as in any write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Connection, Delete, Engine, Insert, Select, Update, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

LastStatement = Select[Any] | Update | Insert | Delete
# Set on a Connection (its execution options) once its claim's last statement was issued.
_WRITES_OVER = "hposteer_writes_over"


class FinalStatementMissed(RuntimeError):
    """The pipelined claim's guard found that its statement did nothing: the whole transaction was
    rolled back, and the use case may run again the ordinary way."""


class WriteAfterClaim(RuntimeError):
    """A statement other than a read after the transaction's claim (its last write) was issued."""


class ClaimWrite:
    """A write transaction's connection, with the one way to issue its claim's last statement.

    ``pipelined`` (PostgreSQL, first try): that statement goes with the COMMIT. ``skip_locked``
    (PostgreSQL): the claim picks points ``FOR UPDATE SKIP LOCKED`` and writes in one statement.
    """

    def __init__(self, conn: Connection, *, pipelined: bool = False):
        self.conn = conn
        self.skip_locked = conn.dialect.name == "postgresql"
        if pipelined and not self.skip_locked:
            raise ValueError("only PostgreSQL sends a statement with its COMMIT")
        self.pipelined = pipelined
        self.writes_over = False

    def last_write(
        self, statement: LastStatement, params: dict[str, Any], guard: LastStatement | None = None
    ) -> Mapping[str, Any] | None:
        """Issue the transaction's last write and return its first row; None (nothing was written,
        the transaction goes on) when it returned no row, which only a statement not pipelined does.

        Pipelined, ``guard`` must fail (a division by zero) when the statement did not do its work;
        a pipelined miss raises :class:`FinalStatementMissed` with everything rolled back. Either
        way, once a row is returned every later write on the connection raises :class:`WriteAfterClaim`.
        """
        if self.writes_over:
            raise WriteAfterClaim("this transaction already issued its claim, its last write")
        if self.pipelined:
            if guard is None:
                raise ValueError("a statement sent with its COMMIT needs a guard")
            self._end_writes()  # committed or rolled back below, whatever happens
            return _execute_and_commit(self.conn, statement, guard, params)
        row = self.conn.execute(statement, params).first()
        if row is None:
            return None
        self._end_writes()
        return cast("Mapping[str, Any]", row._mapping)

    def _end_writes(self) -> None:
        self.writes_over = True
        self.conn.execution_options(**{_WRITES_OVER: True})


def refuse_writes_after_the_claim(engine: Engine) -> None:
    """Make the engine's connections refuse all but plain ``SELECT`` once ``ClaimWrite.last_write``
    ended their writes (a Connection lives for one transaction block: the mark goes with it)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if conn.get_execution_options().get(_WRITES_OVER) and not _is_plain_select(statement):
            raise WriteAfterClaim(f"a write after this transaction's claim, its last write: {statement[:80]!r}")


def _is_plain_select(statement: str) -> bool:
    return statement.lstrip()[:6].upper() == "SELECT"


_COMPILED: dict[int, tuple[ClauseElement, SQLCompiler]] = {}


def _execute_and_commit(
    conn: Connection, statement: LastStatement, guard: LastStatement, params: dict[str, Any]
) -> dict[str, Any]:
    """PostgreSQL: ``statement``, then ``guard``, then COMMIT, in one round trip (psycopg's pipeline
    mode); returns the statement's first row. ``statement`` and ``guard`` must be built once
    (their compiled form is kept per object)."""
    import psycopg

    compiled = [_compiled(conn, s) for s in (statement, guard)]
    # SQLAlchemy's own expansion of bound parameters (the brokerage's expanding IN) for the raw
    # cursor: a private function, pinned by uv.lock and exercised by tests/store/test_claim_write.py.
    expanded = [c._process_parameters_for_postcompile(c.construct_params(params)) for c in compiled]
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with raw.pipeline():
            main, check = raw.cursor(), raw.cursor()
            main.execute(expanded[0].statement, expanded[0].parameters)
            check.execute(expanded[1].statement, expanded[1].parameters)
            raw.commit()
        row = main.fetchone()
    except psycopg.errors.DivisionByZero as exc:
        raise FinalStatementMissed("the final statement changed nothing; the transaction was rolled back") from exc
    except psycopg.Error as exc:  # as SQLAlchemy would have raised it (a lock timeout -> StoreBusy)
        raise DBAPIError.instance(expanded[0].statement, params, exc, psycopg.Error, dialect=conn.dialect) from exc
    if row is None or main.description is None:
        raise FinalStatementMissed("the final statement returned no row")
    return {column.name: value for column, value in zip(main.description, row, strict=True)}


def _compiled(conn: Connection, statement: ClauseElement) -> SQLCompiler:
    entry = _COMPILED.get(id(statement))
    if entry is not None and entry[0] is statement:
        return entry[1]
    compiled = statement.compile(dialect=conn.dialect)
    assert isinstance(compiled, SQLCompiler)
    _COMPILED[id(statement)] = (statement, compiled)
    return compiled
