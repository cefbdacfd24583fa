"""The reaper: attempts whose lease ran out are expired and their points go back to pending.

Safe to run in several processes at once: each expiry is a guarded UPDATE, so an attempt
is expired (and its point settled) exactly once.
"""

from __future__ import annotations

from service.operations.context import Services
from service.operations.lifecycle import settle_segment
from service.store import attempts as attempt_store
from service.store import points as point_store


def reap_expired(services: Services, *, batch: int = 500) -> int:
    """Expire every lapsed lease; returns how many attempts were expired."""
    with services.db.write() as conn:
        expired = attempt_store.expire_due(conn, batch)
        touched: set[int] = set()
        for attempt in expired:
            task = services.limits(conn, attempt.task_id)
            if task is None:
                continue
            settled = point_store.settle_point(
                conn,
                point_id=attempt.point_id,
                segment_id=attempt.segment_id,
                loss=None,
                max_attempts=task.max_attempts,
                failure_loss=task.failure_loss,
            )
            if settled is not None:
                settle_segment(conn, task, settled.segment)
            touched.add(attempt.segment_id)
    if touched:
        services.steering.notify(touched)
    return len(expired)
