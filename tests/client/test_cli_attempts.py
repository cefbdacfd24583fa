"""`hposteer task show --point` and `hposteer task retry`, run for real against a live service."""

from __future__ import annotations

from pathlib import Path

import pytest

from hposteer.client.cli import main
from hposteer.client.http import ApiClient
from hposteer.client.pilot.slots import cpu_slots
from tests.conftest import LiveService
from tests.support.pilots import new_site, points, run_pilot, submit, upload

FLAKY = """
import json, os, sys
print("attempt", os.environ["HPOSTEER_ATTEMPT"], "of point", os.environ["HPOSTEER_POINT_ID"], flush=True)
if os.path.exists(os.path.join(os.environ["FLAG_DIR"], "fixed")):
    json.dump({"status": 0, "loss": 0.5}, open("output.json", "w"))
else:
    json.dump({"status": 1, "message": "not fixed yet"}, open("output.json", "w"))
"""


def test_show_point_explains_each_attempt_and_retry_reruns_failed_points(
    live_service: LiveService, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAG_DIR", str(tmp_path))
    site = new_site()
    conn = ["--server", live_service.url, "--token", live_service.user_token]
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": FLAKY}), max_points=2, max_attempts=2)
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(1), idle_s=1.0)
        assert {p["state"] for p in points(api, task_id)} == {"failed"}
        first = points(api, task_id)[0]["id"]
        assert main(["task", "show", str(task_id), "--point", str(first), *conn]) == 0
        shown = capsys.readouterr().out
        assert main(["task", "retry", str(task_id), *conn]) == 0
        retried = capsys.readouterr().out
        (tmp_path / "fixed").write_text("")
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(1), idle_s=1.0)
        final = points(api, task_id)
        assert main(["task", "retry", str(task_id), "--json", *conn]) == 1
        refused = capsys.readouterr()
    assert f"point {first} " in shown and "failed, loss 100000 (failure)" in shown
    assert shown.count("payload_error: output.json has status 1: not fixed yet") == 2, shown
    assert f"| attempt 1 of point {first}" in shown and f"| attempt 2 of point {first}" in shown
    assert retried.strip() == f"task {task_id}: 2 failed point(s) re-queued; task running"
    assert [p["state"] for p in final] == ["done", "done"]
    assert all(len(p["attempts"]) == 3 and p["attempts"][-1]["state"] == "succeeded" for p in final)
    assert "no failed points to retry" in refused.err + refused.out
