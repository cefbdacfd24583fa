"""Pilot use cases: register, acquire a job, heartbeat (complete, then claim: operations.completion).

These are the hot path: each is one short write transaction. Every write after acquire
is fenced by (attempt id, lease token) and a live lease by the database clock; anything
else is refused with Conflict (409) and changes nothing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.job_claims import claim_job, job_again, pilot_of
from hposteer.service.operations.job_views import JobView, RegistrationView
from hposteer.service.operations.leases import lease_refusal
from hposteer.service.operations.outbox import Outbox
from hposteer.service.operations.principal import Principal
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import pilots as pilot_store
from hposteer.service.store.claim_write import ClaimWrite

_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def register_pilot(
    services: Services,
    principal: Principal,
    *,
    name: str,
    site: str,
    hostname: str,
    slots: list[dict[str, Any]],
    runtimes: list[str],
    version: str,
    capabilities: dict[str, Any] | None = None,
) -> RegistrationView:
    if not _SITE.match(site):
        raise Invalid(f"invalid site name {site!r}: use letters, digits, '.', '_' and '-'")
    if not slots:
        raise Invalid("a pilot needs at least one slot")
    with services.db.write() as conn:
        pilot_id = pilot_store.register_pilot(
            conn,
            name=name,
            site=site,
            owner=principal.owner,
            hostname=hostname,
            slots=slots,
            runtimes=runtimes,
            version=version,
            capabilities=capabilities,
        )
    settings = services.settings
    return RegistrationView(pilot_id, settings.lease_ttl_s, settings.heartbeat_interval_s, settings.idle_poll_s)


def acquire(
    services: Services, principal: Principal, *, pilot_id: int, slot: str, request_key: str | None = None
) -> JobView | None:
    """Claim the next job for this pilot slot, or None when there is no work for it.

    One write transaction that ends with the claim (``Database.write_ending_with_claim``). A
    retried call with the same ``request_key`` gets the job the first call claimed (R4): its answer
    may have been lost after the claim committed.
    """
    began = time.perf_counter()

    def claim(tx: ClaimWrite) -> tuple[JobView | None, Outbox]:
        outbox = Outbox(services)  # one per try: a rolled-back try tells nothing
        conn = tx.conn
        pilot = pilot_of(conn, services, pilot_id, principal.owner)
        if pilot is None:
            raise NotFound(
                f"pilot {pilot_id} is not registered with this token; register again", code="pilot_not_found"
            )
        if request_key is not None:
            earlier = attempt_store.claimed_with_key(conn, pilot_id, request_key)
            if earlier is not None:
                return job_again(conn, services, earlier), outbox  # already told as a start_job
        return claim_job(tx, services, pilot, slot, request_key=request_key, outbox=outbox), outbox

    job, outbox = services.db.write_ending_with_claim(claim)
    services.meters.acquire(time.perf_counter() - began, job is not None)
    outbox.publish()
    return job


@dataclass(frozen=True)
class HeartbeatAnswer:
    action: str  # continue | kill
    lease_expires_in_s: float


def heartbeat(services: Services, *, attempt_id: int, lease_token: str) -> HeartbeatAnswer:
    with services.db.write() as conn:
        remaining = attempt_store.extend_lease(conn, attempt_id, lease_token, services.settings.lease_ttl_s)
    if remaining is not None:
        return HeartbeatAnswer("continue", remaining)
    refusal = lease_refusal(services, attempt_id, lease_token)
    if refusal.code == "attempt_cancelled":
        return HeartbeatAnswer("kill", 0.0)
    raise refusal
