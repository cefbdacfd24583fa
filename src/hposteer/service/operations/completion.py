"""Complete, then claim: a pilot reports an attempt's end and, with ``acquire_next``, gets its
slot's next job in the same transaction (the pilots' measured hot path; docs/benchmarks.md (b), (e)).

The transaction (``Database.write_ending_with_claim``, store.claim_write): finish the attempt
(fenced by its lease), settle its point, claim the slot's next job carrying the point's counter
move into the claim's segment UPDATE, and only read after that. On PostgreSQL the claim's statement
goes with the COMMIT, so the transaction ends there; a claim that meets a limit at that moment
rolls the whole completion back and it runs once more the ordinary way. Handing the next job back
with the completion saves the pilot a round trip per point.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hposteer.service.core.job_settings import META_MAX_BYTES
from hposteer.service.core.states import AttemptState
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.job_claims import claim_job, job_again, pilot_of
from hposteer.service.operations.job_views import CompletionView, JobView
from hposteer.service.operations.leases import lease_refusal
from hposteer.service.operations.lifecycle import EndingAttempt, begin_ending, finish_ending, may_need_steering
from hposteer.service.operations.outbox import Outbox
from hposteer.service.operations.pilot_jobs import acquire
from hposteer.service.operations.principal import Principal
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store import points as point_store
from hposteer.service.store.claim_write import ClaimWrite
from hposteer.service.store.database import StoreBusy
from hposteer.service.store.records import AttemptRecord

FAILURE_CLASSES = (
    "payload_error",
    "missing_output",
    "invalid_output",
    "timeout",
    "killed",
    "pilot_error",
)
LOG_TAIL_MAX = 64 * 1024


@dataclass(frozen=True)
class Report:
    """What the pilot says about a finished attempt."""

    lease_token: str
    outcome: str  # success | failure
    loss: float | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    message: str | None = None
    log_tail: str | None = None
    meta: dict[str, Any] | None = None  # --evaluationMeta content
    request_key: str | None = None  # idempotency key (R4)


def complete(
    services: Services, principal: Principal, *, attempt_id: int, report: Report, acquire_next: bool = False
) -> CompletionView:
    """Record an attempt's end; with ``acquire_next``, claim the slot's next job in the same transaction."""
    _check(report)

    def record_then_claim(tx: ClaimWrite) -> _Recorded:
        return _record_then_claim(tx, services, principal, attempt_id, report, acquire_next)

    done = services.db.write_ending_with_claim(record_then_claim)
    if done.replayed is not None:
        return done.replayed
    attempt, ending = done.attempt, done.ending
    if attempt is None or ending is None:
        raise lease_refusal(services, attempt_id, report.lease_token)
    done.outbox.publish()  # before waking steering: a round's end is told before the next round's points
    done.claimed.publish()
    next_job = done.next_job
    if next_job is None and ending.carry is not None and ending.carry.passed_over and attempt.pilot_id is not None:
        # The claim passed over segments that other transactions held (it could not wait for them
        # while holding its own): committed now, a plain acquire may wait. Same key: a replay finds it.
        with contextlib.suppress(StoreBusy):  # the report is stored: the pilot then asks on its own
            next_job = acquire(
                services, principal, pilot_id=attempt.pilot_id, slot=attempt.slot, request_key=report.request_key
            )
    if may_need_steering(ending, done.settled):
        services.steering.notify([attempt.segment_id])
    return CompletionView(
        accepted=True, point_state=done.settled.state.value if done.settled else "cancelled", next_job=next_job
    )


@dataclass
class _Recorded:
    """What the completion's transaction leaves for after its commit."""

    outbox: Outbox
    claimed: Outbox  # the next job's start, told after this attempt's end
    attempt: AttemptRecord | None = None
    ending: EndingAttempt | None = None
    settled: point_store.Settled | None = None
    next_job: JobView | None = None
    replayed: CompletionView | None = None  # the answer to a completion retried with its key


def _record_then_claim(
    tx: ClaimWrite, services: Services, principal: Principal, attempt_id: int, report: Report, acquire_next: bool
) -> _Recorded:
    conn = tx.conn
    done = _Recorded(Outbox(services), Outbox(services))
    success = report.outcome == "success"
    tail = report.log_tail[-LOG_TAIL_MAX:] if report.log_tail else report.log_tail
    attempt = attempt_store.finish_attempt(
        conn,
        attempt_id=attempt_id,
        lease_token=report.lease_token,
        target=AttemptState.SUCCEEDED if success else AttemptState.FAILED,
        loss=report.loss if success else None,
        exit_code=report.exit_code,
        failure_class=None if success else report.failure_class,
        message=report.message,
        log_tail=tail,
        meta=report.meta,
        completion_key=report.request_key,
    )
    if attempt is None:
        if report.request_key is not None:
            done.replayed = _completed_again(conn, services, attempt_id, report)
        return done
    done.attempt = attempt
    # The point is settled first; its segment's counters move in the next claim's segment UPDATE
    # (the claim is the last write: the hot row is held briefly), or in finish_ending below.
    done.ending = ending = begin_ending(conn, services, attempt, report.loss if success else None)
    if acquire_next and attempt.pilot_id is not None:
        pilot = pilot_of(conn, services, attempt.pilot_id, principal.owner)
        if pilot is not None:
            done.next_job = claim_job(
                tx,
                services,
                pilot,
                attempt.slot,
                request_key=report.request_key,
                after=attempt,
                carry=ending.carry,
                outbox=done.claimed,
            )
    # After a claim this only reads (tx refuses writes): a claim that merged the move took a pending
    # point of the segment, which therefore cannot end now (operations.lifecycle finish_ending).
    done.settled = finish_ending(conn, ending, done.outbox)
    return done


def _completed_again(conn: Connection, services: Services, attempt_id: int, report: Report) -> CompletionView | None:
    """The answer to a completion retried with the key that already completed the attempt (R4)."""
    assert report.request_key is not None
    earlier = attempt_store.completed_with_key(conn, attempt_id, report.lease_token, report.request_key)
    if earlier is None:
        return None
    point_state = point_store.point_state(conn, earlier.point_id)
    next_job = None
    if earlier.pilot_id is not None:
        claimed = attempt_store.claimed_with_key(conn, earlier.pilot_id, report.request_key)
        if claimed is not None:
            next_job = job_again(conn, services, claimed)
    return CompletionView(accepted=True, point_state=point_state, next_job=next_job, repeated=True)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _check(report: Report) -> None:
    # Measured as compact UTF-8, as the file the pilot read (not json.dumps's padded, escaped default).
    if report.meta is not None and len(_compact(report.meta)) > META_MAX_BYTES:
        raise Invalid(
            f"meta is over {META_MAX_BYTES} bytes as JSON; the evaluation's metadata file must stay within 1 MB",
            [{"field": "meta", "message": "too large"}],
        )
    if report.outcome == "success":
        if report.loss is None or not math.isfinite(report.loss):
            raise Invalid("a successful attempt needs a finite loss", [{"field": "loss", "message": "finite number"}])
    elif report.outcome == "failure":
        if report.failure_class not in FAILURE_CLASSES:
            raise Invalid(
                f"failure_class must be one of: {', '.join(FAILURE_CLASSES)}",
                [{"field": "failure_class", "message": f"got {report.failure_class!r}"}],
            )
    else:
        raise Invalid("outcome must be 'success' or 'failure'", [{"field": "outcome", "message": report.outcome}])
