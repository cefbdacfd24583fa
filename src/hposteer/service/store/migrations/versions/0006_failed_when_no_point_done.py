"""A task that ended with no point done is failed, not finished

A task whose every point failed (or that evaluated none) used to end ``finished`` like a
successful one. It now ends ``failed`` with the end reason ``all_points_failed`` or
``no_points_evaluated`` (src/hposteer/service/core/scheduling.py ``task_end``). No column changes: this moves
the existing tasks that ended that way, keeping their points, and keeps the segments' end reason
in the task's message ("(the task ended: REASON)"), which the downgrade reads back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NO_DONE_POINT = (
    "tasks.state = 'finished' AND NOT EXISTS "
    "(SELECT 1 FROM points WHERE points.task_id = tasks.id AND points.state = 'done')"
)
_ENDED = re.compile(r"\(the task ended: ([a-z_]+)\)")


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, coalesce(end_reason, 'completed') AS reason,"
            " (SELECT count(*) FROM points WHERE points.task_id = tasks.id AND points.state = 'failed') AS n_failed"
            f" FROM tasks WHERE {_NO_DONE_POINT}"
        )
    ).all()
    for row in rows:
        if row.n_failed:
            reason = "all_points_failed"
            message = f"all {row.n_failed} evaluated points failed (the task ended: {row.reason}); no loss to report"
        else:
            reason = "no_points_evaluated"
            message = f"no point was evaluated (the task ended: {row.reason})"
        conn.execute(
            sa.text("UPDATE tasks SET state = 'failed', end_reason = :reason, message = :message WHERE id = :id"),
            {"reason": reason, "message": message, "id": row.id},
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, message FROM tasks WHERE state = 'failed'"
            " AND end_reason IN ('all_points_failed', 'no_points_evaluated')"
        )
    ).all()
    for row in rows:
        found = _ENDED.search(row.message or "")
        conn.execute(
            sa.text("UPDATE tasks SET state = 'finished', end_reason = :reason, message = NULL WHERE id = :id"),
            {"reason": found.group(1) if found else "completed", "id": row.id},
        )
