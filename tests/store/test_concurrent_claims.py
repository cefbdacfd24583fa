"""Claimers, completers and reapers in several processes on one database (after Optuna's race test).

Four worker processes claim points, complete some, fail some and abandon the rest (their leases
run out), and every one of them also runs the reaper. Afterwards the database must show no
double claim, no lost point, at most ``max_attempts`` attempts per point and exactly one accepted
result per done point (R1-R3), with the segment counters equal to the rows they summarise.
Half the completions also take the slot's next job in their transaction (``acquire_next``): their
counter move is then written by the claim's own segment UPDATE (src/hposteer/service/store/claims.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import time

import pytest
from sqlalchemy import text

from hposteer.service.config import Settings
from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.context import NoTrigger, Services, build_services
from hposteer.service.operations.errors import Conflict
from hposteer.service.operations.reaper import reap_expired
from hposteer.service.store.database import StoreBusy
from tests.support.steered_tasks import PILOT, one_slot_pilot, steered_segment

POINTS = 60
MAX_ATTEMPTS = 3


def _worker(settings_json: str, pilot_id: int, seed: int, seconds: float) -> None:
    services = build_services(Settings.model_validate_json(settings_json), NoTrigger())
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    job = None
    try:
        while time.monotonic() < deadline:
            try:
                reap_expired(services)
                if job is None:
                    job = pilot_jobs.acquire(services, PILOT, pilot_id=pilot_id, slot=f"s{seed}")
                if job is None:
                    time.sleep(0.01)
                    continue
                roll = rng.random()
                if roll < 0.2:
                    job = None
                    continue  # abandoned: the lease runs out and a reaper (any process) settles it
                if roll < 0.5:
                    report = completion.Report(job.lease_token, "failure", failure_class="payload_error")
                else:
                    report = completion.Report(job.lease_token, "success", loss=float(job.point_id))
                done, job = job, None
                with contextlib.suppress(Conflict):  # the lease expired first: refused, as it must be
                    answer = completion.complete(
                        services, PILOT, attempt_id=done.attempt_id, report=report, acquire_next=rng.random() < 0.5
                    )
                    job = answer.next_job
            except StoreBusy:
                time.sleep(0.01)
    finally:
        services.db.dispose()


@pytest.mark.timeout(120)
def test_concurrent_claimers_and_reapers_never_double_claim_or_lose_a_point(backend_services: Services) -> None:
    services = backend_services
    settings = services.settings.model_copy(update={"lease_ttl_s": 0.3, "heartbeat_interval_s": 0.1})
    task_id, _ = steered_segment(
        services, points=POINTS, name="race", seed=3, n_parallel_evaluation=POINTS,
        max_attempts=MAX_ATTEMPTS, max_evaluation_jobs=POINTS * MAX_ATTEMPTS,
    )  # fmt: skip
    pilot_id = one_slot_pilot(services, "S", name="race", slot="s")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings.model_dump_json(), pilot_id, seed, 3.0)) for seed in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    time.sleep(settings.lease_ttl_s + 0.1)
    fast = build_services(settings, NoTrigger())
    try:
        while reap_expired(fast):
            pass
    finally:
        fast.db.dispose()
    _check_invariants(services, task_id)


def _check_invariants(services: Services, task_id: int) -> None:
    with services.db.read() as conn:
        points = conn.execute(
            text("SELECT id, number, state, loss, is_failure, attempts FROM points WHERE task_id = :t"), {"t": task_id}
        ).all()
        attempts = conn.execute(
            text("SELECT point_id, number, state, loss FROM attempts WHERE task_id = :t"), {"t": task_id}
        ).all()
        segment = conn.execute(
            text("SELECT generated, pending, running, evaluated FROM segments WHERE task_id = :t"), {"t": task_id}
        ).one()
    assert len(points) == POINTS
    by_point: dict[int, list[tuple[int, str, float | None]]] = {}
    for a in attempts:
        by_point.setdefault(int(a.point_id), []).append((int(a.number), str(a.state), a.loss))
    states = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for p in points:
        states[p.state] += 1
        mine = sorted(by_point.get(int(p.id), []))
        assert [n for n, _, _ in mine] == list(range(1, p.attempts + 1)), f"attempt numbers of point {p.number}"
        assert p.attempts <= MAX_ATTEMPTS, f"R2: point {p.number} has {p.attempts} attempts"
        assert sum(1 for _, s, _ in mine if s == "running") == 0, "no attempt is left running after the reap"
        succeeded = [loss for _, s, loss in mine if s == "succeeded"]
        if p.state == "done":
            assert succeeded == [float(p.number)] and p.loss == float(p.number), f"R3: point {p.number}"
        else:
            assert succeeded == [], f"a {p.state} point has no accepted result"
        if p.state == "failed":
            assert p.attempts == MAX_ATTEMPTS and p.is_failure and p.loss == 1e5
    assert states["running"] == 0, "R1: nothing is stuck in running"
    assert states["done"] + states["failed"] + states["pending"] == POINTS
    assert states["done"] > 0 and states["failed"] + states["pending"] > 0, states
    assert tuple(segment) == (POINTS, states["pending"], 0, states["done"] + states["failed"]), "counters match rows"
