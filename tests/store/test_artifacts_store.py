"""Artifact rows and attempts' metadata on every backend: latest wins, shared blobs survive, fencing."""

from __future__ import annotations

from hposteer.service.core.states import AttemptState
from hposteer.service.operations.context import Services
from hposteer.service.store import artifacts as artifact_store
from hposteer.service.store import attempts as attempt_store
from hposteer.service.store.blobs.base import StoredBlob
from hposteer.service.store.blobs.rows import record_blob
from hposteer.service.store.claims import Claim
from tests.support.store_rows import add_pilot, add_points, add_task, claim_next


def _put(services: Services, claim: Claim, sha: str) -> tuple[int, str | None, bool]:
    with services.db.write() as conn:
        record_blob(conn, StoredBlob(sha, 10), "checkpoint", "alice")
        return artifact_store.put_artifact(
            conn, task_id=claim.task.id, point_id=claim.point.id, attempt_id=claim.attempt_id,
            kind="checkpoint", name="n", sha256=sha, size=10,
        )  # fmt: skip


def test_latest_artifact_wins_and_a_shared_blob_stays_in_use(backend_services: Services) -> None:
    services = backend_services
    task_id, segment_id = add_task(services, n_parallel_evaluation=10)
    add_points(services, task_id, segment_id, 2)
    pilot_id = add_pilot(services)
    first, second = claim_next(services, pilot_id), claim_next(services, pilot_id)
    assert first is not None and second is not None
    a, b = "a" * 64, "b" * 64
    artifact_id, replaced, created = _put(services, first, a)
    assert replaced is None and created
    assert _put(services, first, a) == (artifact_id, None, False), "the same bytes again change nothing"
    _put(services, second, a)  # another point with the same bytes
    assert _put(services, first, b) == (artifact_id, a, True)
    with services.db.read() as conn:
        assert artifact_store.latest_blob(conn, first.point.id, "checkpoint") == (b, 10)
        assert artifact_store.blob_in_use(conn, a), "the other point still refers to it"
        assert [r.sha256 for r in artifact_store.artifacts_of_task(conn, task_id)] == [b, a]
        assert artifact_store.live_attempt(conn, first.attempt_id, first.lease_token) is not None
        assert artifact_store.live_attempt(conn, first.attempt_id, "wrong") is None


def test_metadata_pages_skip_attempts_without_meta(backend_services: Services) -> None:
    services = backend_services
    task_id, segment_id = add_task(services, n_parallel_evaluation=10)
    add_points(services, task_id, segment_id, 3)
    pilot_id = add_pilot(services)
    claims = [claim_next(services, pilot_id) for _ in range(3)]
    with services.db.write() as conn:
        for claim, meta in zip(claims, ({"a": 1}, None, {"c": [3]}), strict=True):
            assert claim is not None
            attempt_store.finish_attempt(
                conn, attempt_id=claim.attempt_id, lease_token=claim.lease_token, target=AttemptState.SUCCEEDED,
                loss=1.0, exit_code=0, failure_class=None, message=None, log_tail=None, meta=meta,
            )  # fmt: skip
    with services.db.read() as conn:
        page, next_after = artifact_store.metadata_of_task(conn, task_id, after=0, limit=2)
        assert page == {1: [{"number": 1, "state": "succeeded", "meta": {"a": 1}}]} and next_after == 2
        page, next_after = artifact_store.metadata_of_task(conn, task_id, after=2, limit=2)
        assert page == {3: [{"number": 1, "state": "succeeded", "meta": {"c": [3]}}]} and next_after is None
