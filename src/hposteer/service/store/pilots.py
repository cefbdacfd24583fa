"""Pilots: registration and identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import pilots


@dataclass(frozen=True)
class PilotRecord:
    id: int
    name: str
    site: str
    owner: str


def register_pilot(
    conn: Connection,
    *,
    name: str,
    site: str,
    owner: str,
    hostname: str,
    slots: list[dict[str, Any]],
    runtimes: list[str],
    version: str,
    capabilities: dict[str, Any] | None = None,
) -> int:
    now = now_expr()
    result = conn.execute(
        insert(pilots)
        .values(
            name=name,
            site=site,
            owner=owner,
            hostname=hostname,
            slots=slots,
            runtimes=runtimes,
            version=version,
            capabilities=capabilities,
            registered_at=now,
            last_seen_at=now,
        )
        .returning(pilots.c.id)
    )
    return int(result.scalar_one())


def get_pilot(conn: Connection, pilot_id: int, owner: str) -> PilotRecord | None:
    row = conn.execute(
        select(pilots.c.id, pilots.c.name, pilots.c.site, pilots.c.owner).where(
            pilots.c.id == pilot_id, pilots.c.owner == owner
        )
    ).first()
    return None if row is None else PilotRecord(int(row.id), row.name, row.site, row.owner)


def mark_seen(conn: Connection, pilot_id: int) -> None:
    conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(last_seen_at=now_expr()))
