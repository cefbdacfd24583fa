"""The reaper: attempts whose lease ran out are expired and their points go back to pending.

Safe to run in several processes at once: each expiry is a guarded UPDATE, so an attempt
is expired (and its point settled) exactly once.
"""

from __future__ import annotations

from hposteer.service.operations.context import Services
from hposteer.service.operations.lifecycle import attempt_ended
from hposteer.service.operations.outbox import Outbox
from hposteer.service.store import attempts as attempt_store


def reap_expired(services: Services, *, batch: int = 500) -> int:
    """Expire every lapsed lease; returns how many attempts were expired."""
    outbox = Outbox(services)
    with services.db.write() as conn:
        expired = attempt_store.expire_due(conn, batch)
        touched: set[int] = set()
        for attempt in expired:
            attempt_ended(conn, services, attempt, None, outbox)
            touched.add(attempt.segment_id)
    outbox.publish()
    if touched:
        services.steering.notify(touched)
    return len(expired)
