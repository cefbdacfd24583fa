"""Intermediate reports: the attempt_reports table and the attempts' refused report lines

A payload's intermediate reports (docs/multi-fidelity.md) arrive with the pilot's heartbeats and
are kept one row per (attempt, step); ``seq`` is their arrival order. The last refused report lines
of an attempt are kept on the attempt (``report_refusals``). Existing rows need nothing: an attempt
without reports has none, and a task without a ``report_file`` job setting gets the default.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("attempts", sa.Column("report_refusals", sa.JSON(), nullable=True))
    op.create_table(
        "attempt_reports",
        sa.Column("seq", _ID, autoincrement=True, nullable=False),
        sa.Column("attempt_id", _ID, nullable=False),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("point_id", _ID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_attempt_reports_attempt_id_attempts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_attempt_reports")),
        sa.UniqueConstraint("attempt_id", "step", name=op.f("uq_attempt_reports_attempt_id_step")),
    )
    op.create_index("ix_attempt_reports_point_id_seq", "attempt_reports", ["point_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_attempt_reports_point_id_seq", table_name="attempt_reports")
    op.drop_table("attempt_reports")
    op.drop_column("attempts", "report_refusals")
