"""Pilot use cases: register, acquire a job, heartbeat (complete, then claim: operations.completion).

These are the hot path: each is one short write transaction. Every write after acquire
is fenced by (attempt id, lease token) and a live lease by the database clock; anything
else is refused with Conflict (409) and changes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hposteer.core.intermediate_reports import IntermediateReport, ReportLineError, parse_report
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid, NotFound
from hposteer.service.operations.job_claims import claim_job, job_again, pilot_of
from hposteer.service.operations.job_views import JobView, RegistrationView
from hposteer.service.operations.leases import lease_refusal
from hposteer.service.operations.outbox import Outbox
from hposteer.service.operations.principal import Principal
from hposteer.service.store import attempt_reports as report_store
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


MAX_REPORTS_PER_CALL = 100
MAX_REPORTS_PER_ATTEMPT = 10_000  # beyond: not stored (the answer's reports_stored says so)
MAX_REFUSED_PER_CALL = 20
MAX_REFUSED_CHARS = 500


@dataclass(frozen=True)
class HeartbeatAnswer:
    action: str  # continue | kill
    lease_expires_in_s: float
    reports_stored: int = 0  # newly stored by this call
    last_step: int | None = None  # the highest step the service holds for the attempt


def checked_reports(raw: Sequence[Any]) -> list[IntermediateReport]:
    """The heartbeat's ``reports`` ({"step", "metrics"} objects), each checked as a report line is."""
    if len(raw) > MAX_REPORTS_PER_CALL:
        raise Invalid(
            f"{len(raw)} reports in one heartbeat; send at most {MAX_REPORTS_PER_CALL} per call",
            [{"field": "reports", "message": f"at most {MAX_REPORTS_PER_CALL} items"}],
        )
    reports: list[IntermediateReport] = []
    for i, item in enumerate(raw):
        previous = reports[-1].step if reports else None
        try:
            reports.append(parse_report(_as_line(item), previous))
        except ReportLineError as exc:
            raise Invalid(f"reports[{i}]: {exc}", [{"field": f"reports[{i}]", "message": str(exc)}]) from None
    return reports


def _as_line(item: Any) -> object:
    """A {"step": N, "metrics": {...}} item as the report line it stands for: {"step": N, ...metrics}."""
    if not isinstance(item, dict) or set(item) != {"step", "metrics"}:
        raise ReportLineError('a report must be an object {"step": N, "metrics": {"loss": 0.5}}')
    metrics = item["metrics"]
    if not isinstance(metrics, dict):
        raise ReportLineError(f"'metrics' must be an object of metric names to numbers, got {metrics!r:.40}")
    if "step" in metrics:
        raise ReportLineError("'step' is not a metric name: the step goes in the report's own 'step' field")
    return {"step": item["step"], **metrics}


def checked_refusals(refused: Sequence[str]) -> list[str]:
    if len(refused) > MAX_REFUSED_PER_CALL:
        raise Invalid(f"{len(refused)} refused lines in one heartbeat; send at most {MAX_REFUSED_PER_CALL} per call")
    for i, message in enumerate(refused):
        if len(message) > MAX_REFUSED_CHARS:
            raise Invalid(f"refused[{i}] has {len(message)} characters; at most {MAX_REFUSED_CHARS} are allowed")
    return list(refused)


def heartbeat(
    services: Services,
    *,
    attempt_id: int,
    lease_token: str,
    reports: Sequence[Any] = (),
    refused: Sequence[str] = (),
) -> HeartbeatAnswer:
    """Extend the lease and, in the same fenced transaction, store the reports sent with it."""
    checked = checked_reports(reports)
    refusals = checked_refusals(refused)
    with services.db.write() as conn:
        remaining = attempt_store.extend_lease(conn, attempt_id, lease_token, services.settings.lease_ttl_s)
        if remaining is not None:
            stored = report_store.store_reports(conn, attempt_id, checked, max_per_attempt=MAX_REPORTS_PER_ATTEMPT)
            report_store.add_refusals(conn, attempt_id, refusals)
    if remaining is not None:
        if stored.reports_stored:
            services.meters.reports_stored(stored.reports_stored)
        return HeartbeatAnswer("continue", remaining, stored.reports_stored, stored.last_step)
    refusal = lease_refusal(services, attempt_id, lease_token)
    if refusal.code == "attempt_cancelled":
        return HeartbeatAnswer("kill", 0.0)
    raise refusal
