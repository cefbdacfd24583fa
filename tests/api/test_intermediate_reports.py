"""Intermediate reports (docs/multi-fidelity.md) sent with heartbeats, over real HTTP, on both backends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hposteer.client.cli import main
from hposteer.service.core.job_settings import DEFAULT_REPORT_FILE, JobSettings
from hposteer.service.operations.pilot_jobs import MAX_REPORTS_PER_ATTEMPT
from tests.conftest import LiveService
from tests.support.rest_api import acquire, error, http, new_site, register, submission


def _job(user: httpx.Client, pilot: httpx.Client, **overrides: Any) -> tuple[int, dict[str, Any]]:
    site = new_site()
    body = submission(name="user.alice.reports", max_points=1, n_points_per_iteration=1, site=site, **overrides)
    created = user.post("/api/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    return int(created.json()["id"]), acquire(pilot, register(pilot, site))


def _beat(pilot: httpx.Client, job: dict[str, Any], reports: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"lease_token": job["lease_token"], "reports": reports, **extra}
    return pilot.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/heartbeat", json=body)


def _steps(first: int, last: int) -> list[dict[str, Any]]:
    return [{"step": s, "metrics": {"loss": 1.0 / (s + 1), "acc": s / 100}} for s in range(first, last + 1)]


def _reports(user: httpx.Client, task_id: int, **params: int) -> dict[str, Any]:
    r = user.get(f"/api/v1/tasks/{task_id}/points/1/reports", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_reports_are_stored_once_and_acknowledged(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, job = _job(user, pilot)
        plain = _beat(pilot, job, [])
        assert plain.status_code == 200 and plain.json()["reports_stored"] == 0 and plain.json()["last_step"] is None
        first = _beat(pilot, job, _steps(0, 2), refused=["report file line 4: the line is not JSON"])
        assert first.status_code == 200, first.text
        assert first.json()["action"] == "continue"
        assert (first.json()["reports_stored"], first.json()["last_step"]) == (3, 2)
        again = _beat(pilot, job, _steps(1, 4))  # 1 and 2 re-sent: ignored
        assert (again.json()["reports_stored"], again.json()["last_step"]) == (2, 4)
        same = _beat(pilot, job, _steps(3, 4))
        assert (same.json()["reports_stored"], same.json()["last_step"]) == (0, 4)
        later_plain = _beat(pilot, job, []).json()  # no reports carried: last_step is not looked up
        assert (later_plain["action"], later_plain["reports_stored"], later_plain["last_step"]) == ("continue", 0, None)
        page = _reports(user, task_id)
        assert [(r["attempt_number"], r["step"]) for r in page["reports"]] == [(1, s) for s in range(5)]
        assert page["reports"][4]["metrics"] == {"loss": 0.2, "acc": 0.04} and page["next_after"] is None
        attempt = user.get(f"/api/v1/tasks/{task_id}/points/1").json()["attempts"][0]
        assert attempt["report_count"] == 5 and attempt["last_report"]["step"] == 4
        assert attempt["report_refusals"] == ["report file line 4: the line is not JSON"]
        metrics = httpx.get(f"{live_service.url}/metrics").text
        assert "hposteer_intermediate_reports_stored_total" in metrics


def test_a_bad_report_is_refused_with_its_path_and_nothing_is_stored(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, job = _job(user, pilot)
        cases = [
            ([*_steps(0, 1), {"step": 5, "metrics": {"loss": "low"}}], "reports[2]", "must be a number"),
            ([{"step": 3, "metrics": {"loss": 1}}, {"step": 3, "metrics": {"loss": 2}}], "reports[1]", "must increase"),
            ([{"step": -1, "metrics": {"loss": 1}}], "reports[0]", "must not be negative"),
            ([{"step": 1, "metrics": {}}], "reports[0]", "reports no metric"),
            ([{"step": True, "metrics": {"loss": 1}}], "reports[0]", "'step' must be a whole number"),
            ([{"step": 1, "metrics": {"bad name": 1}}], "reports[0]", "is not allowed"),
        ]
        for reports, where, message in cases:
            r = _beat(pilot, job, reports)
            assert r.status_code == 422, r.text
            assert error(r)["message"].startswith(f"{where}: ") and message in error(r)["message"], r.text
        too_many = _beat(pilot, job, _steps(0, 100))
        assert too_many.status_code == 422 and "at most 100 per call" in error(too_many)["message"]
        long = _beat(pilot, job, [], refused=["x" * 501])
        assert long.status_code == 422 and "at most 500" in error(long)["message"]
        assert _reports(user, task_id)["reports"] == []


def test_a_foreign_or_ended_lease_stores_nothing(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, job = _job(user, pilot)
        foreign = _beat(pilot, {**job, "lease_token": "not-the-token"}, _steps(0, 3), refused=["x"])
        assert foreign.status_code == 409 and error(foreign)["code"] == "lease_foreign"
        done = pilot.post(
            f"/api/v1/pilot/attempts/{job['attempt_id']}/complete",
            json={"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5},
        )
        assert done.status_code == 200, done.text
        late = _beat(pilot, job, _steps(0, 3))
        assert late.status_code == 409 and error(late)["code"] == "attempt_ended"
        assert _reports(user, task_id)["reports"] == []
        attempt = user.get(f"/api/v1/tasks/{task_id}/points/1").json()["attempts"][0]
        assert attempt["report_count"] == 0 and attempt["last_report"] is None and attempt["report_refusals"] == []


def test_an_attempt_keeps_at_most_its_bound_of_reports_and_the_route_pages(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, job = _job(user, pilot)
        for first in range(0, MAX_REPORTS_PER_ATTEMPT, 100):
            r = _beat(pilot, job, _steps(first, first + 99))
            assert r.status_code == 200 and r.json()["reports_stored"] == 100, r.text
        beyond = _beat(pilot, job, _steps(MAX_REPORTS_PER_ATTEMPT, MAX_REPORTS_PER_ATTEMPT + 9))
        assert beyond.status_code == 200
        assert (beyond.json()["reports_stored"], beyond.json()["last_step"]) == (0, MAX_REPORTS_PER_ATTEMPT - 1)
        page = _reports(user, task_id)
        assert len(page["reports"]) == 1000 and page["next_after"] == page["reports"][-1]["seq"]
        seen, after = 0, 0
        while True:
            page = _reports(user, task_id, after=after, limit=3000)
            seen += len(page["reports"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert seen == MAX_REPORTS_PER_ATTEMPT
        whole = _reports(user, task_id, limit=10_000)
        steps = [r["step"] for r in whole["reports"]]
        assert steps == list(range(MAX_REPORTS_PER_ATTEMPT))
        too_big = user.get(f"/api/v1/tasks/{task_id}/points/1/reports", params={"limit": 10_001})
        assert too_big.status_code == 422


def test_reports_are_the_owners_only(live_service: LiveService) -> None:
    with (
        http(live_service, live_service.user_token) as user,
        http(live_service, live_service.other_user_token) as other,
        http(live_service, live_service.pilot_token) as pilot,
    ):
        task_id, job = _job(user, pilot)
        assert _beat(pilot, job, _steps(0, 1)).status_code == 200
        theirs = other.get(f"/api/v1/tasks/{task_id}/points/1/reports")
        assert theirs.status_code == 404, theirs.text
        missing = user.get(f"/api/v1/tasks/{task_id}/points/99/reports")
        assert missing.status_code == 404 and error(missing)["code"] == "point_not_found"


def test_the_report_file_is_checked_at_submit_and_sent_with_the_job(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        _, default = _job(user, pilot)
        assert default["report_file"] == "hposteer_report.jsonl"
        _, named = _job(user, pilot, report_file="curve.jsonl")
        assert named["report_file"] == "curve.jsonl"
        for bad, says in (
            ("../up.jsonl", "no '/', '\\' or '..'"),
            ("sub/dir.jsonl", "plain file name"),
            ("", "1 to 200 characters"),
            ("x" * 201, "1 to 200 characters"),
        ):
            r = user.post("/api/v1/tasks", json=submission(report_file=bad))
            assert r.status_code == 422, r.text
            issues = error(r).get("issues") or []
            assert any(i["field"] == "report_file" and says in i["message"] for i in issues), r.text


def test_tasks_stored_without_a_report_file_get_the_default() -> None:
    settings = JobSettings.from_json({"evaluation_timeout_s": 60.0, "training_data_file": "input_ds.json"})
    assert settings.report_file == DEFAULT_REPORT_FILE == "hposteer_report.jsonl"


def test_task_show_point_shows_each_attempts_curve(
    live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--server", live_service.url, "--token", live_service.user_token]
    with http(live_service, live_service.user_token) as user, http(live_service, live_service.pilot_token) as pilot:
        task_id, job = _job(user, pilot)
        assert main(["task", "show", str(task_id), "--point", "1", *conn]) == 0
        assert "reports" not in capsys.readouterr().out
        assert (
            _beat(pilot, job, _steps(0, 11), refused=["report file line 13: the line is not JSON"]).status_code == 200
        )
        assert main(["task", "show", str(task_id), "--point", "1", *conn]) == 0
    shown = capsys.readouterr().out
    assert "    reports 12 (steps 0..11)" in shown, shown
    assert "      step     11  acc=0.11 loss=0.0833333" in shown, shown
    assert "step      6" not in shown and "step      7  acc=0.07" in shown, "the last 5 rows only"
    assert "      ! report file line 13: the line is not JSON" in shown
