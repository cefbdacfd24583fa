"""Checkpoint and metrics uploads, the restore download and the user's artifact routes, over real HTTP."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from collections.abc import Iterator
from typing import Any

import httpx

from hposteer.service.core.job_settings import CHECKPOINT_MAX_BYTES
from hposteer.service.store.tables import artifacts, blobs
from tests.conftest import LiveService
from tests.support.rest_api import acquire, error, http, new_site, register, submission


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put(
    client: httpx.Client, job: dict[str, Any], kind: str, data: bytes, *, token: str | None = None, sha: str = ""
) -> httpx.Response:
    headers = {
        "X-Lease-Token": token or job["lease_token"],
        "X-Content-SHA256": sha or hashlib.sha256(data).hexdigest(),
    }
    return client.put(f"/api/v1/pilot/attempts/{job['attempt_id']}/{kind}", content=data, headers=headers)


def fail(client: httpx.Client, job: dict[str, Any]) -> None:
    body = {"lease_token": job["lease_token"], "outcome": "failure", "failure_class": "payload_error"}
    r = client.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/complete", json=body)
    assert r.status_code == 200, r.text


def start(service: LiveService, user: httpx.Client, pilot: httpx.Client, **overrides: Any) -> tuple[int, int, str]:
    site = new_site()
    body = submission(max_points=1, n_points_per_iteration=1, max_attempts=3, site=site, **overrides)
    r = user.post("/api/v1/tasks", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), register(pilot, site), site


def blob_rows(service: LiveService, sha: str) -> int:
    with service.services.db.read() as conn:
        return len(conn.execute(blobs.select().where(blobs.c.sha256 == sha)).all())


def artifact_rows(service: LiveService, task_id: int) -> int:
    with service.services.db.read() as conn:
        return len(conn.execute(artifacts.select().where(artifacts.c.task_id == task_id)).all())


def nothing_stored(service: LiveService, task_id: int, sha: str) -> bool:
    tmp = service.settings.blob_dir / "tmp"
    return (
        artifact_rows(service, task_id) == 0
        and blob_rows(service, sha) == 0
        and service.services.blobs.path(sha) is None
        and not (tmp.exists() and any(tmp.iterdir()))
    )


def test_checkpoint_round_trip_latest_wins_and_old_blob_goes(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, checkpoint_to_save=["ckpt/", "state.json"])
        job = acquire(pilot, pilot_id)
        checkpoint = job["checkpoint"]
        assert checkpoint["save"] == ["ckpt", "state.json"] and checkpoint["restore"] is None
        assert checkpoint["max_bytes"] == CHECKPOINT_MAX_BYTES and checkpoint["load_as"] is None
        assert checkpoint["upload_url"] == f"/api/v1/pilot/attempts/{job['attempt_id']}/checkpoint"
        assert job["meta"] is None and job["metrics"] is None

        first, second = tgz({"ckpt/a": b"1"}), tgz({"ckpt/a": b"2"})
        first_sha, second_sha = (hashlib.sha256(d).hexdigest() for d in (first, second))
        assert put(pilot, job, "checkpoint", first).status_code == 201
        again = put(pilot, job, "checkpoint", first)
        assert again.status_code == 200, "the same bytes again: idempotent"
        assert again.json()["name"] == f"{task_id}_1.checkpoint.tar.gz"
        assert put(pilot, job, "checkpoint", second).status_code == 201
        assert live_service.services.blobs.path(first_sha) is None and blob_rows(live_service, first_sha) == 0
        fail(pilot, job)

        retry = acquire(pilot, pilot_id)
        assert retry["attempt_number"] == 2
        restore = retry["checkpoint"]["restore"]
        assert restore == {"sha256": second_sha, "size": len(second), "url": retry["checkpoint"]["upload_url"]}
        got = pilot.get(restore["url"], headers={"X-Lease-Token": retry["lease_token"]})
        assert got.status_code == 200 and got.content == second
        foreign = pilot.get(restore["url"], headers={"X-Lease-Token": job["lease_token"]})
        assert foreign.status_code == 409 and error(foreign)["code"] == "lease_foreign"

        listing = user.get(f"/api/v1/tasks/{task_id}/artifacts").json()["artifacts"]
        assert [(a["kind"], a["point_id"], a["attempt"], a["sha256"]) for a in listing] == [
            ("checkpoint", 1, 1, second_sha)
        ]
        assert user.get(listing[0]["url"]).content == second
        with http(live_service, live_service.other_user_token) as bob:
            assert bob.get(f"/api/v1/tasks/{task_id}/artifacts").status_code == 404
            assert bob.get(listing[0]["url"]).status_code == 404


def test_stale_or_foreign_lease_uploads_are_refused_and_store_nothing(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, checkpoint_to_save=["ckpt"])
        job = acquire(pilot, pilot_id)
        data = tgz({"ckpt": b"stale"})
        sha = hashlib.sha256(data).hexdigest()
        wrong = put(pilot, job, "checkpoint", data, token="not-the-lease-token")
        assert wrong.status_code == 409 and error(wrong)["code"] == "lease_foreign"
        fail(pilot, job)
        stale = put(pilot, job, "checkpoint", data)
        assert stale.status_code == 409 and error(stale)["code"] == "attempt_ended"
        assert nothing_stored(live_service, task_id, sha)
        user_put = put(user, job, "checkpoint", data)
        assert user_put.status_code == 403


def test_oversize_stream_is_refused_while_streaming(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, checkpoint_to_save=["ckpt"])
        job = acquire(pilot, pilot_id)
        chunk = b"\0" * (1 << 20)

        def body() -> Iterator[bytes]:
            for _ in range(CHECKPOINT_MAX_BYTES // len(chunk)):
                yield chunk
            yield b"\0"  # one byte over

        digest = hashlib.sha256()
        for part in body():
            digest.update(part)
        headers = {"X-Lease-Token": job["lease_token"], "X-Content-SHA256": digest.hexdigest()}
        url = f"/api/v1/pilot/attempts/{job['attempt_id']}/checkpoint"
        r = pilot.put(url, content=body(), headers=headers)  # chunked: no Content-Length
        assert r.status_code == 413, r.text
        assert "limit of 104857600 bytes" in error(r)["message"]
        assert nothing_stored(live_service, task_id, digest.hexdigest())
        claimed = raw_put(live_service, url, {**headers, "Authorization": f"Bearer {live_service.pilot_token}"})
        assert claimed.startswith(b"HTTP/1.1 413"), "a Content-Length over the limit is refused before the body"


def raw_put(service: LiveService, path: str, headers: dict[str, str]) -> bytes:
    """A PUT announcing more than the limit and sending only a few bytes: the answer must not wait for the rest."""
    host, port = service.url.removeprefix("http://").split(":")
    lines = [
        f"PUT {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {CHECKPOINT_MAX_BYTES + 1}",
        "X-Hposteer-Api: 1",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * 10)
        return sock.recv(4096)


def test_checksum_mismatch_and_missing_checksum_are_refused(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, checkpoint_to_save=["ckpt"])
        job = acquire(pilot, pilot_id)
        data = tgz({"ckpt": b"x"})
        mismatch = put(pilot, job, "checkpoint", data, sha="0" * 64)
        assert mismatch.status_code == 422 and error(mismatch)["code"] == "checksum_mismatch"
        url = f"/api/v1/pilot/attempts/{job['attempt_id']}/checkpoint"
        missing = pilot.put(url, content=data, headers={"X-Lease-Token": job["lease_token"]})
        assert missing.status_code == 422 and "x-content-sha256" in error(missing)["message"]
        assert nothing_stored(live_service, task_id, hashlib.sha256(data).hexdigest())


def test_metrics_are_named_the_panda_way_and_need_the_option(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, evaluation_metrics="metrics.json")
        job = acquire(pilot, pilot_id)
        name = f"{task_id}.metrics.000001.tgz"
        assert job["metrics"]["archive_name"] == name and job["metrics"]["file"] == "metrics.json"
        assert job["checkpoint"] is None
        refused = put(pilot, job, "checkpoint", tgz({"a": b"1"}))
        assert refused.status_code == 422 and error(refused)["code"] == "checkpoints_not_enabled"
        first, second = tgz({"metrics.json_1": b"{}"}), tgz({"metrics.json_1": b'{"a": 1}'})
        assert put(pilot, job, "metrics", first).status_code == 201
        stored = put(pilot, job, "metrics", second)
        assert stored.status_code == 201 and stored.json()["name"] == name
        listing = user.get(f"/api/v1/tasks/{task_id}/artifacts", params={"kind": "metrics"}).json()["artifacts"]
        assert len(listing) == 1 and user.get(listing[0]["url"]).content == second, "the latest wins"
        assert user.get(f"/api/v1/tasks/{task_id}/artifacts", params={"kind": "x"}).status_code == 422


def test_metadata_is_stored_and_listed_per_point(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, pilot_id, _ = start(live_service, user, pilot, evaluation_meta="meta.json")
        job = acquire(pilot, pilot_id)
        assert job["meta"] == {"file": "meta.json", "max_bytes": 2**20}
        body = {"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5, "meta": {"epochs": 3}}
        assert pilot.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/complete", json=body).status_code == 200
        meta = user.get(f"/api/v1/tasks/{task_id}/meta").json()
        assert meta == {
            "points": [{"point_id": 1, "attempts": [{"number": 1, "state": "succeeded", "meta": {"epochs": 3}}]}],
            "next_after": None,
        }
        with http(live_service, live_service.other_user_token) as bob:
            assert bob.get(f"/api/v1/tasks/{task_id}/meta").status_code == 404


def test_blob_dir_has_no_leftovers(live_service: LiveService) -> None:
    tmp = live_service.settings.blob_dir / "tmp"
    assert not (tmp.exists() and any(tmp.iterdir())), "every refused upload removed its temporary file"
