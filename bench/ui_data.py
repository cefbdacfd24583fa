"""A task of 100,000 points for bench/ui.py, written straight into the store in bulk.

The task is submitted through the real use case (operations.submit), then its points, attempts,
steering runs and pilots are inserted in a few executemany statements, with the segment's
counters set to match, as a long search would have left them: most points done, some failed after
three attempts, some retried, a few running (leases far ahead, so the reaper leaves them), a few
thousand pending for the benchmark's own pilot to complete while pages load. Losses come from a
known function of the parameters plus noise, and the sampler homes in over time, so the history,
parallel coordinates and importance have something to show.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text, update

from hposteer.service.config import Settings
from hposteer.service.operations.auth import create_token
from hposteer.service.operations.context import NoTrigger, build_services
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.store.database import database_time
from hposteer.service.store.migrate import upgrade
from hposteer.service.store.tables import attempts, pilots, points, segments, steering_runs, tasks

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -5, "high": 5}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
    "depth": {"method": "uniformint", "dimension": {"low": 1, "high": 12}},
    "dropout": {"method": "uniform", "dimension": {"low": 0.0, "high": 0.6}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh", "gelu"]}},
}
SITES = (("SITE-A", 6), ("SITE-B", 4), ("SITE-C", 2))  # pilots per site, 4 slots each
PER_ITERATION = 10
RUNNING = 40
FAILED_SHARE = 0.01
RETRIED_SHARE = 0.08  # done points whose first attempt failed or expired
PENDING = 3460


@dataclass(frozen=True)
class Filled:
    task_id: int
    user_token: str
    pilot_token: str
    points: int
    attempts: int
    steering_runs: int


def loss_of(p: dict[str, Any], rng: random.Random) -> float:
    """The benchmark's objective: x and lr matter most, depth some, act a little, dropout not at all."""
    act = {"relu": 0.0, "tanh": 0.08, "gelu": 0.03}[p["act"]]
    return (
        (p["x"] - 0.3) ** 2 / 4
        + 0.25 * (math.log10(p["lr"]) + 3) ** 2
        + 0.02 * (p["depth"] - 6) ** 2
        + act
        + abs(rng.gauss(0, 0.05))
    )


def params_at(i: int, n: int, rng: random.Random) -> dict[str, Any]:
    """Random at first, then more and more often near the optimum (an optimiser homing in)."""
    if rng.random() < 0.8 * i / n:
        return {
            "x": min(5.0, max(-5.0, rng.gauss(0.3, 1.0 - 0.9 * i / n))),
            "lr": 10 ** min(-1.0, max(-5.0, rng.gauss(-3, 0.6))),
            "depth": min(12, max(1, round(rng.gauss(6, 2)))),
            "dropout": rng.uniform(0.0, 0.6),
            "act": rng.choice(["relu", "relu", "gelu", "tanh"]),
        }
    return {
        "x": rng.uniform(-5, 5),
        "lr": 10 ** rng.uniform(-5, -1),
        "depth": rng.randint(1, 12),
        "dropout": rng.uniform(0.0, 0.6),
        "act": rng.choice(["relu", "tanh", "gelu"]),
    }


def fill(settings: Settings, n: int, seed: int = 1) -> Filled:
    services = build_services(settings, NoTrigger())
    try:
        upgrade(services.db.engine)
        user_id, user_token = create_token(services.db, role="user", owner="bench")
        _, pilot_token = create_token(services.db, role="pilot", owner="bench-sites")
        request = TaskRequest(
            name="user.bench.ui100k",
            evaluation_exec="python train.py --seed %RNDM:100",
            search_space=SPACE,
            optimizer="random",
            max_points=n,
            n_points_per_iteration=PER_ITERATION,
            n_parallel_evaluation=400,
            seed=seed,
        )
        task_id = submit_task(services, Principal("bench", "user", user_id), request, dry_run=False).id
        with services.db.write() as conn:
            counts = _bulk(conn, task_id, n, random.Random(seed))
        if services.db.engine.dialect.name == "postgresql":
            # What autovacuum and autoanalyze do for a table that grew over hours: statistics for the
            # planner, and a visibility map that lets index-only scans skip the table.
            with services.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE points, attempts, steering_runs, segments, tasks, pilots"))
        return Filled(task_id, user_token, pilot_token, n, counts["attempts"], counts["runs"])
    finally:
        services.db.dispose()


def _bulk(conn: Any, task_id: int, n: int, rng: random.Random) -> dict[str, int]:
    now = database_time(conn)
    segment_id = conn.execute(segments.select().where(segments.c.task_id == task_id)).one().id
    pilot_ids = []
    for site, count in SITES:
        for k in range(count):
            pilot_ids += conn.execute(
                insert(pilots)
                .values(name=f"{site.lower()}-wn{k:02d}", site=site, owner="bench-sites", hostname=f"wn{k:02d}.{site}",
                        slots=[{"name": str(s), "gpus": [str(s)]} for s in range(4)], runtimes=["docker", "local"],
                        version="0.1.0", registered_at=now - 86400, last_seen_at=now - rng.uniform(0, 20))
                .returning(pilots.c.id)
            ).scalars().all()  # fmt: skip
    site_of = dict(zip(pilot_ids, [s for s, c in SITES for _ in range(c)], strict=True))
    t0 = now - n * 1.0 - 3600  # a point generated every second or so
    point_rows, attempt_rows = [], []
    states = _states(n, rng)
    for i in range(1, n + 1):
        params = params_at(i, n, rng)
        created = t0 + i * 1.0
        state = states[i - 1]
        tries = {"done": 2 if rng.random() < RETRIED_SHARE else 1, "failed": 3, "running": 1, "pending": 0}[state]
        ends = created
        for k in range(1, tries + 1):
            start = ends + rng.uniform(1, 30)
            dur = rng.lognormvariate(math.log(120), 0.5)
            last = k == tries
            a_state = {"done": "succeeded", "failed": "failed", "running": "running"}[state] if last else "failed"
            pid = rng.choice(pilot_ids)
            ended = None if a_state == "running" else start + dur
            failure = (
                None
                if a_state in ("succeeded", "running")
                else rng.choice(["payload_error", "timeout", "missing_output"])
            )
            attempt_rows.append({
                "point_number": i, "task_id": task_id, "segment_id": segment_id, "owner": "bench", "number": k,
                "job_number": len(attempt_rows), "pilot_id": pid, "slot": str(rng.randrange(4)), "site": site_of[pid],
                "lease_token": "x" * 32, "lease_expires_at": now + 10 * 86400 if ended is None else start + dur,
                "heartbeat_at": now - rng.uniform(0, 20) if ended is None else start + dur - 1, "state": a_state,
                "started_at": start, "ended_at": ended,
                "exit_code": None if ended is None else (0 if failure is None else 1),
                "failure_class": failure, "message": failure and f"evaluation ended with {failure}",
                "log_tail": f"epoch 1/3 loss 0.9\nepoch 2/3 loss 0.7\nepoch 3/3 done ({a_state})\n",
                "job_step": 1,
            })  # fmt: skip
            ends = ended if ended is not None else start
        finished = ends if state in ("done", "failed") else None
        loss = loss_of(params, rng) if state == "done" else (1e5 if state == "failed" else None)
        point_rows.append({
            "task_id": task_id, "segment_id": segment_id, "number": i, "iteration": (i - 1) // PER_ITERATION + 1,
            "params": params, "state": state, "loss": loss, "is_failure": state == "failed", "attempts": tries,
            "retry_base": 0, "created_at": created, "updated_at": finished or created, "finished_at": finished,
        })  # fmt: skip
    conn.execute(insert(points), point_rows)
    ids = dict(conn.execute(points.select().with_only_columns(points.c.number, points.c.id)
                            .where(points.c.task_id == task_id)).all())  # fmt: skip
    for row in attempt_rows:
        row["point_id"] = ids[row.pop("point_number")]
    conn.execute(insert(attempts), attempt_rows)
    iterations = math.ceil(n / PER_ITERATION)
    conn.execute(insert(steering_runs), [{
        "task_id": task_id, "segment_id": segment_id, "iteration": it, "requested": PER_ITERATION,
        "produced": PER_ITERATION, "runner": "in-process", "outcome": "failed" if rng.random() < 0.002 else "ok",
        "message": None, "started_at": t0 + it * PER_ITERATION, "duration_ms": rng.lognormvariate(math.log(8), 0.6),
    } for it in range(1, iterations + 1)])  # fmt: skip
    by_state = {s: states.count(s) for s in ("pending", "running", "done", "failed")}
    conn.execute(
        update(segments).where(segments.c.id == segment_id).values(
            iteration=iterations, jobs=len(attempt_rows), generated=n, pending=by_state["pending"],
            running=by_state["running"], evaluated=by_state["done"] + by_state["failed"])
    )  # fmt: skip
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(next_point_number=n + 1))
    return {"attempts": len(attempt_rows), "runs": iterations}


def _states(n: int, rng: random.Random) -> list[str]:
    """Finished points first, then the running ones, then the pending tail (as steering appends)."""
    pending = min(PENDING, n // 10)
    running = min(RUNNING, n // 10)
    finished = n - pending - running
    out = ["failed" if rng.random() < FAILED_SHARE else "done" for _ in range(finished)]
    return out + ["running"] * running + ["pending"] * pending
