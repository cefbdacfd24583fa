"""``GET /metrics`` scraped from a live service after real traffic, parsed as Prometheus parses it.

Once on SQLite with steering in a thread, once on PostgreSQL with steering in its child process
(whose steering-run latencies reach the parent's histogram through the relay).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import live_service_on
from tests.events.plugins import Plugins, acquire_job, bus_of, complete
from tests.support.rest_api import http, new_site, register, submission, wait_state


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels); no token, as a Prometheus server asks."""
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


@pytest.mark.parametrize(("backend", "steering_mode"), [("sqlite", "thread"), ("postgresql", "process")])
def test_metrics_count_what_the_service_did(tmp_path: Path, plugins: Plugins, backend: str, steering_mode: str) -> None:
    with live_service_on(tmp_path / "data", backend, steering_mode=steering_mode, event_handlers=["recording"]) as live:
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(site=site, max_points=4, n_points_per_iteration=4, max_attempts=1)
            task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
            pilot_id = register(pilot, site)
            jobs = [acquire_job(pilot, pilot_id, timeout_s=30) for _ in range(4)]
            for n, job in enumerate(jobs):
                complete(pilot, job, None if n == 0 else 0.1 * n)
            wait_state(user, task_id, "finished")
            idle = pilot.post("/api/v1/pilot/acquire", json={"pilot_id": pilot_id, "slot": "0"})
            assert idle.status_code == 200 and idle.json()["job"] is None
        assert bus_of(live).drain(10)
        m = scrape(live.url)

    def value(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    # Database gauges: the whole installation at scrape time.
    assert value("hposteer_database_up") == 1
    assert {s: value("hposteer_points", state=s) for s in ("pending", "running", "done", "failed", "cancelled")} == {
        "pending": 0,
        "running": 0,
        "done": 3,
        "failed": 1,
        "cancelled": 0,
    }
    assert value("hposteer_tasks", state="finished") == 1 and value("hposteer_tasks", state="running") == 0
    assert value("hposteer_pilots_active") == 1 and value("hposteer_attempts_running") == 0
    # In-process counters and histograms of this replica.
    assert value("hposteer_attempts_started_total") == 4
    assert value("hposteer_attempts_ended_total", outcome="succeeded") == 3
    assert value("hposteer_attempts_ended_total", outcome="failed") == 1
    assert value("hposteer_attempts_ended_total", outcome="expired") == 0
    assert value("hposteer_acquire_duration_seconds_count", result="job") == 4
    assert value("hposteer_acquire_duration_seconds_count", result="idle") >= 1
    assert 0 < value("hposteer_acquire_duration_seconds_sum", result="job") < 4 * 5
    assert value("hposteer_acquire_duration_seconds_bucket", result="job", le="+Inf") == 4
    assert value("hposteer_steering_run_duration_seconds_count", outcome="ok") == 1
    assert value("hposteer_steering_run_duration_seconds_sum", outcome="ok") > 0
    assert value("hposteer_steering_run_duration_seconds_count", outcome="failed") == 0
    # The event bus: what each handler did.
    assert value("hposteer_events_handled_total", handler="recording") == len(plugins.recorder.events) - 1  # + shutdown
    assert value("hposteer_events_dropped_total", handler="recording") == 0
    assert value("hposteer_events_queued", handler="recording") == 0
    assert ("process_resident_memory_bytes", ()) in m


def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    with live_service_on(tmp_path / "data", metrics_enabled=False) as live:
        assert httpx.get(f"{live.url}/metrics", timeout=10).status_code == 404
        assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200
