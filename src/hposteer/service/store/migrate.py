"""Schema migrations (Alembic), run programmatically on the service's own engine.

Several replicas may start at once on an empty database: ``upgrade`` holds a lock for the whole
migration (a PostgreSQL transaction-scoped advisory lock; SQLite's write lock through ``BEGIN
IMMEDIATE``), so the second replica waits, then finds the schema current and does nothing.

``prepare_schema`` is what a starting service calls: it migrates (``auto_migrate``) or checks,
and refuses a schema it cannot serve, older or newer than its code, with the command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, make_url, text

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x68706F7374656572 & 0x7FFFFFFFFFFFFFFF  # "hposteer": the advisory lock's key


class SchemaError(RuntimeError):
    """The service cannot serve this database's schema; the message says what to run."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str | None
    state: Literal["empty", "behind", "current", "ahead"]


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = _config()
    locking = engine.execution_options(hposteer_write=True)  # BEGIN IMMEDIATE on SQLite
    with locking.begin() as conn:
        if conn.dialect.name == "postgresql":  # a migration may take long, and may wait for another's
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def schema_status(engine: Engine) -> SchemaStatus:
    current, head = current_revision(engine), head_revision()
    if current is None:
        return SchemaStatus(current, head, "empty")
    if current == head:
        return SchemaStatus(current, head, "current")
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    return SchemaStatus(current, head, "behind" if current in known else "ahead")


def printable_url(url: str) -> str:
    """The database URL for messages and logs, without its password."""
    return make_url(url).render_as_string(hide_password=True)


def prepare_schema(engine: Engine, *, auto_migrate: bool, where: str) -> SchemaStatus:
    """Migrate to the newest schema (``auto_migrate``), or check that it is the newest; ``where``
    names the database in messages. SchemaError when the service must not start."""
    status = schema_status(engine)
    if status.state == "ahead":
        raise SchemaError(
            f"the database {where} has schema revision {status.current}, which this hposteer does not know "
            f"(its newest is {status.head}): a newer hposteer migrated it. Run that version, or restore a "
            "backup taken before its upgrade"
        )
    if status.state == "current":
        return status
    if not auto_migrate:
        found = "no schema" if status.current is None else f"schema revision {status.current}"
        raise SchemaError(
            f"the database {where} has {found}; this hposteer needs revision {status.head}. Run "
            "`hposteer db upgrade` with the same --database-url (docs/operator.md, 'Upgrades'), or start the "
            "service with auto_migrate enabled"
        )
    upgrade(engine)
    return schema_status(engine)
