"""tasks.jobs_started is no longer kept

A claim used to count the task's jobs on the task row to number them; the row was then written by
every claim of the task, a second hot row beside its segment's. Jobs are now numbered from their
segment's own job counter (src/hposteer/service/store/claims.py ``job_number``; the same numbers for a task of
one segment), so the column goes. SQLite drops a plain column in place (3.35 and newer), with no
table copy, so no other table's rows are touched.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE tasks DROP COLUMN jobs_started")


def downgrade() -> None:
    op.add_column("tasks", sa.Column("jobs_started", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE tasks SET jobs_started = (SELECT coalesce(sum(segments.jobs), 0) FROM segments"
        " WHERE segments.task_id = tasks.id)"
    )
