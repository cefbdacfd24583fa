"""Why a pilot write fenced by (attempt id, lease token) was refused: one answer for every pilot route."""

from __future__ import annotations

from hposteer.service.core.states import AttemptState
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Conflict, NotFound
from hposteer.service.store import attempts as attempt_store


def lease_refusal(services: Services, attempt_id: int, lease_token: str, *, what: str = "") -> Conflict | NotFound:
    """The 404/409 for a write whose lease is not live; ``what`` names the refused write in the message."""
    suffix = f"; {what} refused" if what else ""
    with services.db.read() as conn:
        view = attempt_store.lease_view(conn, attempt_id, lease_token)
    if view is None:
        return NotFound(f"attempt {attempt_id} does not exist", code="attempt_not_found")
    if not view.token_matches:
        return Conflict(f"attempt {attempt_id} is leased to someone else (wrong lease token)", code="lease_foreign")
    if view.state == AttemptState.CANCELLED.value:
        return Conflict(f"attempt {attempt_id} was cancelled (the task was killed){suffix}", code="attempt_cancelled")
    if view.state != AttemptState.RUNNING.value:
        return Conflict(f"attempt {attempt_id} has already ended ({view.state}){suffix}", code="attempt_ended")
    return Conflict(
        f"the lease of attempt {attempt_id} expired{suffix or '; its result will not be used'}", code="lease_expired"
    )
