"""Brokerage: which running tasks a pilot slot may serve, and why nobody serves a task.

The claim (store.claims.claim_next) admits tasks without requirements as before and, among
tasks with requirements, only the ids this module says the slot satisfies. Requirements are
evaluated here in Python, never per row in SQL: per (pilot, slot), the set of satisfied task
ids is cached and recomputed when the set of running tasks with requirements changes.

Staleness only ever excludes: a task submitted after the cache was filled is not in any set
until the cache sees it (checked on every claim by the highest task id, plus a full reload
every ``REFRESH_S`` for tasks that committed out of id order or came back to running), and a
task's requirements never change after submission.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from hposteer.service.core.offers import describe, describe_offer, explain, satisfies
from hposteer.service.core.states import TaskState
from hposteer.service.store import brokerage as store
from hposteer.service.store.brokerage import PilotOffer
from hposteer.service.store.database import database_time
from hposteer.service.store.records import TaskRecord

REFRESH_S = 5.0
SEEN_EVERY_S = 30.0  # how often an asking pilot's last_seen_at is written (not on every claim)
MAX_ENTRIES = 100_000


def slot_offers(pilot: PilotOffer) -> dict[str, dict[str, Any]]:
    """What each slot of the pilot offers, in the shape core.requirements matches against."""
    capabilities = pilot.capabilities or {}
    cpu = capabilities.get("cpu") or {}
    out: dict[str, dict[str, Any]] = {}
    for slot in pilot.slots:
        gpus = slot.get("gpu_info") or [{"index": str(g)} for g in slot.get("gpus") or ()]
        out[str(slot.get("name"))] = {"cpu": cpu, "gpus": gpus, "network": bool(capabilities.get("network"))}
    return out


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    max_id: int
    loaded_at: float
    requirements: Mapping[int, Any]


@dataclass
class Brokerage:
    """Per-process cache of which tasks with requirements each (pilot, slot) satisfies."""

    refresh_s: float = REFRESH_S
    _snapshot: _Snapshot = field(default_factory=lambda: _Snapshot(0, -1, float("-inf"), {}))
    _offers: dict[tuple[int, str], dict[str, Any] | None] = field(default_factory=dict)
    _allowed: dict[tuple[int, str], tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    _seen: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allowed_tasks(self, conn: Connection, pilot_id: int, slot: str) -> tuple[int, ...]:
        """Ids of running tasks with requirements that this slot satisfies (possibly missing new ones)."""
        snapshot = self._refresh(conn)
        if not snapshot.requirements:
            return ()
        key = (pilot_id, slot)
        entry = self._allowed.get(key)
        if entry is not None and entry[0] == snapshot.generation:
            return entry[1]
        offer = self._offer(conn, pilot_id, slot)
        if offer is None:
            return ()
        ids = tuple(sorted(t for t, req in snapshot.requirements.items() if satisfies(req, offer)))
        if len(self._allowed) >= MAX_ENTRIES:
            self._allowed.clear()
        self._allowed[key] = (snapshot.generation, ids)
        return ids

    def seen(self, conn: Connection, pilot_id: int) -> None:
        """Note that the pilot asked for work (written at most every SEEN_EVERY_S per pilot)."""
        now = time.monotonic()
        if now - self._seen.get(pilot_id, float("-inf")) < SEEN_EVERY_S:
            return
        if len(self._seen) >= MAX_ENTRIES:
            self._seen.clear()
        self._seen[pilot_id] = now
        store.mark_seen(conn, pilot_id)

    def _offer(self, conn: Connection, pilot_id: int, slot: str) -> dict[str, Any] | None:
        key = (pilot_id, slot)
        if key not in self._offers:  # pilots never change after registration
            pilot = store.pilot_offer(conn, pilot_id)
            offers = slot_offers(pilot) if pilot is not None else {}
            if len(self._offers) >= MAX_ENTRIES:
                self._offers.clear()
            self._offers[key] = offers.get(slot)
        return self._offers[key]

    def _refresh(self, conn: Connection) -> _Snapshot:
        snapshot = self._snapshot
        now = time.monotonic()
        full = now - snapshot.loaded_at >= self.refresh_s
        top = store.max_task_id(conn)
        if not full and top <= snapshot.max_id:
            return snapshot
        with self._lock:
            current = self._snapshot
            if current is not snapshot:  # another thread refreshed meanwhile
                return current if top <= current.max_id else self._reload(conn, current, top, full=False)
            return self._reload(conn, current, top, full=full)

    def _reload(self, conn: Connection, current: _Snapshot, top: int, *, full: bool) -> _Snapshot:
        if full:
            requirements = dict(store.running_requirements(conn))
            loaded_at = time.monotonic()
        else:
            requirements = {**current.requirements, **store.running_requirements(conn, after_id=current.max_id)}
            loaded_at = current.loaded_at
        max_id = max([top, current.max_id, *requirements])
        fresh = _Snapshot(current.generation + 1, max_id, loaded_at, requirements)
        self._snapshot = fresh  # swapped whole: readers never see a half-built mapping
        return fresh


# -- task show --------------------------------------------------------------------------------


def _site_list(sites: str | None) -> list[str]:
    return [s for s in (sites or "").split(",") if s]


def brokerage_note(
    requirements: Mapping[str, Any] | None, sites: str | None, pilots: list[PilotOffer], *, window_min: float
) -> str | None:
    """A note for `task show` when no recently seen pilot slot can run the task, else None."""
    wanted_sites = _site_list(sites)
    if requirements is None and not wanted_sites:
        return None
    for pilot in pilots:
        if wanted_sites and pilot.site not in wanted_sites:
            continue
        if any(satisfies(requirements, offer) for offer in slot_offers(pilot).values()):
            return None
    needs = []
    if wanted_sites:
        needs.append("site " + " or ".join(wanted_sites))
    if requirements:
        needs.append(describe(requirements))
    if not pilots:
        seen = f"no pilot was seen in the last {window_min:g} min"
    else:
        shown = [_describe_pilot(p, requirements, wanted_sites) for p in pilots[:5]]
        more = f"; and {len(pilots) - 5} more" if len(pilots) > 5 else ""
        seen = f"pilots seen in the last {window_min:g} min: " + "; ".join(shown) + more
    return f"no registered pilot can run this task: it needs {', '.join(needs)}; {seen}"


def _describe_pilot(pilot: PilotOffer, requirements: Mapping[str, Any] | None, wanted_sites: list[str]) -> str:
    offers = slot_offers(pilot)
    kinds = sorted({describe_offer(o) for o in offers.values()})
    text = f"{pilot.site} ({'; '.join(kinds) or 'no slots'})"
    reasons = sorted({explain(requirements, o) for o in offers.values()} - {""})
    if wanted_sites and pilot.site not in wanted_sites:
        reasons = ["another site", *reasons]
    return text + (f": {reasons[0]}" if reasons else "")


def task_note(conn: Connection, window_min: float, task: TaskRecord, pending: int) -> str | None:
    """`task show`'s brokerage note: set when the running task has pending points that no slot of a
    pilot seen in the last ``window_min`` minutes can run (its --site or --architecture)."""
    if task.state != TaskState.RUNNING.value or pending <= 0:
        return None
    if task.requirements is None and task.sites is None:
        return None
    since = database_time(conn) - window_min * 60
    return brokerage_note(task.requirements, task.sites, store.pilots_seen_since(conn, since), window_min=window_min)
