"""The oracle of the fault tests and the soak (docs/reliability.md#the-invariants): reads the service's database
after a run, read-only, and checks the reliability invariants R1, R2, R3, R6 and R7.

* R1 no point lost: every point is terminal (``done`` or ``failed``; ``cancelled`` only where
  allowed), no attempt is still ``running``, every task has ended.
* R2 attempt bound: attempt rows per point == ``points.attempts``, numbered 1..n without gaps,
  ``attempts - retry_base <= max_attempts``, and ``failed => attempts - retry_base == max_attempts``.
* R3 exactly one accepted result: a ``done`` point has exactly one succeeded attempt, whose loss is
  the point's loss and (when the run knows it) the deterministic ``f(params)``; a ``failed`` point
  has none, the failure loss and ``is_failure``.
* R6 bounded stuck-running: an expired attempt ended within ``reaper_interval + slack`` of its lease
  expiry and its lease was ``lease_ttl`` after its last contact, except where a service outage (no
  reaper running) overlaps that window.
* R7 no duplicated steering: one steering run per (segment, iteration), point numbers unique per
  task, never more points than ``max_points`` per segment.

``check(...)`` returns a :class:`Report`; ``report.summary()`` is the one-line verdict
``N passed, N failed`` the soak prints.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TERMINAL_POINTS = ("done", "failed")
LossFunction = Callable[[Any], float]


@dataclass
class Verdict:
    name: str
    ok: bool
    checked: int  # how many objects the rule looked at
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        head = f"{status} {self.name} ({self.checked} checked)"
        if self.ok:
            return head
        shown = "; ".join(self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"{head}: {shown}{more}"


@dataclass
class Report:
    verdicts: list[Verdict]
    figures: dict[str, Any]

    @property
    def passed(self) -> int:
        return sum(v.ok for v in self.verdicts)

    @property
    def failed(self) -> int:
        return sum(not v.ok for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"

    def describe(self) -> str:
        return "\n".join([*(v.line() for v in self.verdicts), f"invariants: {self.summary()}"])

    def verdict(self, name: str) -> Verdict:
        return next(v for v in self.verdicts if v.name == name)


@dataclass(frozen=True)
class Outage:
    """A window in which no reaper ran (the service was down or starting)."""

    start: float
    end: float


# -- reading --------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    tasks: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    points: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    steering_runs: list[dict[str, Any]]
    pilots: list[dict[str, Any]]


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


TABLES = ("tasks", "segments", "points", "attempts", "steering_runs", "pilots")
# Wide text columns the checks never need.
SKIP_COLUMNS = {"attempts": ("log_tail", "meta"), "tasks": ("options", "evaluation_exec")}


def _select(table: str, columns: Sequence[str]) -> str:
    wanted = [c for c in columns if c not in SKIP_COLUMNS.get(table, ())]
    return f"SELECT {', '.join(wanted)} FROM {table} ORDER BY id"


JSON_COLUMNS = {"points": ("params",), "pilots": ("slots", "runtimes", "capabilities")}


def _decode(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SQLite hands JSON columns back as text; PostgreSQL's driver already decodes them."""
    for row in rows:
        for column in JSON_COLUMNS.get(table, ()):
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
    return rows


def read_sqlite(path: Path) -> Snapshot:
    """Open the SQLite file read-only (the service may still be running) and read every table."""
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30)
    try:
        data: dict[str, list[dict[str, Any]]] = {}
        for table in TABLES:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            data[table] = _decode(table, _rows(conn.execute(_select(table, columns))))
    finally:
        conn.close()
    return Snapshot(**data)


def read_url(url: str) -> Snapshot:
    """Any SQLAlchemy URL (PostgreSQL for the soak), read in one read-only transaction."""
    from sqlalchemy import create_engine, inspect, text

    if url.startswith("sqlite:///"):
        return read_sqlite(Path(url.removeprefix("sqlite:///")))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            inspector = inspect(conn)
            data = {}
            for table in TABLES:
                columns = [c["name"] for c in inspector.get_columns(table)]
                result = conn.execute(text(_select(table, columns)))
                data[table] = _decode(table, [dict(row._mapping) for row in result])
    finally:
        engine.dispose()
    return Snapshot(**data)


def read(data_dir_or_url: Path | str) -> Snapshot:
    """The service's data dir (its SQLite file ``hposteer.db``) or a database URL."""
    if isinstance(data_dir_or_url, Path):
        return read_sqlite(data_dir_or_url / "hposteer.db")
    return read_url(data_dir_or_url)


# -- checking -------------------------------------------------------------------------------------


def _in_outage(start: float, end: float, outages: Iterable[Outage]) -> bool:
    return any(o.start <= end and start <= o.end for o in outages)


def check(
    source: Path | str | Snapshot,
    *,
    task_ids: Iterable[int] | None = None,
    expected_loss: LossFunction | None = None,
    always_fails: Callable[[Any], bool] | None = None,
    allow_cancelled: bool = False,
    lease_ttl_s: float | None = None,
    reaper_interval_s: float | None = None,
    outages: Sequence[Outage] = (),
    slack_s: float = 1.0,
    loss_tolerance: float = 1e-9,
) -> Report:
    """Check R1, R2, R3, R6 and R7 on the tasks ``task_ids`` (default: every task).

    ``expected_loss(params)`` is the evaluation's deterministic loss; ``always_fails(params)`` says
    which points the fake evaluation never lets succeed (they must end ``failed``).
    """
    snap = source if isinstance(source, Snapshot) else read(source)
    wanted = set(task_ids) if task_ids is not None else {t["id"] for t in snap.tasks}
    tasks = {t["id"]: t for t in snap.tasks if t["id"] in wanted}
    points = [p for p in snap.points if p["task_id"] in wanted]
    attempts = [a for a in snap.attempts if a["task_id"] in wanted]
    segments = [s for s in snap.segments if s["task_id"] in wanted]
    by_point: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        by_point[a["point_id"]].append(a)
    for rows in by_point.values():
        rows.sort(key=lambda a: a["number"])

    verdicts = [
        _r1(tasks, points, attempts, allow_cancelled),
        _r2(tasks, points, by_point),
        _r3(tasks, points, by_point, expected_loss, always_fails, loss_tolerance),
    ]
    r6, worst = _r6(attempts, lease_ttl_s, reaper_interval_s, outages, slack_s)
    verdicts.append(r6)
    verdicts.append(_r7(snap, wanted, points, segments, tasks))
    failures: dict[str, int] = defaultdict(int)
    for a in attempts:
        if a["state"] != "succeeded":
            failures[a["failure_class"] or a["state"]] += 1
    figures = {
        "tasks": len(tasks),
        "points": len(points),
        "points_by_state": _count(p["state"] for p in points),
        "attempts": len(attempts),
        "attempts_by_state": _count(a["state"] for a in attempts),
        "failures_by_class": dict(sorted(failures.items())),
        "max_attempts_per_point": max((p["attempts"] for p in points), default=0),
        "expired_attempts_measured": worst["measured"],
        "max_expiry_after_last_contact_s": worst["after_contact"],
        "max_reap_delay_s": worst["reap_delay"],
    }
    return Report(verdicts, figures)


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(sorted(out.items()))


def _r1(
    tasks: dict[int, dict[str, Any]],
    points: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
    allow_cancelled: bool,
) -> Verdict:
    v = Verdict("R1 no point lost", True, len(points) + len(tasks))
    terminal = (*TERMINAL_POINTS, "cancelled") if allow_cancelled else TERMINAL_POINTS
    for p in points:
        if p["state"] not in terminal:
            v.problems.append(f"task {p['task_id']} point {p['number']} is {p['state']}")
    for a in attempts:
        if a["state"] == "running":
            v.problems.append(f"attempt {a['id']} (point row {a['point_id']}) is still running")
    for t in tasks.values():
        if t["state"] not in ("finished", "failed", "killed"):
            v.problems.append(f"task {t['id']} is {t['state']}")
        elif t["state"] == "failed" and t.get("end_reason") in ("all_points_failed", "no_points_evaluated"):
            continue  # every point ended and none has a loss: its points' own invariants hold above
        elif t["state"] != "finished" and not allow_cancelled:
            v.problems.append(f"task {t['id']} ended {t['state']}: {t.get('message')}")
    v.ok = not v.problems
    return v


def _r2(
    tasks: dict[int, dict[str, Any]], points: list[dict[str, Any]], by_point: dict[int, list[dict[str, Any]]]
) -> Verdict:
    v = Verdict("R2 attempts <= max_attempts", True, len(points))
    for p in points:
        rows = by_point.get(p["id"], [])
        label = f"task {p['task_id']} point {p['number']}"
        limit = tasks[p["task_id"]]["max_attempts"]
        used = p["attempts"] - (p.get("retry_base") or 0)
        if len(rows) != p["attempts"]:
            v.problems.append(f"{label}: {len(rows)} attempt rows but attempts={p['attempts']}")
        if [a["number"] for a in rows] != list(range(1, len(rows) + 1)):
            v.problems.append(f"{label}: attempt numbers {[a['number'] for a in rows]}")
        if used > limit:
            v.problems.append(f"{label}: {used} attempts > {limit}")
        if p["state"] == "failed" and used != limit:
            v.problems.append(f"{label}: failed after {used} attempts, not {limit}")
    v.ok = not v.problems
    return v


def _close(a: float | None, b: float | None, tolerance: float) -> bool:
    if a is None or b is None:
        return False
    return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)


def _r3(
    tasks: dict[int, dict[str, Any]],
    points: list[dict[str, Any]],
    by_point: dict[int, list[dict[str, Any]]],
    expected_loss: LossFunction | None,
    always_fails: Callable[[Any], bool] | None,
    tolerance: float,
) -> Verdict:
    v = Verdict("R3 exactly one accepted result", True, len(points))
    for p in points:
        label = f"task {p['task_id']} point {p['number']}"
        won = [a for a in by_point.get(p["id"], []) if a["state"] == "succeeded"]
        if p["state"] == "done":
            if len(won) != 1:
                v.problems.append(f"{label}: done with {len(won)} succeeded attempts")
            elif not _close(won[0]["loss"], p["loss"], tolerance):
                v.problems.append(f"{label}: loss {p['loss']} but its succeeded attempt reported {won[0]['loss']}")
            if p["is_failure"]:
                v.problems.append(f"{label}: done but flagged as a failure")
            if expected_loss is not None:
                want = expected_loss(p["params"])
                if not _close(p["loss"], want, tolerance):
                    v.problems.append(f"{label}: loss {p['loss']} != f(params) {want} (cross-wired result?)")
            if always_fails is not None and always_fails(p["params"]):
                v.problems.append(f"{label}: done although its evaluation always fails")
        elif p["state"] in ("failed", "cancelled"):
            if won:
                v.problems.append(f"{label}: {p['state']} with {len(won)} succeeded attempts")
            if p["state"] == "failed":
                failure_loss = tasks[p["task_id"]]["failure_loss"]
                if not _close(p["loss"], failure_loss, tolerance) or not p["is_failure"]:
                    v.problems.append(f"{label}: failed with loss {p['loss']} is_failure={p['is_failure']}")
    v.ok = not v.problems
    return v


def _r6(
    attempts: list[dict[str, Any]],
    lease_ttl_s: float | None,
    reaper_interval_s: float | None,
    outages: Sequence[Outage],
    slack_s: float,
) -> tuple[Verdict, dict[str, Any]]:
    expired = [a for a in attempts if a["state"] == "expired" and a["ended_at"] is not None]
    v = Verdict("R6 lost leases reaped within TTL + reaper period", True, 0)
    worst: dict[str, Any] = {"measured": 0, "after_contact": None, "reap_delay": None}
    for a in expired:
        contact = max(float(a["started_at"]), float(a["heartbeat_at"] or 0.0))
        ended, due = float(a["ended_at"]), float(a["lease_expires_at"])
        if _in_outage(contact, ended, outages):
            continue  # no reaper ran (or no heartbeat could land) in part of that window
        v.checked += 1
        after_contact, reap_delay = ended - contact, ended - due
        worst["measured"] += 1
        worst["after_contact"] = max(worst["after_contact"] or 0.0, after_contact)
        worst["reap_delay"] = max(worst["reap_delay"] or 0.0, reap_delay)
        if lease_ttl_s is None or reaper_interval_s is None:
            continue
        if after_contact > lease_ttl_s + reaper_interval_s + slack_s:
            v.problems.append(
                f"attempt {a['id']}: back to pending {after_contact:.2f} s after its last contact "
                f"(> TTL {lease_ttl_s} + reaper {reaper_interval_s} + slack {slack_s})"
            )
        if due - contact > lease_ttl_s + 0.05:
            v.problems.append(f"attempt {a['id']}: lease ran {due - contact:.2f} s past its last contact")
    v.ok = not v.problems
    return v, worst


def _r7(
    snap: Snapshot,
    wanted: set[int],
    points: list[dict[str, Any]],
    segments: list[dict[str, Any]],
    tasks: dict[int, dict[str, Any]],
) -> Verdict:
    v = Verdict("R7 no duplicated steering", True, len(segments))
    runs: dict[tuple[int, int], int] = defaultdict(int)
    for r in snap.steering_runs:
        if r["task_id"] in wanted:
            runs[(r["segment_id"], r["iteration"])] += 1
    for key, n in runs.items():
        if n > 1:
            v.problems.append(f"segment row {key[0]} iteration {key[1]}: {n} steering runs")
    numbers: dict[tuple[int, int], int] = defaultdict(int)
    per_segment: dict[int, int] = defaultdict(int)
    for p in points:
        numbers[(p["task_id"], p["number"])] += 1
        per_segment[p["segment_id"]] += 1
    v.problems.extend(f"task {t} point number {n} appears {c} times" for (t, n), c in numbers.items() if c > 1)
    for s in segments:
        limit = tasks[s["task_id"]]["max_points"]
        if per_segment[s["id"]] > limit:
            v.problems.append(f"segment row {s['id']}: {per_segment[s['id']]} points > max_points {limit}")
    v.ok = not v.problems
    return v
