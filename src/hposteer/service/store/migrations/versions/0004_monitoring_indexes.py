"""indexes for the web UI at 100,000 points per task (src/hposteer/service/store/monitoring.py)

(task_id, state, number, loss) replaces (task_id, state), whose every use it serves: the points
table filtered by state in number order, and the running best over done points read from the
index alone. (task_id, state, loss, number) orders a state's points by loss (the points table,
the best point, the best points of parallel coordinates). (task_id, site) on attempts counts a
task's attempts per site (the task list's site mix) from the index alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_points_task_id_state_number_loss", "points", ["task_id", "state", "number", "loss"])
    op.create_index("ix_points_task_id_state_loss_number", "points", ["task_id", "state", "loss", "number"])
    op.drop_index("ix_points_task_id_state", table_name="points")
    op.create_index("ix_attempts_task_id_site", "attempts", ["task_id", "site"])


def downgrade() -> None:
    op.drop_index("ix_attempts_task_id_site", table_name="attempts")
    op.create_index("ix_points_task_id_state", "points", ["task_id", "state"])
    op.drop_index("ix_points_task_id_state_loss_number", table_name="points")
    op.drop_index("ix_points_task_id_state_number_loss", table_name="points")
