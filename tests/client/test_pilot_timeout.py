"""--evaluationTimeout: a real payload that runs too long is stopped and counted as a timeout."""

from __future__ import annotations

import time
from pathlib import Path

from hposteer.client.http import ApiClient
from hposteer.client.pilot.slots import cpu_slots
from tests.conftest import LiveService
from tests.support.pilots import new_site, points, run_pilot, submit, upload

SLOW = """
import json, time
p = json.load(open("input.json"))
print("starting", flush=True)
time.sleep(60)
json.dump({"loss": 1.0}, open("output.json", "w"))
"""


def test_an_evaluation_over_its_timeout_is_stopped_and_classed_timeout(
    live_service: LiveService, tmp_path: Path
) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": SLOW}), max_points=1, max_attempts=2, evaluation_timeout_s=0.8
        )
        started = time.monotonic()
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(1), idle_s=1.0)
        took = time.monotonic() - started
        (point,) = points(api, task_id)
        detail = api.get_point(task_id, point["id"])
    assert point["state"] == "failed" and point["is_failure"] and point["loss"] == 1e5
    assert [a["failure_class"] for a in point["attempts"]] == ["timeout", "timeout"]
    assert "evaluation timeout of 0.8 s" in point["attempts"][0]["message"]
    assert all(a["duration_s"] < 10 for a in point["attempts"])
    assert "starting" in detail["attempts"][0]["log_tail"], "the output up to the stop is kept"
    assert took < 30, f"two 60 s payloads were stopped at their timeout, the pilot took {took:.1f} s"
