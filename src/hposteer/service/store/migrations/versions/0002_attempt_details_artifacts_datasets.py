"""attempt details, idempotency keys, artifacts, datasets, brokerage and retry columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("failures_as_losses", sa.Boolean(), nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("requirements", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("job_settings", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("max_points_per_job", sa.Integer(), nullable=True))
    op.add_column("points", sa.Column("retry_base", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("segments", sa.Column("extra_jobs", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("attempts", sa.Column("meta", sa.JSON(), nullable=True))
    op.add_column("attempts", sa.Column("job_step", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("attempts", sa.Column("request_key", sa.String(length=64), nullable=True))
    op.add_column("attempts", sa.Column("completion_key", sa.String(length=64), nullable=True))
    op.create_index("ix_attempts_pilot_id_request_key", "attempts", ["pilot_id", "request_key"])
    op.add_column("pilots", sa.Column("capabilities", sa.JSON(), nullable=True))
    op.create_table(
        "artifacts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("point_id", _ID, nullable=False),
        sa.Column("attempt_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_artifacts_task_id_tasks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["point_id"], ["points.id"], name=op.f("fk_artifacts_point_id_points"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name=op.f("fk_artifacts_sha256_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("point_id", "kind", name=op.f("uq_artifacts_point_id_kind")),
    )
    op.create_index("ix_artifacts_task_id_kind", "artifacts", ["task_id", "kind"])
    op.create_table(
        "datasets",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("frozen_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_datasets_owner_name")),
    )
    op.create_table(
        "dataset_files",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_files_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_files")),
        sa.UniqueConstraint("dataset_id", "name", name=op.f("uq_dataset_files_dataset_id_name")),
    )


def downgrade() -> None:
    op.drop_table("dataset_files")
    op.drop_table("datasets")
    op.drop_index("ix_artifacts_task_id_kind", table_name="artifacts")
    op.drop_table("artifacts")
    op.drop_column("pilots", "capabilities")
    op.drop_index("ix_attempts_pilot_id_request_key", table_name="attempts")
    for column in ("completion_key", "request_key", "job_step", "meta"):
        op.drop_column("attempts", column)
    op.drop_column("points", "retry_base")
    op.drop_column("segments", "extra_jobs")
    for column in ("max_points_per_job", "job_settings", "requirements", "failures_as_losses"):
        op.drop_column("tasks", column)
