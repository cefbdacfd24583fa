"""Alembic environment: runs on the connection handed over by hposteer.service.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hposteer.service.store.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only with the alembic CLI, which we do not ship
    raise RuntimeError("run migrations through `python -m hposteer.service db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
