"""Migrations: the revisions, applied from the first, give exactly the schema of ``store.tables``
on every backend, and the downgrade path works too."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.operations.context import Services
from service.store.migrate import current_revision, head_revision, upgrade
from service.store.tables import metadata


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

    from service.store.migrate import _config

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
