"""PanDA's attempt semantics over real HTTP: idempotent pilot calls (R4), late results (R3),
attempt details, `task retry`, several points per job and the failures-as-losses option."""

from __future__ import annotations

import time

import httpx

from tests.conftest import LiveService
from tests.support.rest_api import (
    acquire_with_key,
    complete_attempt,
    error,
    fail_attempt,
    http,
    new_site,
    register,
    submission,
    wait_state,
)


def test_a_retried_acquire_gets_the_same_job_and_a_new_key_another(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        user.post("/api/v1/tasks", json=submission(site=site, max_points=2)).raise_for_status()
        pilot_id = register(pilot, site)
        first = acquire_with_key(pilot, pilot_id, "key-aaaaaaaa")
        again = acquire_with_key(pilot, pilot_id, "key-aaaaaaaa")
        other = acquire_with_key(pilot, pilot_id, "key-bbbbbbbb")
    assert (again["attempt_id"], again["lease_token"], again["params"]) == (
        first["attempt_id"],
        first["lease_token"],
        first["params"],
    )
    assert other["attempt_id"] != first["attempt_id"] and other["point_id"] != first["point_id"]


def test_a_retried_completion_gets_the_first_answer_and_a_stranger_409(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        task = user.post("/api/v1/tasks", json=submission(site=site, max_points=2)).json()
        pilot_id = register(pilot, site)
        job = acquire_with_key(pilot, pilot_id, "acq-00000001")
        first = complete_attempt(pilot, job, loss=0.25, request_key="done-0000001", acquire_next=True)
        repeat = complete_attempt(pilot, job, loss=0.25, request_key="done-0000001", acquire_next=True)
        stranger = complete_attempt(pilot, job, loss=9.0, request_key="done-0000002")
        points = user.get(f"/api/v1/tasks/{task['id']}/points").json()["points"]
    assert first.status_code == 200 and repeat.status_code == 200, (first.text, repeat.text)
    assert first.json()["next_job"] is not None
    assert repeat.json()["repeated"] is True and repeat.json()["point_state"] == "done"
    assert repeat.json()["next_job"]["attempt_id"] == first.json()["next_job"]["attempt_id"]
    assert stranger.status_code == 409 and error(stranger)["code"] == "attempt_ended"
    done = next(p for p in points if p["id"] == job["point_id"])
    assert done["loss"] == 0.25 and len(done["attempts"]) == 1, "one accepted result; the repeat changed nothing"


def test_a_result_after_the_lease_expired_is_refused_and_the_point_is_retried(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        task = user.post("/api/v1/tasks", json=submission(site=site, max_points=1)).json()
        pilot_id = register(pilot, site)
        job = acquire_with_key(pilot, pilot_id, "late-0000001")
        ttl = live_service.settings.lease_ttl_s + live_service.settings.reaper_interval_s
        time.sleep(ttl + 0.5)
        late = complete_attempt(pilot, job, loss=0.1)
        point = user.get(f"/api/v1/tasks/{task['id']}/points/{job['point_id']}").json()
    assert late.status_code == 409, late.text
    assert error(late)["code"] in ("lease_expired", "attempt_ended")
    assert point["state"] == "pending" and point["loss"] is None
    assert point["attempts"][0]["state"] == "expired" and point["attempts"][0]["failure_class"] == "lost_lease"


def test_a_point_shows_each_attempt_with_class_exit_code_timing_log_tail_and_metadata(
    live_service: LiveService,
) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        task = user.post("/api/v1/tasks", json=submission(site=site, max_points=1, max_attempts=2)).json()
        pilot_id = register(pilot, site)
        job = acquire_with_key(pilot, pilot_id, "show-0000001")
        tail = "x" * 70_000 + "\nTraceback: boom"
        assert fail_attempt(pilot, job, message="the evaluation exited with code 1", log_tail=tail).status_code == 200
        job2 = acquire_with_key(pilot, pilot_id, "show-0000002")
        meta = {"epochs": 3, "accuracy": [0.5, 0.7, 0.8]}
        assert complete_attempt(pilot, job2, loss=0.3, meta=meta, log_tail="fine\n").status_code == 200
        point = user.get(f"/api/v1/tasks/{task['id']}/points/{job['point_id']}").json()
        missing = user.get(f"/api/v1/tasks/{task['id']}/points/999")
        foreign = httpx.get(
            f"{live_service.url}/api/v1/tasks/{task['id']}/points/{job['point_id']}",
            headers={"Authorization": f"Bearer {live_service.other_user_token}"},
        )
        too_big = complete_attempt(pilot, job2, meta={"blob": "y" * (1 << 20)})
    failed, succeeded = point["attempts"]
    assert (failed["state"], failed["failure_class"], failed["exit_code"]) == ("failed", "payload_error", 1)
    assert failed["pilot"] == "t" and failed["site"] == site and failed["duration_s"] >= 0
    assert len(failed["log_tail"]) == 64 * 1024 and failed["log_tail"].endswith("Traceback: boom")
    assert succeeded["meta"] == meta and succeeded["log_tail"] == "fine\n"
    assert point["state"] == "done" and point["loss"] == 0.3
    assert missing.status_code == 404 and error(missing)["code"] == "point_not_found"
    assert foreign.status_code == 404
    assert too_big.status_code == 422 and "1 MB" in error(too_big)["message"]


def test_retry_requeues_failed_points_with_a_fresh_round_of_attempts(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        body = submission(site=site, max_points=1, n_points_per_iteration=1, max_attempts=2, max_evaluation_jobs=2)
        task = user.post("/api/v1/tasks", json=body).json()
        pilot_id = register(pilot, site)
        for key in ("retry-000001", "retry-000002"):
            fail_attempt(pilot, acquire_with_key(pilot, pilot_id, key))
        failed = wait_state(user, task["id"], "failed")
        retried = user.post(f"/api/v1/tasks/{task['id']}/retry")
        job = acquire_with_key(pilot, pilot_id, "retry-000003")
        assert complete_attempt(pilot, job, loss=0.125).status_code == 200
        done = wait_state(user, task["id"], "finished")
        point = user.get(f"/api/v1/tasks/{task['id']}/points/{job['point_id']}").json()
        nothing = user.post(f"/api/v1/tasks/{task['id']}/retry")
    assert failed["progress"]["failed"] == 1 and failed["end_reason"] == "all_points_failed", failed
    assert retried.status_code == 200, retried.text
    assert retried.json()["requeued"] == 1 and retried.json()["task"]["state"] == "running", "failed -> running"
    assert retried.json()["task"]["end_reason"] is None and retried.json()["task"]["message"] is None
    assert job["attempt_number"] == 3, "attempts keep counting across the retry"
    assert done["progress"]["done"] == 1 and done["progress"]["failed"] == 0 and done["best"]["loss"] == 0.125
    assert [a["state"] for a in point["attempts"]] == ["failed", "failed", "succeeded"]
    assert nothing.status_code == 409 and error(nothing)["code"] == "nothing_to_retry"


def test_a_job_takes_several_points_when_the_task_allows_it(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        body = submission(site=site, max_points=4, n_points_per_iteration=4, n_parallel_evaluation=1)
        task = user.post("/api/v1/tasks", json={**body, "max_points_per_job": 2}).json()
        pilot_id = register(pilot, site)
        job = acquire_with_key(pilot, pilot_id, "multi-000001")
        steps = [(job["job_number"], job["job_step"])]
        for i in range(3):
            answer = complete_attempt(pilot, job, loss=float(i), acquire_next=True).json()
            job = answer["next_job"] or acquire_with_key(pilot, pilot_id, f"multi-00001{i}")
            steps.append((job["job_number"], job["job_step"]))
        complete_attempt(pilot, job, loss=4.0)
        shown = wait_state(user, task["id"], "finished")
    assert steps == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert job["max_points_per_job"] == 2
    assert shown["progress"]["jobs"] == 2 and shown["progress"]["done"] == 4


def test_job_settings_and_the_failure_policy_are_stored_and_handed_to_the_pilot(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        site = new_site()
        body = {**submission(site=site, max_points=1), "failures_as_losses": True, "evaluation_timeout_s": 90.0}
        task = user.post("/api/v1/tasks", json=body).json()
        job = acquire_with_key(pilot, register(pilot, site), "settings-001")
        bad = user.post(
            "/api/v1/tasks",
            json={**submission(site=site), "checkpoint_to_save": ["../up", "/abs"], "checkpoint_to_load": "a/b"},
        )
    assert task["settings"]["failures_as_losses"] is True
    assert task["settings"]["evaluation_timeout_s"] == 90.0
    assert job["evaluation_timeout_s"] == 90.0 and job["job_step"] == 1
    assert bad.status_code == 422
    fields = {i["field"]: i["message"] for i in error(bad)["issues"]}
    assert "must not leave the working directory" in fields["checkpoint_to_save[0]"]
    assert "not absolute" in fields["checkpoint_to_save[1]"]
    assert "plain file name" in fields["checkpoint_to_load"]
