"""The REST API over real HTTP on loopback, against a real service and SQLite database."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService, ServerThread, fast_settings, live_service_on
from tests.support.rest_api import SPACE, acquire, error, http, new_site, register, submission, wait_state

# -- basics ------------------------------------------------------------------------------------


def test_health_and_openapi_need_no_token(live_service: LiveService) -> None:
    with http(live_service, None) as c:
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.headers["X-Hposteer-Api"] == "1"
        spec = c.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/tasks", "/api/v1/pilot/acquire", "/api/v1/pilot/attempts/{attempt_id}/complete"):
        assert path in spec["paths"]


def test_tokens_and_roles(live_service: LiveService) -> None:
    with http(live_service, None) as c:
        r = c.get("/api/v1/tasks")
        assert r.status_code == 401 and "no token" in error(r)["message"]
    with http(live_service, "hps_not-a-real-token") as c:
        r = c.get("/api/v1/tasks")
        assert r.status_code == 401 and "unknown, expired or revoked" in error(r)["message"]
    with http(live_service, live_service.pilot_token) as c:
        r = c.get("/api/v1/tasks")
        assert r.status_code == 403 and "user token" in error(r)["message"]
    with http(live_service, live_service.user_token) as c:
        r = c.post("/api/v1/pilot/acquire", json={"pilot_id": 1, "slot": "0"})
        assert r.status_code == 403 and "pilot token" in error(r)["message"]


def test_client_of_another_api_version_is_told_to_upgrade(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as c:
        r = c.get("/api/v1/tasks", headers={"X-Hposteer-Api": "2"})
    assert r.status_code == 400 and "API version 1" in error(r)["message"]


# -- submission --------------------------------------------------------------------------------


def test_submit_list_show_and_isolation_between_users(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as alice:
        r = alice.post("/api/v1/tasks", json=submission(name="user.alice.iso"))
        assert r.status_code == 201, r.text
        task = r.json()
        assert task["name"] == "user.alice.iso/" and task["owner"] == "alice" and task["state"] == "running"
        assert task["settings"]["max_evaluation_jobs"] == 8, "2 x maxPoints by default"
        assert task["optimizer"] == "random" and task["seed"] == 7
        listed = alice.get("/api/v1/tasks").json()["tasks"]
        assert task["id"] in [t["id"] for t in listed]
    with http(live_service, live_service.other_user_token) as bob:
        for method, path in (
            ("GET", f"/api/v1/tasks/{task['id']}"),
            ("GET", f"/api/v1/tasks/{task['id']}/points"),
            ("POST", f"/api/v1/tasks/{task['id']}/kill"),
        ):
            r = bob.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
        assert task["id"] not in [t["id"] for t in bob.get("/api/v1/tasks").json()["tasks"]]
    with http(live_service, live_service.admin_token) as admin:
        assert admin.get(f"/api/v1/tasks/{task['id']}").status_code == 200


def test_bad_search_space_is_refused_with_parameter_and_key(live_service: LiveService) -> None:
    bad = {
        "lr": {"method": "loguniform", "dimension": {"low": 0, "high": 1}},
        "units": {"method": "uniformint", "dimensions": {"low": 1, "high": 4}},
    }
    with http(live_service, live_service.user_token) as c:
        before = len(c.get("/api/v1/tasks").json()["tasks"])
        r = c.post("/api/v1/tasks", json=submission(search_space=bad))
        assert r.status_code == 422
        issues = error(r)["issues"]
        assert {"lr", "units"} <= {i["parameter"] for i in issues}
        lr = next(i for i in issues if i["parameter"] == "lr")
        assert lr["key"] == "low" and "greater than 0" in lr["message"]
        units = next(i for i in issues if i["parameter"] == "units" and i["key"] == "dimensions")
        assert "did you mean 'dimension'" in units["message"]
        assert len(c.get("/api/v1/tasks").json()["tasks"]) == before, "nothing stored"


def test_unknown_optimizer_and_unhonoured_method_are_refused(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as c:
        r = c.post("/api/v1/tasks", json=submission(optimizer="hyperband"))
        assert r.status_code == 422
        assert any(i.get("field") == "optimizer" and "unknown optimizer" in i["message"] for i in error(r)["issues"])
        normal = {"w": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}}
        r = c.post("/api/v1/tasks", json=submission(search_space=normal, optimizer="tpe"))
        assert r.status_code == 422
        issue = error(r)["issues"][0]
        assert issue["parameter"] == "w" and "normal" in issue["message"]
        r = c.post("/api/v1/tasks", json=submission(search_space=normal, optimizer="nevergrad"))
        assert r.status_code == 201, "nevergrad honours normal"


def test_steering_containers_are_parsed_to_a_safe_subset_and_hpogrid_line_is_mapped(
    live_service: LiveService,
) -> None:
    with http(live_service, live_service.user_token) as c:
        docker_form = 'run --rm -v "$(pwd)":/w img /bin/bash -c "hpogrid generate -n %NUM_POINTS"'
        r = c.post("/api/v1/tasks", json=submission(optimizer=None, steering_exec=docker_form, dry_run=True))
        assert r.status_code == 200, r.text
        assert r.json()["optimizer"] == "container"
        unsafe = 'run --rm --privileged -v "$(pwd)":/w img /bin/bash -c "hpogrid generate -n %NUM_POINTS"'
        r = c.post("/api/v1/tasks", json=submission(optimizer=None, steering_exec=unsafe))
        assert r.status_code == 422
        issue = error(r)["issues"][0]
        assert issue["field"] == "steering_exec" and "'--privileged' is not allowed" in issue["message"]
        line = "hpogrid generate --n_point=%NUM_POINTS --max_point=%MAX_POINTS --infile=$PWD/%IN -l=skopt"
        r = c.post("/api/v1/tasks", json=submission(optimizer=None, steering_exec=line))
        assert r.status_code == 201, r.text
        assert r.json()["optimizer"] == "skopt:GP"


def test_request_field_errors_name_the_field(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as c:
        r = c.post("/api/v1/tasks", json=submission(max_points=0, maxPoints=3))
    assert r.status_code == 422
    fields = {i["field"] for i in error(r)["issues"]}
    assert {"body.max_points", "body.maxPoints"} <= fields


def test_dry_run_validates_and_stores_nothing(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as c:
        before = [t["id"] for t in c.get("/api/v1/tasks").json()["tasks"]]
        r = c.post("/api/v1/tasks", json=submission(dry_run=True))
        assert r.status_code == 200 and r.json()["state"] == "running"
        assert [t["id"] for t in c.get("/api/v1/tasks").json()["tasks"]] == before


# -- the pilot protocol ------------------------------------------------------------------------


def test_full_pilot_cycle_until_the_task_finishes(live_service: LiveService) -> None:
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        site = new_site()
        task_id = user.post("/api/v1/tasks", json=submission(name="user.alice.cycle", site=site)).json()["id"]
        pilot_id = register(pilot, site)
        seen_exec = set()
        for _ in range(4):
            job = acquire(pilot, pilot_id)
            assert job["task_id"] == task_id
            assert set(job["params"]) == {"x", "n", "act"}
            assert -2 <= job["params"]["x"] <= 2 and job["params"]["act"] in ("relu", "tanh")
            seen_exec.add(job["evaluation_exec"])
            hb = pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/heartbeat",
                json={"lease_token": job["lease_token"]},
            )
            assert hb.status_code == 200 and hb.json()["action"] == "continue"
            loss = (job["params"]["x"] - 0.5) ** 2
            done = pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
                json={"lease_token": job["lease_token"], "outcome": "success", "loss": loss, "exit_code": 0},
            )
            assert done.status_code == 200 and done.json() == {
                "accepted": True,
                "point_state": "done",
                "next_job": None,
            }
            again = pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
                json={"lease_token": job["lease_token"], "outcome": "success", "loss": 0.0},
            )
            assert again.status_code == 409 and error(again)["code"] == "attempt_ended"
        assert seen_exec == {f"python train.py --seed {100 + i}" for i in range(4)}, "%RNDM:100 + job number"
        task = wait_state(user, task_id, "finished")
        assert task["end_reason"] == "max_points"
        assert task["progress"]["done"] == 4 and task["progress"]["jobs"] == 4
        points = user.get(f"/api/v1/tasks/{task_id}/points").json()["points"]
        best = min(points, key=lambda p: p["loss"])
        assert task["best"]["point_id"] == best["id"] and task["best"]["loss"] == best["loss"]
        assert all(p["attempts"][0]["state"] == "succeeded" for p in points)


def test_complete_can_hand_back_the_next_job(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        task_id = user.post("/api/v1/tasks", json=submission(name="user.alice.next", site=site)).json()["id"]
        pilot_id = register(pilot, site)
        job = acquire(pilot, pilot_id)
        handed_back = []
        for completed in range(1, 5):
            answer = pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
                json={"lease_token": job["lease_token"], "outcome": "success", "loss": 1.0, "acquire_next": True},
            ).json()
            assert answer["accepted"]
            if answer["next_job"] is not None:
                handed_back.append(answer["next_job"]["point_id"])
                job = answer["next_job"]
            elif completed < 4:
                job = acquire(pilot, pilot_id)  # the next iteration's points were not steered yet
        assert handed_back[0] == 2, "the second point of the first iteration came back with the first completion"
        assert wait_state(user, task_id, "finished")["progress"]["done"] == 4


def test_segmented_task_steers_each_segment_and_sends_model_id_points(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        body = submission(
            name="user.alice.seg",
            site=site,
            max_points=2,
            n_points_per_iteration=2,
            segments=[{"name": "segA"}, {"name": "segB"}],  # segment files/datasets: tests/api/test_datasets.py
            evaluation_exec="python train.py --segment %SEGMENT_NAME --seed %RNDM:100",
        )
        task = user.post("/api/v1/tasks", json=body).json()
        assert [(s["index"], s["name"]) for s in task["segments"]] == [(0, "segA"), (1, "segB")]
        assert task["progress"]["max_points"] == 4, "maxPoints is per segment"
        pilot_id = register(pilot, site)
        seen = set()
        numbers: dict[int, list[int]] = {0: [], 1: []}
        for _ in range(4):
            job = acquire(pilot, pilot_id)
            model_id, params = job["params"]
            assert job["segment"]["index"] == model_id and set(params) == {"x", "n", "act"}
            seed = 100 + job["job_number"]
            assert job["evaluation_exec"] == f"python train.py --segment {job['segment']['name']} --seed {seed}"
            seen.add(job["segment"]["name"])
            numbers[model_id].append(job["job_number"])
            pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
                json={"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5},
            )
        assert seen == {"segA", "segB"}
        # each segment numbers its own jobs, interleaved with the other's: distinct within the task
        assert sorted(numbers[0]) == [0, 2] and sorted(numbers[1]) == [1, 3], numbers
        done = wait_state(user, task["id"], "finished")
        assert [s["state"] for s in done["segments"]] == ["done", "done"]
        bad = submission(
            name="user.alice.seg2", segments=[{"name": "s"}], search_space=[{"model_id": 3, "search_space": SPACE}]
        )
        r = user.post("/api/v1/tasks", json=bad)
        assert r.status_code == 422 and "no search space for segment 's' (model_id 0)" in r.text


def test_foreign_token_and_failures_and_retries(live_service: LiveService) -> None:
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        site = new_site()
        body = submission(name="user.alice.fail", max_points=1, n_points_per_iteration=1, max_attempts=2, site=site)
        task_id = user.post("/api/v1/tasks", json=body).json()["id"]
        pilot_id = register(pilot, site)
        job = acquire(pilot, pilot_id)
        wrong = pilot.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/heartbeat", json={"lease_token": "nope"})
        assert wrong.status_code == 409 and error(wrong)["code"] == "lease_foreign"
        for expected_state, attempt in (("pending", 1), ("failed", 2)):
            if attempt == 2:
                job = acquire(pilot, pilot_id)
            assert job["attempt_number"] == attempt
            r = pilot.post(
                f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
                json={
                    "lease_token": job["lease_token"],
                    "outcome": "failure",
                    "failure_class": "missing_output",
                    "exit_code": 0,
                    "message": "output.json was not written",
                },
            )
            assert r.status_code == 200 and r.json()["point_state"] == expected_state
        task = wait_state(user, task_id, "failed")
        assert task["end_reason"] == "all_points_failed", "its only point failed: the task is not a success"
        point = user.get(f"/api/v1/tasks/{task_id}/points").json()["points"][0]
        assert point["state"] == "failed" and point["is_failure"] and point["loss"] == 1e5
        assert [a["failure_class"] for a in point["attempts"]] == ["missing_output", "missing_output"]
        assert task["best"] is None, "a failed point is never the best"
        bad = pilot.post(
            f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
            content=f'{{"lease_token": "{job["lease_token"]}", "outcome": "success", "loss": 1e999}}',
            headers={"Content-Type": "application/json"},
        )
        assert bad.status_code == 422 and "finite" in error(bad)["message"]


def test_lost_lease_returns_the_point_and_refuses_the_late_result(live_service: LiveService) -> None:
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        site = new_site()
        body = submission(name="user.alice.lease", max_points=1, n_points_per_iteration=1, site=site)
        task_id = user.post("/api/v1/tasks", json=body).json()["id"]
        pilot_id = register(pilot, site)
        lost = acquire(pilot, pilot_id)
        # no heartbeat: TTL 2 s + reaper 0.25 s later the point is pending again
        second = acquire(pilot, pilot_id, timeout_s=live_service.settings.lease_ttl_s + 3)
        assert second["point_id"] == lost["point_id"] and second["attempt_number"] == 2
        late = pilot.post(
            f"/api/v1/pilot/attempts/{lost['attempt_id']}/complete",
            json={"lease_token": lost["lease_token"], "outcome": "success", "loss": 0.1},
        )
        assert late.status_code == 409 and error(late)["code"] == "attempt_ended"
        attempts = user.get(f"/api/v1/tasks/{task_id}/points").json()["points"][0]["attempts"]
        assert attempts[0]["state"] == "expired" and attempts[0]["failure_class"] == "lost_lease"


def test_kill_tells_running_attempts_to_stop(live_service: LiveService) -> None:
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        site = new_site()
        task_id = user.post("/api/v1/tasks", json=submission(name="user.alice.kill", site=site)).json()["id"]
        job = acquire(pilot, register(pilot, site))
        killed = user.post(f"/api/v1/tasks/{task_id}/kill")
        assert killed.status_code == 200 and killed.json()["state"] == "killed"
        hb = pilot.post(
            f"/api/v1/pilot/attempts/{job['attempt_id']}/heartbeat", json={"lease_token": job["lease_token"]}
        )
        assert hb.status_code == 200 and hb.json()["action"] == "kill"
        again = user.post(f"/api/v1/tasks/{task_id}/kill")
        assert again.status_code == 409 and "already ended" in error(again)["message"]
        points = user.get(f"/api/v1/tasks/{task_id}/points").json()["points"]
        assert {p["state"] for p in points} == {"cancelled"}


# -- sandboxes and overload --------------------------------------------------------------------


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('hi')\n"
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_sandbox_upload_is_content_addressed_and_checked(live_service: LiveService) -> None:
    data = _tarball()
    sha = hashlib.sha256(data).hexdigest()
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        assert user.head(f"/api/v1/sandboxes/{sha}").status_code == 404
        r = user.post("/api/v1/sandboxes", content=data, headers={"X-Content-SHA256": sha})
        assert r.status_code == 201 and r.json() == {"sha256": sha, "size": len(data)}
        assert user.post("/api/v1/sandboxes", content=data).status_code == 200
        assert user.head(f"/api/v1/sandboxes/{sha}").status_code == 200
        mismatch = user.post("/api/v1/sandboxes", content=data + b"x", headers={"X-Content-SHA256": sha})
        assert mismatch.status_code == 422 and error(mismatch)["code"] == "checksum_mismatch"
        unknown = user.post("/api/v1/tasks", json=submission(sandbox_sha256="0" * 64))
        assert unknown.status_code == 422 and "never uploaded" in error(unknown)["message"]
        site = new_site()
        body = submission(name="user.alice.sb", sandbox_sha256=sha, site=site)
        task_id = user.post("/api/v1/tasks", json=body).json()["id"]
        job = acquire(pilot, register(pilot, site))
        assert job["task_id"] == task_id
        assert job["sandbox"]["sha256"] == sha
        assert pilot.get(job["sandbox"]["url"]).content == data
    tmp = live_service.settings.blob_dir / "tmp"
    assert not any(tmp.iterdir()), "failed uploads leave nothing behind"


def test_oversized_upload_is_refused_and_locked_database_answers_503(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, sandbox_max_bytes=1024, busy_timeout_s=0.5)
    with ServerThread(settings) as server:
        from hposteer.service.operations.auth import create_token

        token = create_token(server.app.state.services.db, role="user", owner="carol")[1]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
            big = c.post("/api/v1/sandboxes", content=b"x" * 4096)
            assert big.status_code == 413 and "limit of 1024 bytes" in error(big)["message"]
            temp = settings.blob_dir / "tmp"  # refused on its Content-Length: no temporary file is even made
            assert not temp.exists() or not any(temp.iterdir())
            blocker = sqlite3.connect(settings.data_dir / "hposteer.db", timeout=0)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                started = time.monotonic()
                r = c.post("/api/v1/tasks", json=submission())
                elapsed = time.monotonic() - started
            finally:
                blocker.rollback()
                blocker.close()
            assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
            assert elapsed < 5, "busy answers come quickly, they never hang"
            assert c.post("/api/v1/tasks", json=submission()).status_code == 201


def test_a_postgresql_lock_wait_answers_503_quickly(tmp_path: Path) -> None:
    """lock_timeout on every connection: a table another session holds makes a request answer 503
    after the busy timeout, not wait for the lock."""
    from sqlalchemy import create_engine, text

    with live_service_on(tmp_path, "postgresql", busy_timeout_s=0.5) as service, http(service, service.user_token) as c:
        assert c.post("/api/v1/tasks", json=submission()).status_code == 201
        blocker = create_engine(service.settings.resolved_database_url)
        try:
            with blocker.connect() as conn, conn.begin():
                conn.execute(text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                r = c.post("/api/v1/tasks", json=submission())
                elapsed = time.monotonic() - started
        finally:
            blocker.dispose()
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert elapsed < 3, "the lock wait was cut at the busy timeout (the log says: lock timeout)"
        assert c.post("/api/v1/tasks", json=submission()).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_exhausted_connection_pool_answers_503_never_hangs(tmp_path: Path, backend: str) -> None:
    """Every pooled connection busy (here: held by the test): requests wait the busy timeout for one,
    then answer 503 with Retry-After, and serve again once connections are back."""
    overrides = {"busy_timeout_s": 0.5, "db_pool_size": 1}
    with live_service_on(tmp_path, backend, **overrides) as service, http(service, service.user_token) as c:
        engine = service.services.db.engine
        held = [engine.connect() for _ in range(2)]  # a pool of 2 x db_pool_size
        try:
            started = time.monotonic()
            r = c.get("/api/v1/tasks")
            elapsed = time.monotonic() - started
        finally:
            for conn in held:
                conn.close()
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert 0.4 < elapsed < 3
        assert c.get("/api/v1/tasks").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/tasks/999999"])
def test_not_found_uses_the_error_envelope(live_service: LiveService, path: str) -> None:
    with http(live_service, live_service.user_token) as c:
        r = c.get(path)
    assert r.status_code == 404 and error(r)["message"]
