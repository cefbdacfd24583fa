"""Training datasets over real HTTP: upload, register, list, show, owner scoping, the freeze,
submission checks, the pilot download route and the job's ``training`` entry."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hposteer.client.cli import main as hposteer
from tests.conftest import LiveService, live_service_on

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}}
MAX_FILE = 64 * 1024


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A service of its own, with a small dataset file limit, on each backend."""
    with live_service_on(tmp_path_factory.mktemp("datasets"), request.param, dataset_file_max_bytes=MAX_FILE) as s:
        yield s


def http(service: LiveService, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=service.url, headers={"X-Hposteer-Api": "1", "Authorization": f"Bearer {token}"}, timeout=10
    )


def put_file(client: httpx.Client, dataset: str, name: str, data: bytes, sha: str | None = None) -> httpx.Response:
    headers = {"X-Content-SHA256": sha or hashlib.sha256(data).hexdigest()}
    return client.put(f"/api/v1/datasets/{dataset}/files/{name}", content=data, headers=headers)


def cli(service: LiveService, token: str, *args: str) -> int:
    return hposteer(["dataset", *args[:1], "--server", service.url, "--token", token, *args[1:]])


def task(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "user.alice.ds",
        "evaluation_exec": "python train.py %IN_DATA",
        "search_space": SPACE,
        "optimizer": "random",
        "max_points": 2,
        "n_points_per_iteration": 2,
        "site": "NOWHERE",
    }
    body.update(overrides)
    return body


def acquire(pilot: httpx.Client, pilot_id: int) -> dict[str, Any]:
    """The next job, once steering has made points."""
    deadline = time.monotonic() + 10
    while True:
        job = pilot.post("/api/v1/pilot/acquire", json={"pilot_id": pilot_id, "slot": "0"}).json()["job"]
        if job is not None:
            return dict(job)
        assert time.monotonic() < deadline, "no job came"
        time.sleep(0.05)


def issues(response: httpx.Response) -> dict[str, str]:
    return {i["field"]: i["message"] for i in response.json()["error"].get("issues", [])}


def test_upload_show_list_and_idempotent_reupload(
    service: LiveService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train_1.h5").write_bytes(b"one" * 1000)
    (tmp_path / "train_2.h5").write_bytes(b"two" * 500)
    files = [str(tmp_path / "train_1.h5"), str(tmp_path / "train_2.h5")]
    assert cli(service, service.user_token, "upload", "user.alice.mnist:v1", *files) == 0
    err = capsys.readouterr().err
    assert "train_1.h5: uploaded (2.9 KiB" in err and "train_2.h5: uploaded" in err
    assert cli(service, service.user_token, "upload", "user.alice.mnist:v1", *files) == 0
    assert "train_1.h5: already in user.alice.mnist:v1 (same sha256), skipped" in capsys.readouterr().err

    assert cli(service, service.user_token, "show", "user.alice.mnist:v1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "uploaded" and shown["file_count"] == 2 and shown["size"] == 4500
    assert not shown["in_use"]
    assert shown["files"][0] == {
        "name": "train_1.h5",
        "size": 3000,
        "sha256": hashlib.sha256(b"one" * 1000).hexdigest(),
        "location": None,
    }
    assert cli(service, service.user_token, "list") == 0
    table = capsys.readouterr().out
    assert "user.alice.mnist:v1" in table and "uploaded" in table and "4.4 KiB" in table

    with http(service, service.user_token) as user:
        again = put_file(user, "user.alice.mnist:v1", "train_1.h5", b"one" * 1000)
        assert again.status_code == 200, "the same content under the same name changes nothing"
        other = put_file(user, "user.alice.mnist:v1", "train_1.h5", b"something else")
        assert other.status_code == 409 and other.json()["error"]["code"] == "dataset_file_exists"
        assert "never replaced" in other.json()["error"]["message"]
        wrong = put_file(user, "user.alice.mnist:v1", "train_3.h5", b"three", sha="0" * 64)
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "checksum_mismatch"
        unsigned = user.put("/api/v1/datasets/user.alice.mnist:v1/files/train_3.h5", content=b"three")
        assert unsigned.status_code == 422 and "X-Content-SHA256" in issues(unsigned)
        big = put_file(user, "user.alice.mnist:v1", "big.h5", b"x" * (MAX_FILE + 1))
        assert big.status_code == 413 and str(MAX_FILE) in big.json()["error"]["message"]
        bad_name = put_file(user, "user.alice.mnist:v1", "a,b", b"x")
        assert bad_name.status_code == 422 and "invalid file name 'a,b'" in issues(bad_name)["file"]
        bad_dataset = put_file(user, "-bad", "a", b"x")
        assert bad_dataset.status_code == 422 and "invalid dataset name" in issues(bad_dataset)["dataset"]
        assert user.get("/api/v1/datasets/user.alice.mnist:v1").json()["file_count"] == 2, "nothing else was added"


def test_register_paths_and_urls(service: LiveService, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = tmp_path / "events.root"
    local.write_bytes(b"events")
    other = tmp_path / "more.root"
    other.write_bytes(b"events")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([{"name": "remote.h5", "location": "https://data.example.org/remote.h5?v=1,2"}]))
    args = [
        "register",
        "user.alice.reg",
        "--file",
        f"events.root={local}",
        "--file",
        f"file://{other},size=6",
        "--manifest",
        str(manifest),
        "--compute-checksums",
        "--json",
    ]
    assert cli(service, service.user_token, *args) == 0
    shown = json.loads(capsys.readouterr().out)
    by_name = {f["name"]: f for f in shown["files"]}
    sha = hashlib.sha256(b"events").hexdigest()
    assert by_name["events.root"] == {"name": "events.root", "size": 6, "sha256": sha, "location": str(local)}
    assert by_name["more.root"] == {"name": "more.root", "size": 6, "sha256": sha, "location": f"file://{other}"}
    assert by_name["remote.h5"]["location"] == "https://data.example.org/remote.h5?v=1,2"
    assert by_name["remote.h5"]["sha256"] is None and shown["kind"] == "registered"

    with http(service, service.user_token) as user:
        files = [{"name": "events.root", "location": str(local), "sha256": sha, "size": 6}]
        same = user.post("/api/v1/datasets", json={"name": "user.alice.reg", "files": files})
        assert same.status_code == 200, "registering the same file again changes nothing"
        moved = user.post(
            "/api/v1/datasets", json={"name": "user.alice.reg", "files": [{**files[0], "location": "/elsewhere"}]}
        )
        assert moved.status_code == 409 and "already has a file 'events.root'" in moved.json()["error"]["message"]
        bad = user.post(
            "/api/v1/datasets",
            json={"name": "user.alice.bad", "files": [{"name": "../x", "location": "relative/path", "sha256": "zz"}]},
        )
        found = issues(bad)
        assert bad.status_code == 422 and set(found) == {"files[0].name", "files[0].location", "files[0].sha256"}
        assert "neither an absolute path nor a URL" in found["files[0].location"]
        assert user.get("/api/v1/datasets/user.alice.bad").status_code == 404, "nothing was recorded"
        mixed = put_file(user, "user.alice.reg", "up.h5", b"up")
        assert mixed.status_code == 409 and mixed.json()["error"]["code"] == "dataset_kind"
    assert cli(service, service.user_token, "register", "user.alice.reg", "--file", "relative.h5") == 2
    assert "neither an absolute path nor a URL" in capsys.readouterr().err


def test_datasets_are_owner_scoped(service: LiveService) -> None:
    with http(service, service.user_token) as alice, http(service, service.other_user_token) as bob:
        assert put_file(alice, "user.alice.private", "a.h5", b"secret").status_code == 201
        missing = bob.get("/api/v1/datasets/user.alice.private")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
        assert all(d["name"] != "user.alice.private" for d in bob.get("/api/v1/datasets").json()["datasets"])
        refused = bob.post("/api/v1/tasks", json=task(training_ds="user.alice.private"))
        assert (
            refused.status_code == 422 and "you have no dataset 'user.alice.private'" in issues(refused)["training_ds"]
        )
        # bob's own dataset of the same name is a different one
        assert put_file(bob, "user.alice.private", "b.h5", b"bob").status_code == 201
        assert [f["name"] for f in alice.get("/api/v1/datasets/user.alice.private").json()["files"]] == ["a.h5"]


def test_submission_checks_every_dataset_and_segment_file(service: LiveService) -> None:
    with http(service, service.user_token) as user:
        for name in ("a.h5", "b.h5"):
            assert put_file(user, "user.alice.train", name, name.encode()).status_code == 201
        assert put_file(user, "user.alice.other", "a.h5", b"another a").status_code == 201
        before = len(user.get("/api/v1/tasks").json()["tasks"])
        unknown = user.post("/api/v1/tasks", json=task(training_ds="user.alice.nothere"))
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_task"
        assert "hposteer dataset upload user.alice.nothere" in issues(unknown)["training_ds"]
        segments = [
            {"name": "s0", "files": ["a.h5", "zz.h5"]},
            {"name": "s1", "datasets": ["user.alice.gone"]},
            {"name": "s2", "datasets": ["user.alice.other"], "files": ["a.h5"]},
        ]
        bad = user.post("/api/v1/tasks", json=task(training_ds="user.alice.train", segments=segments))
        found = issues(bad)
        assert bad.status_code == 422
        assert (
            "'zz.h5' is not a file of training dataset 'user.alice.train' (it has: a.h5, b.h5)"
            in found["segments[0].files"]
        )
        assert "you have no dataset 'user.alice.gone'" in found["segments[1].datasets"]
        assert "file name 'a.h5' comes from both" in found["segments[2].datasets"]
        no_training = user.post("/api/v1/tasks", json=task(segments=[{"name": "s", "files": ["a.h5"]}]))
        assert "add --trainingDS NAME" in issues(no_training)["segments[0].files"]
        assert len(user.get("/api/v1/tasks").json()["tasks"]) == before, "nothing was stored"
        assert not user.get("/api/v1/datasets/user.alice.train").json()["in_use"], "nor frozen"


def test_a_task_freezes_its_datasets_and_jobs_carry_their_files(service: LiveService) -> None:
    site = "DS-JOBS"
    with http(service, service.user_token) as user, http(service, service.pilot_token) as pilot:
        for name in ("a.h5", "b.h5", "c.h5"):
            assert put_file(user, "user.alice.frozen", name, name.encode()).status_code == 201
        assert put_file(user, "user.alice.extra", "d.h5", b"d.h5").status_code == 201
        assert put_file(user, "user.alice.unused", "u.h5", b"unused").status_code == 201
        segments = [{"name": "s0", "files": ["b.h5"]}, {"name": "s1", "datasets": ["user.alice.extra"]}, {"name": "s2"}]
        body = task(training_ds="user.alice.frozen", segments=segments, site=site, evaluation_training_data="ds.json")
        assert user.post("/api/v1/tasks", json=body).status_code == 201
        assert user.get("/api/v1/datasets/user.alice.frozen").json()["in_use"]
        late = put_file(user, "user.alice.frozen", "late.h5", b"late")
        assert late.status_code == 409 and late.json()["error"]["code"] == "dataset_frozen"
        assert "user.alice.frozen.v2" in late.json()["error"]["message"]
        assert put_file(user, "user.alice.frozen", "a.h5", b"a.h5").status_code == 200, "the same file: a no-op"

        registration = {"name": "p", "site": site, "hostname": "h", "slots": [{"name": "0", "gpus": []}]}
        pilot_id = pilot.post("/api/v1/pilot/register", json={**registration, "runtimes": ["local"]}).json()["pilot_id"]
        staged: dict[str, list[str]] = {}
        for _ in range(6):
            job = acquire(pilot, pilot_id)
            assert job["training"]["file"] == "ds.json"
            staged[job["segment"]["name"]] = [f["name"] for f in job["training"]["files"]]
            first = job["training"]["files"][0]
            assert first["url"] == f"/api/v1/pilot/datasets/files/{first['sha256']}" and first["location"] is None
            download = pilot.get(first["url"])
            assert download.status_code == 200 and download.content == first["name"].encode()
        assert staged == {"s0": ["b.h5"], "s1": ["d.h5"], "s2": ["a.h5", "b.h5", "c.h5"]}

        unused_sha = hashlib.sha256(b"unused").hexdigest()
        assert pilot.get(f"/api/v1/pilot/datasets/files/{unused_sha}").status_code == 404, "not used by a task"
        assert user.get(f"/api/v1/pilot/datasets/files/{unused_sha}").status_code == 403, "pilots only"
