"""Migrations: the revisions, applied from the first, give exactly the schema of ``store.tables``
on every backend, and the downgrade path works too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from hposteer.service.operations.context import Services
from hposteer.service.store.database import Database
from hposteer.service.store.migrate import (
    SchemaError,
    current_revision,
    head_revision,
    prepare_schema,
    schema_status,
    upgrade,
)
from hposteer.service.store.tables import metadata


def _differences(services: Services) -> list[object]:
    with services.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_revisions_from_the_first_build_the_declared_schema(backend_services: Services) -> None:
    assert current_revision(backend_services.db.engine) == head_revision()
    assert _differences(backend_services) == []


def test_upgrading_a_first_revision_database_keeps_its_rows(backend_services: Services) -> None:
    from alembic import command
    from sqlalchemy import text

    from hposteer.service.store.migrate import _config

    engine = backend_services.db.engine
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tokens (token_hash, role, owner, label, created_at) "
                "VALUES ('abc', 'user', 'alice', 'kept', 1.0)"
            )
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT label FROM tokens WHERE token_hash = 'abc'")).scalar_one() == "kept"
    assert _differences(backend_services) == []


def _downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    from hposteer.service.store.migrate import _config

    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_replicas_starting_together_migrate_once(backend_services: Services) -> None:
    """Four engines (as four replicas) upgrade an empty database at once: one migrates, the others
    wait for its lock and find the schema current."""
    _downgrade(backend_services.db.engine, "base")
    assert schema_status(backend_services.db.engine).state == "empty"
    url = backend_services.settings.resolved_database_url
    engines = [Database(url, busy_timeout_s=30).engine for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def replica(engine: Engine) -> None:
        barrier.wait()
        try:
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert schema_status(backend_services.db.engine).state == "current"
    assert _differences(backend_services) == []


def test_a_service_refuses_a_schema_it_cannot_serve(backend_services: Services) -> None:
    engine = backend_services.db.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    for auto in (True, False):
        with pytest.raises(SchemaError, match="revision ffffffffffff, which this hposteer does not know"):
            prepare_schema(engine, auto_migrate=auto, where="DB")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    _downgrade(engine, "0001")
    needs = r"has schema revision 0001; this hposteer needs revision .*hposteer db upgrade"
    with pytest.raises(SchemaError, match=needs):
        prepare_schema(engine, auto_migrate=False, where="DB")
    assert current_revision(engine) == "0001", "nothing was changed"
    assert prepare_schema(engine, auto_migrate=True, where="DB").state == "current"


def test_serve_refuses_an_old_schema_with_one_line_and_exit_code_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = Database(url).engine
    try:
        upgrade(engine, "0001")
    finally:
        engine.dispose()
    env = {**os.environ, "HPOSTEER_AUTO_MIGRATE": "false"}
    served = subprocess.run(
        [sys.executable, "-m", "hposteer.service", "serve", "--database-url", url,
         "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert served.returncode == 1, served.stderr
    assert served.stderr.startswith("error: the database sqlite:///") and "hposteer db upgrade" in served.stderr
    assert "Traceback" not in served.stderr
    upgraded = subprocess.run(
        [sys.executable, "-m", "hposteer.service", "db", "upgrade", "--database-url", url, "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert upgraded.returncode == 0 and f"(newest {head_revision()})" in upgraded.stdout, upgraded.stderr


def test_0006_fails_the_tasks_that_ended_finished_with_no_point_done(backend_services: Services) -> None:
    """A database of revision 0005 holds tasks that ended ``finished``: one whose every point failed,
    one with a done point, one with no point. 0006 fails the first (all_points_failed) and the last
    (no_points_evaluated), keeps every row and the segments' end reason; the downgrade restores it."""
    from tests.support.store_rows import add_points, add_task

    engine = backend_services.db.engine
    _downgrade(engine, "0005")
    all_failed, seg_a = add_task(backend_services)
    one_done, seg_b = add_task(backend_services)
    no_point, _ = add_task(backend_services)
    add_points(backend_services, all_failed, seg_a, 3)
    add_points(backend_services, one_done, seg_b, 2)
    with engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET state = 'finished', end_reason = 'max_points', finished_at = 5.0"))
        conn.execute(text("UPDATE points SET state = 'failed', loss = 100000.0, is_failure = :t"), {"t": True})
        conn.execute(
            text("UPDATE points SET state = 'done', loss = 0.5, is_failure = :f WHERE task_id = :id AND number = 1"),
            {"f": False, "id": one_done},
        )
    upgrade(engine)

    def tasks_now() -> dict[int, tuple[str, str, str | None, float]]:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, state, end_reason, message, finished_at FROM tasks")).all()
        return {r.id: (r.state, r.end_reason, r.message, r.finished_at) for r in rows}

    after = tasks_now()
    assert after[all_failed][:2] == ("failed", "all_points_failed")
    assert after[all_failed][2] == "all 3 evaluated points failed (the task ended: max_points); no loss to report"
    assert after[one_done] == ("finished", "max_points", None, 5.0)
    assert after[no_point][:2] == ("failed", "no_points_evaluated")
    assert all(row[3] == 5.0 for row in after.values()), "when they ended is kept"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM points WHERE state = 'failed'")).scalar_one() == 4
    _downgrade(engine, "0005")
    assert all(row == ("finished", "max_points", None, 5.0) for row in tasks_now().values()), tasks_now()
    upgrade(engine)
    assert tasks_now() == after


def test_0007_adds_the_reports_to_a_database_with_running_attempts(backend_services: Services) -> None:
    """A database of revision 0006 with a running attempt: after 0007 the attempt has no report and
    no refused line, takes reports (idempotently), and the downgrade drops them again."""
    from sqlalchemy import inspect

    from hposteer.core.intermediate_reports import IntermediateReport
    from hposteer.service.store import attempt_reports
    from tests.support.store_rows import add_pilot, add_points, add_task, claim_next

    engine = backend_services.db.engine
    _downgrade(engine, "0006")
    assert "attempt_reports" not in inspect(engine).get_table_names()
    task_id, segment_id = add_task(backend_services)
    add_points(backend_services, task_id, segment_id, 1)
    claim = claim_next(backend_services, add_pilot(backend_services))
    assert claim is not None
    upgrade(engine)
    assert _differences(backend_services) == []
    with backend_services.db.write() as conn:
        assert attempt_reports.last_step(conn, claim.attempt_id) is None
        reports = [IntermediateReport(s, {"loss": 1.0 / (s + 1)}) for s in range(3)]
        stored = attempt_reports.store_reports(conn, claim.attempt_id, reports, max_per_attempt=10)
        assert (stored.reports_stored, stored.last_step) == (3, 2)
        again = attempt_reports.store_reports(conn, claim.attempt_id, reports, max_per_attempt=10)
        assert (again.reports_stored, again.last_step) == (0, 2)
        attempt_reports.add_refusals(conn, claim.attempt_id, [f"line {i}" for i in range(25)])
        held = conn.execute(text("SELECT report_refusals FROM attempts")).scalar_one()
    assert held is not None
    _downgrade(engine, "0006")
    assert "attempt_reports" not in inspect(engine).get_table_names()
    upgrade(engine)
    with backend_services.db.read() as conn:
        assert attempt_reports.summaries(conn, [claim.attempt_id]) == {}
