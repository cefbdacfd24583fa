"""PostgreSQL: a pooled connection that died while idle (a server restart, a fail-over, a
firewall) is replaced before a transaction runs on it; a connection in use a moment ago is
trusted without a ping (src/hposteer/service/store/database.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hposteer.service.store import database
from hposteer.service.store.database import Database
from tests.conftest import POSTGRES_URL, _postgres_database, require_postgres


def _counted_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The dialect's real ping, recording whether each one succeeded."""
    pings: list[bool] = []
    real = db.engine.dialect.do_ping

    def ping(dbapi_conn: Any) -> bool:
        try:
            real(dbapi_conn)
        except Exception:
            pings.append(False)
            raise
        pings.append(True)
        return True

    monkeypatch.setattr(db.engine.dialect, "do_ping", ping)
    return pings


def test_a_connection_killed_while_idle_is_replaced_before_use(monkeypatch: pytest.MonkeyPatch) -> None:
    require_postgres()
    assert POSTGRES_URL is not None
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.3)
    databases = _postgres_database()
    url = next(databases)
    db = Database(url, pool_size=1)
    pings = _counted_pings(db, monkeypatch)
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with db.read() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as kill:
            assert kill.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        time.sleep(0.5)  # idle past the threshold: pinged, found dead, replaced
        with db.write() as conn:
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first, "a fresh connection took over, and the transaction succeeded"
        assert pings == [False], "one ping, which found the connection dead; the new one needed none"
        for _ in range(3):  # back to back: no ping between transactions
            with db.read() as conn:
                conn.execute(text("SELECT 1"))
        assert pings == [False]
        time.sleep(0.5)
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        assert pings == [False, True], "idle again: pinged, alive, used"
    finally:
        db.dispose()
        admin.dispose()
        for _ in databases:
            pass
