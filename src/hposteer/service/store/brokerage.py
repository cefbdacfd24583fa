"""What brokerage reads: tasks' requirements, pilots' offers, and when pilots were last seen."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, func, select, update

from hposteer.service.core.states import TaskState
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import pilots, tasks


@cache
def _max_task_id() -> Select[Any]:
    return select(func.max(tasks.c.id))


def max_task_id(conn: Connection) -> int:
    """The highest task id so far (0 without tasks): new tasks move it (a primary-key lookup).

    Runs on every claim: the statement is built once (building it costs more than running it)."""
    return int(conn.execute(_max_task_id()).scalar() or 0)


def running_requirements(conn: Connection, *, after_id: int = 0) -> dict[int, Any]:
    """Requirements of the running tasks that have some (by task id), optionally only those after an id."""
    query = select(tasks.c.id, tasks.c.requirements).where(
        tasks.c.state == TaskState.RUNNING.value, tasks.c.requirements.is_not(None), tasks.c.id > after_id
    )
    return {int(row.id): row.requirements for row in conn.execute(query)}


@dataclass(frozen=True)
class PilotOffer:
    """A pilot as brokerage sees it: where it is, its slots (with GPU details) and capabilities."""

    id: int
    name: str
    site: str
    owner: str
    slots: list[dict[str, Any]]
    capabilities: dict[str, Any] | None
    last_seen_at: float


_COLUMNS = (
    pilots.c.id,
    pilots.c.name,
    pilots.c.site,
    pilots.c.owner,
    pilots.c.slots,
    pilots.c.capabilities,
    pilots.c.last_seen_at,
)


def _offer(row: Any) -> PilotOffer:
    return PilotOffer(
        id=int(row.id),
        name=row.name,
        site=row.site,
        owner=row.owner,
        slots=list(row.slots or []),
        capabilities=row.capabilities,
        last_seen_at=float(row.last_seen_at),
    )


def pilot_offer(conn: Connection, pilot_id: int) -> PilotOffer | None:
    row = conn.execute(select(*_COLUMNS).where(pilots.c.id == pilot_id)).first()
    return None if row is None else _offer(row)


def pilots_seen_since(conn: Connection, since: float, *, limit: int = 1000) -> list[PilotOffer]:
    """Pilots seen (registered or asking for work) at or after database time ``since``, newest first."""
    query = select(*_COLUMNS).where(pilots.c.last_seen_at >= since).order_by(pilots.c.last_seen_at.desc()).limit(limit)
    return [_offer(row) for row in conn.execute(query)]


def mark_seen(conn: Connection, pilot_id: int) -> None:
    conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(last_seen_at=now_expr()))
