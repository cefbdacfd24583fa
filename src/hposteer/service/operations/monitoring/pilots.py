"""Read-only use case of the web UI: the pilots seen lately and their sites."""

from __future__ import annotations

from typing import Any

from hposteer.service.operations import brokerage
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.principal import Principal
from hposteer.service.store import monitoring as store
from hposteer.service.store.database import database_time


def pilots_overview(services: Services, principal: Principal, *, hours: float | None) -> dict[str, Any]:
    """Pilots seen in the last ``hours`` (None: ever) and their sites: slots, slots busy with anyone's
    attempts, the caller's running attempts (everyone's for an admin), and when each was last heard
    of (asking for work or heartbeating an attempt)."""
    if hours is not None and hours <= 0:
        raise Invalid("hours must be positive")
    with services.db.read() as conn:
        now = database_time(conn)
        rows = store.pilots_seen_since(conn, None if hours is None else now - hours * 3600, limit=1000)
        busy = store.running_attempts_by_pilot(conn, None)
        mine = busy if principal.sees_all else store.running_attempts_by_pilot(conn, principal.owner)
    online_s = max(3 * brokerage.SEEN_EVERY_S, services.settings.lease_ttl_s)
    pilots = []
    for row in rows:
        running, heartbeat = busy.get(int(row.id), (0, None))
        last = max(float(row.last_seen_at), heartbeat or 0.0)
        pilots.append(
            {
                "id": int(row.id),
                "name": row.name,
                "site": row.site,
                "hostname": row.hostname,
                "slots": [str(s.get("name", "")) for s in (row.slots or [])],
                "runtimes": list(row.runtimes or []),
                "version": row.version,
                "registered_at": float(row.registered_at),
                "last_heard_at": last,
                "last_heartbeat_at": heartbeat,
                "online": now - last <= online_s,
                "busy": running,
                "mine": mine.get(int(row.id), (0, None))[0],
            }
        )
    return {"pilots": pilots, "sites": _sites(pilots), "now": now, "online_s": online_s}


def _sites(pilots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sites: dict[str, dict[str, Any]] = {}
    for p in pilots:
        site = sites.setdefault(
            p["site"], {"site": p["site"], "pilots": 0, "online": 0, "slots": 0, "busy": 0, "mine": 0, "last": 0.0}
        )
        site["pilots"] += 1
        site["online"] += int(p["online"])
        site["slots"] += len(p["slots"]) if p["online"] else 0
        site["busy"] += p["busy"]
        site["mine"] += p["mine"]
        site["last"] = max(site["last"], p["last_heard_at"])
    return sorted(sites.values(), key=lambda s: (-s["online"], s["site"]))
