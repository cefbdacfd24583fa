"""A task whose every point failed is not a success: it ends ``failed`` (``all_points_failed``),
and the API, `hposteer task wait`'s exit code, `task list`/`task show` and the UI badge say so.
A real service on loopback (SQLite, then PostgreSQL), a pilot driven over the API, the CLI as a
subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from tests.conftest import LiveService
from tests.support.rest_api import (
    acquire_with_key,
    complete_attempt,
    fail_attempt,
    http,
    new_site,
    register,
    submission,
    wait_state,
)
from tests.support.web_ui import login


def _cli(service: LiveService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hposteer.client.cli", *args, "--server", service.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HPOSTEER_TOKEN": service.user_token},
        check=False,
    )


def _run_task(service: LiveService, outcomes: list[str]) -> dict[str, Any]:
    """A task of ``len(outcomes)`` points, one attempt each, ended by a pilot as told."""
    with http(service, service.user_token) as user, http(service, service.pilot_token) as pilot:
        site = new_site()
        n = len(outcomes)
        body = submission(site=site, max_points=n, n_points_per_iteration=n, max_attempts=1)
        task = user.post("/api/v1/tasks", json=body).json()
        pilot_id = register(pilot, site)
        for i, outcome in enumerate(outcomes):
            job = acquire_with_key(pilot, pilot_id, f"fv-{task['id']}-{i:04d}")
            answer = fail_attempt(pilot, job) if outcome == "fail" else complete_attempt(pilot, job, loss=0.25)
            assert answer.status_code == 200, answer.text
        expected = "finished" if "done" in outcomes else "failed"
        return wait_state(user, task["id"], expected)


def _row(table: str, task_id: int) -> list[str]:
    return next(line.split() for line in table.splitlines()[1:] if line.split()[0] == str(task_id))


def _badge(html: str, task_id: int) -> str:
    row = re.search(rf'<tr data-task="{task_id}">(.*?)</tr>', html, re.S)
    assert row is not None, html
    badge = re.search(r'<span class="badge state-([a-z]+)">', row.group(1))
    assert badge is not None, row.group(1)
    return badge.group(1)


def test_a_task_whose_every_point_failed_is_failed_everywhere(live_service: LiveService) -> None:
    task = _run_task(live_service, ["fail", "fail"])
    tid = task["id"]
    assert task["state"] == "failed" and task["end_reason"] == "all_points_failed", task
    assert "all 2 evaluated points failed" in task["message"], task
    assert task["progress"]["done"] == 0 and task["progress"]["failed"] == 2 and task["best"] is None

    waited = _cli(live_service, "task", "wait", str(tid))
    assert waited.returncode == 4, (waited.stdout, waited.stderr)
    assert "all 2 evaluated points failed" in waited.stdout
    assert _cli(live_service, "task", "wait", str(tid), "--json").returncode == 4

    listed = _cli(live_service, "task", "list")
    assert listed.returncode == 0, listed.stderr
    assert _row(listed.stdout, tid)[1:4] == ["failed", "0/2", "2"], "DONE counts no failed point; FAILED does"
    shown = _cli(live_service, "task", "show", str(tid))
    assert "state      failed (all_points_failed)" in shown.stdout, shown.stdout
    chained = subprocess.run(["sh", "-c", '"$@" && echo next-step', "sh", sys.executable, "-m", "hposteer.client.cli",
                              "task", "wait", str(tid), "--server", live_service.url],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "HPOSTEER_TOKEN": live_service.user_token})  # fmt: skip
    assert chained.returncode == 4 and "next-step" not in chained.stdout, "`task wait && next` stops"

    with login(live_service, live_service.user_token) as browser:
        assert _badge(browser.get("/ui/tasks").text, tid) == "failed"
        page = browser.get(f"/ui/tasks/{tid}").text
        assert '<span class="badge state-failed">failed</span>' in page
        assert 'id="end-reason">(all_points_failed)' in page and 'id="retry"' in page, "retry stays offered"


def test_a_task_with_one_done_point_is_finished_and_counts_only_it_as_done(live_service: LiveService) -> None:
    task = _run_task(live_service, ["fail", "done", "fail"])
    tid = task["id"]
    assert task["state"] == "finished" and task["end_reason"] == "max_points" and task["message"] is None
    waited = _cli(live_service, "task", "wait", str(tid))
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert _row(_cli(live_service, "task", "list").stdout, tid)[1:4] == ["finished", "1/3", "2"]
    with login(live_service, live_service.user_token) as browser:
        assert _badge(browser.get("/ui/tasks").text, tid) == "finished"


def test_a_killed_task_waits_with_exit_6_and_a_missing_one_with_1(live_service: LiveService) -> None:
    with http(live_service, live_service.user_token) as user:
        tid = user.post("/api/v1/tasks", json=submission(site=new_site())).json()["id"]
        assert user.post(f"/api/v1/tasks/{tid}/kill").status_code == 200
    assert _cli(live_service, "task", "wait", str(tid)).returncode == 6
    missing = _cli(live_service, "task", "wait", "999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
