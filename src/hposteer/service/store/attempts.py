"""Attempts: lease extension and the fenced end of an attempt.

Every write names the attempt and its lease token and requires the lease to be alive by
the database clock: a stale or foreign writer changes nothing (and the API answers 409).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Update, bindparam, select, update

from hposteer.service.core.states import AttemptState
from hposteer.service.store.database import now_expr
from hposteer.service.store.records import AttemptRecord, from_row
from hposteer.service.store.tables import attempts, pilots
from hposteer.service.store.transitions import may_enter


@dataclass(frozen=True)
class LeaseView:
    """What the database knows of an attempt, to explain a refused write."""

    state: str
    token_matches: bool
    expired: bool
    pilot_owner: str | None


# What an AttemptRecord holds: never the 64 KiB log tail, which only its own readers need.
RECORD_COLUMNS = tuple(attempts.c[f.name] for f in fields(AttemptRecord))


@cache
def _live() -> ColumnElement[bool]:
    """The attempt named by :attempt_id, held with :lease_token, and still within its lease."""
    return (
        (attempts.c.id == bindparam("p_attempt_id"))
        & (attempts.c.lease_token == bindparam("p_lease_token"))
        & (attempts.c.state == AttemptState.RUNNING.value)
        & (attempts.c.lease_expires_at >= now_expr())
    )


@cache
def _extend() -> Update:
    now = now_expr()
    return (
        update(attempts)
        .where(_live())
        .values(lease_expires_at=now + bindparam("p_ttl"), heartbeat_at=now)
        .returning(attempts.c.lease_expires_at, now.label("now"))
    )


@cache
def _finish(target: AttemptState) -> Update:
    return (
        update(attempts)
        .where(_live(), may_enter(attempts.c.state, target))
        .values(
            state=target.value,
            ended_at=now_expr(),
            loss=bindparam("p_loss"),
            exit_code=bindparam("p_exit_code"),
            failure_class=bindparam("p_failure_class"),
            message=bindparam("p_message"),
            log_tail=bindparam("p_log_tail"),
            meta=bindparam("p_meta", type_=attempts.c.meta.type),
            completion_key=bindparam("p_completion_key"),
        )
        .returning(*RECORD_COLUMNS)
    )


def extend_lease(conn: Connection, attempt_id: int, lease_token: str, ttl_s: float) -> float | None:
    """Push the lease's expiry to now + ttl; the seconds left, or None if the lease is not live."""
    row = conn.execute(_extend(), {"p_attempt_id": attempt_id, "p_lease_token": lease_token, "p_ttl": ttl_s}).first()
    return None if row is None else float(row.lease_expires_at) - float(row.now)


def finish_attempt(
    conn: Connection,
    *,
    attempt_id: int,
    lease_token: str,
    target: AttemptState,
    loss: float | None,
    exit_code: int | None,
    failure_class: str | None,
    message: str | None,
    log_tail: str | None,
    meta: dict[str, Any] | None = None,
    completion_key: str | None = None,
) -> AttemptRecord | None:
    row = conn.execute(
        _finish(target),
        {
            "p_attempt_id": attempt_id,
            "p_lease_token": lease_token,
            "p_loss": loss,
            "p_exit_code": exit_code,
            "p_failure_class": failure_class,
            "p_message": message,
            "p_log_tail": log_tail,
            "p_meta": meta,
            "p_completion_key": completion_key,
        },
    ).first()
    return None if row is None else from_row(AttemptRecord, row)


def completed_with_key(conn: Connection, attempt_id: int, lease_token: str, key: str) -> AttemptRecord | None:
    """The attempt if this lease holder already completed it with this idempotency key."""
    row = conn.execute(
        select(*RECORD_COLUMNS).where(
            attempts.c.id == attempt_id, attempts.c.lease_token == lease_token, attempts.c.completion_key == key
        )
    ).first()
    return None if row is None else from_row(AttemptRecord, row)


@cache
def _claimed_with_key() -> Select[Any]:
    return (
        select(attempts.c.id)
        .where(attempts.c.pilot_id == bindparam("p_pilot_id"), attempts.c.request_key == bindparam("p_key"))
        .limit(1)
    )


def claimed_with_key(conn: Connection, pilot_id: int, key: str) -> int | None:
    """The attempt that a call of this pilot with this idempotency key claimed, if any (every keyed
    acquire asks: one indexed lookup, its statement built once)."""
    value = conn.execute(_claimed_with_key(), {"p_pilot_id": pilot_id, "p_key": key}).scalar()
    return None if value is None else int(value)


def lease_view(conn: Connection, attempt_id: int, lease_token: str) -> LeaseView | None:
    row = conn.execute(
        select(
            attempts.c.state,
            attempts.c.lease_token,
            (attempts.c.lease_expires_at < now_expr()).label("expired"),
            pilots.c.owner,
        )
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.id == attempt_id)
    ).first()
    if row is None:
        return None
    return LeaseView(str(row.state), row.lease_token == lease_token, bool(row.expired), row.owner)


def expire_due(conn: Connection, limit: int) -> list[AttemptRecord]:
    """Mark running attempts whose lease ran out as expired; returns them."""
    due = (
        conn.execute(
            select(attempts.c.id)
            .where(attempts.c.state == AttemptState.RUNNING.value, attempts.c.lease_expires_at < now_expr())
            .order_by(attempts.c.lease_expires_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    expired = []
    for attempt_id in due:
        row = conn.execute(
            update(attempts)
            .where(
                attempts.c.id == attempt_id,
                attempts.c.state == AttemptState.RUNNING.value,
                attempts.c.lease_expires_at < now_expr(),
                may_enter(attempts.c.state, AttemptState.EXPIRED),
            )
            .values(
                state=AttemptState.EXPIRED.value,
                ended_at=now_expr(),
                failure_class="lost_lease",
                message="no heartbeat before the lease expired (pilot lost or cut off)",
            )
            .returning(*RECORD_COLUMNS)
        ).first()
        if row is not None:
            expired.append(from_row(AttemptRecord, row))
    return expired


def cancel_running_attempts(
    conn: Connection, task_id: int, message: str = "the task was killed"
) -> list[AttemptRecord]:
    """End the task's running attempts as cancelled (the task was killed or failed); the attempts ended."""
    rows = conn.execute(
        update(attempts)
        .where(
            attempts.c.task_id == task_id,
            attempts.c.state == AttemptState.RUNNING.value,
            may_enter(attempts.c.state, AttemptState.CANCELLED),
        )
        .values(
            state=AttemptState.CANCELLED.value,
            ended_at=now_expr(),
            failure_class="killed",
            message=message,
        )
        .returning(*RECORD_COLUMNS)
    ).all()
    return [from_row(AttemptRecord, row) for row in rows]
