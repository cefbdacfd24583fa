"""Two completions that each hold their own segment's row and claim each other's segment must not
wait for each other (PostgreSQL would break the cycle with a deadlock error after a second): a
claim waits for no segment row but the one its transaction holds (src/hposteer/service/store/claims.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.store import claims
from hposteer.service.store import tasks as task_store
from hposteer.service.store.claim_write import ClaimWrite
from tests.support.steered_tasks import PILOT, one_slot_pilot, steered_segment

# SQLite has one writer at a time: no row locks to wait for, nothing to deadlock.
pytestmark = pytest.mark.parametrize("backend_services", ["postgresql"], indirect=True)


def segment_with_points(services: Services, site: str, points: int = 4, **fields: Any) -> int:
    return steered_segment(services, points=points, name=f"claims.{site}", site=site, **fields)[1]


def test_completions_claiming_each_others_segments_do_not_deadlock(backend_services: Services) -> None:
    first, second = segment_with_points(backend_services, "SITE-A"), segment_with_points(backend_services, "SITE-B")
    pilot_id = one_slot_pilot(backend_services, "SITE-A")
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def completion(name: str, own: int, wanted_site: str) -> None:
        try:
            with backend_services.db.write() as conn:
                # what a completion's counter move does: this transaction now holds its segment's row
                conn.execute(text("UPDATE segments SET evaluated = evaluated WHERE id = :s"), {"s": own})
                barrier.wait(5)
                began = time.monotonic()
                request = claims.ClaimRequest(
                    site=wanted_site, pilot_id=pilot_id, slot="0", lease_ttl_s=60, held_segment_id=own
                )
                claim = claims.claim_next(ClaimWrite(conn), request)
                outcomes[name] = (claim, time.monotonic() - began)
                barrier.wait(5)  # both hold their rows until both claims returned
        except Exception as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=completion, args=("a", first, "SITE-B")),
        threading.Thread(target=completion, args=("b", second, "SITE-A")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for name in ("a", "b"):
        outcome = outcomes[name]
        assert isinstance(outcome, tuple), f"{name}: {outcome!r}"
        claim, took = outcome
        assert claim is None, "the only eligible segment is held by the other completion: passed over"
        assert took < 0.5, f"{name} waited {took:.2f} s for the other's segment"


def test_a_completion_passed_over_held_segments_gets_its_next_job_after_its_commit(backend_services: Services) -> None:
    """The completion's claim may not wait for another segment's row while it holds its own; it
    passes over, commits, and then waits as a plain acquire: the pilot still gets the job."""
    services = backend_services
    first = segment_with_points(services, "SITE-C", points=1)  # older: its point is taken first
    second = segment_with_points(services, "SITE-C")
    pilot_id = one_slot_pilot(services, "SITE-C")
    job = pilot_jobs.acquire(services, PILOT, pilot_id=pilot_id, slot="0")
    assert job is not None
    with services.db.read() as conn:
        assert task_store.segments_of(conn, job.task_id)[0].id == first
    holder = services.db.engine.connect()
    holder.begin()
    holder.execute(text("SELECT id FROM segments WHERE id = :s FOR UPDATE"), {"s": second})
    release = threading.Timer(0.5, lambda: (holder.commit(), holder.close()))
    release.start()
    began = time.monotonic()
    answer = completion.complete(
        services, PILOT, attempt_id=job.attempt_id,
        report=completion.Report(job.lease_token, "success", loss=1.0, request_key="k-1"), acquire_next=True,
    )  # fmt: skip
    took = time.monotonic() - began
    release.join()
    next_job = answer.next_job
    assert next_job is not None, "the job comes from the segment that was held, once it is free"
    with services.db.read() as conn:
        assert task_store.segments_of(conn, next_job.task_id)[0].id == second
    assert 0.4 <= took < 5.0, f"it waited for the holder ({took:.2f} s), after its own commit"
