"""The steering history of each segment, read from the database incrementally.

The steering protocol hands every run the full history. Reading and decoding every point
on every run costs ~18 ms at 1,000 points here (more than TPE's ask), so the steering
process keeps each segment's history and reads only the points changed since its last read.
Every change of a point moves its ``updated_at`` (database time); re-reading a margin before
the last read covers transactions that were still open then (they last milliseconds), and a
full read every ``full_every_s`` bounds the damage should one have lasted longer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Connection

from hposteer.service.core.steering import Observation
from hposteer.service.store import points as point_store
from hposteer.service.store.database import database_time


@dataclass
class _Segment:
    read_at: float
    full_read_at: float
    points: dict[int, Observation] = field(default_factory=dict)


class HistoryCache:
    def __init__(self, margin_s: float = 2.0, full_every_s: float = 60.0):
        self.margin_s = margin_s
        self.full_every_s = full_every_s
        self._segments: dict[int, _Segment] = {}
        self._lock = threading.Lock()

    def history(self, conn: Connection, segment_id: int) -> list[Observation]:
        """The segment's history in point order; call inside a read transaction."""
        now = database_time(conn)
        with self._lock:
            cached = self._segments.get(segment_id)
        if cached is None or now - cached.full_read_at >= self.full_every_s:
            fresh = point_store.observations(conn, segment_id)
            cached = _Segment(now, now, {n: o for n, o in fresh.items() if o is not None})
        else:
            changed = point_store.observations(conn, segment_id, changed_since=cached.read_at - self.margin_s)
            highest = max(cached.points, default=0)
            out_of_order = False
            for number, observation in changed.items():
                if observation is None:
                    cached.points.pop(number, None)
                    continue
                out_of_order |= number < highest and number not in cached.points
                cached.points[number] = observation
            if out_of_order:
                cached.points = dict(sorted(cached.points.items()))
            cached.read_at = now
        with self._lock:
            self._segments[segment_id] = cached
        return list(cached.points.values())

    def retain(self, segment_ids: set[int]) -> None:
        with self._lock:
            for gone in [k for k in self._segments if k not in segment_ids]:
                del self._segments[gone]
