"""Clara-style events from a live service: what each handler sees, in which order, and when.

A real service on loopback with handler plugins resolved by name from its settings; points are
driven over real HTTP: a failed attempt that is retried, a lease that expires (the reaper's
end_job), a retried acquire with the same key (no second start_job), two steering rounds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from hposteer.service import cli
from hposteer.service.app import create_app
from hposteer.service.config import Settings
from hposteer.service.core.events import (
    EVENT_NAMES,
    Event,
    JobEnded,
    JobStarted,
    RecommendationsAvailable,
    RoundEnded,
    Startup,
)
from hposteer.service.events import EventBus
from hposteer.service.events.registry import check_handler_settings
from hposteer.service.store.tables import attempts
from tests.conftest import live_service_on
from tests.events.plugins import Failing, Plugins, acquire_job, bus_of, complete, wait_for
from tests.support.rest_api import http, new_site, register, submission, wait_state


def test_a_task_tells_every_clara_event_once_its_transaction_committed(
    tmp_path: Path, plugins: Plugins, no_leftover_threads: None
) -> None:
    jsonl = tmp_path / "events.jsonl"
    handlers = ["failing", "recording", "jsonl"]
    with live_service_on(tmp_path / "data", event_handlers=handlers, events_jsonl_path=jsonl) as live:
        recorder = plugins.recorder
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(name="user.alice.events", max_points=4, n_points_per_iteration=2, max_attempts=2)
            task_id = int(user.post("/api/v1/tasks", json={**body, "site": site}).json()["id"])
            pilot_id = register(pilot, site)

            first = acquire_job(pilot, pilot_id, key="acquire-key-1")
            # The answer was "lost" and the pilot asks again with the same key: the same job, no new start_job.
            again = acquire_job(pilot, pilot_id, key="acquire-key-1")
            assert again["attempt_id"] == first["attempt_id"]
            second = acquire_job(pilot, pilot_id)
            assert {first["point_id"], second["point_id"]} == {1, 2}
            complete(pilot, first, None)  # fails: its point is pending again
            complete(pilot, second, 0.5, meta={"epochs": 3})
            retry = acquire_job(pilot, pilot_id)
            assert (retry["point_id"], retry["attempt_number"]) == (first["point_id"], 2)
            # No heartbeat: the reaper expires the lease (TTL 2 s); it was the last attempt, so the point fails
            # and round 1 ends in the reaper's transaction.
            wait_for(lambda: recorder.named("round_ended"), timeout_s=10, what="round 1 to end")
            for job in (acquire_job(pilot, pilot_id), acquire_job(pilot, pilot_id)):
                complete(pilot, job, 0.25 * job["point_id"])
            wait_state(user, task_id, "finished")
            assert bus_of(live).drain(10)
            with live.services.db.read() as conn:
                rows = conn.execute(select(attempts.c.id, attempts.c.state).where(attempts.c.task_id == task_id)).all()
    events = list(recorder.events)
    # The service stopped: shutdown came last, then every handler was closed.
    assert recorder.closed and plugins.failing[0].calls == len(events), "the failing handler saw everything too"
    names = [e.name for e in events]
    assert isinstance(events[0], Startup) and names[-1] == "shutdown" and set(names) == set(EVENT_NAMES)
    assert events[0].handlers == tuple(handlers)

    recommended = [e for e in events if isinstance(e, RecommendationsAvailable)]
    assert [(r.iteration, r.points, r.segment) for r in recommended] == [(1, (1, 2), 0), (2, (3, 4), 0)]
    assert all(len(r.params) == 2 and set(r.params[0]) == {"x", "n", "act"} for r in recommended)

    started = [e for e in events if isinstance(e, JobStarted)]
    ended = [e for e in events if isinstance(e, JobEnded)]
    assert sorted(e.attempt_id for e in started) == sorted(r.id for r in rows), "one start_job per attempt"
    assert {e.attempt_id: e.outcome for e in ended} == {r.id: r.state for r in rows}, "one end_job per attempt"
    assert sorted(e.outcome for e in ended) == ["expired", "failed", "succeeded", "succeeded", "succeeded"]
    assert all(e.site == site and e.task_name == "user.alice.events/" for e in started)
    expired = next(e for e in ended if e.outcome == "expired")
    assert (expired.point, expired.failure_class, expired.point_state) == (first["point_id"], "lost_lease", "failed")
    for event in started:  # each attempt started before it ended
        assert events.index(event) < events.index(next(e for e in ended if e.attempt_id == event.attempt_id))
    # Handed over after the commit: the handler's own read of the database already shows the new state.
    assert recorder.states_seen == [(e.task_id, e.point, e.point_state) for e in ended]

    rounds = [e for e in events if isinstance(e, RoundEnded)]
    tallies = [(r.iteration, r.points, r.done, r.failed, r.cancelled) for r in rounds]
    assert tallies == [(1, 2, 1, 1, 0), (2, 2, 2, 0, 0)]
    assert rounds[1].min_loss == 0.75 and rounds[1].max_loss == 1.0
    for r in rounds:  # told with the end_job of the round's last point
        points_of_round = next(x.points for x in recommended if x.iteration == r.iteration)
        last_end = max(i for i, e in enumerate(events) if isinstance(e, JobEnded) and e.point in points_of_round)
        assert events.index(r) == last_end + 1

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["event"] for line in lines] == names, "the jsonl handler wrote the same events in the same order"
    assert lines[1]["points"] == [1, 2]


def test_a_killed_task_tells_an_end_job_for_every_started_job_and_ends_its_open_rounds(
    tmp_path: Path, plugins: Plugins, no_leftover_threads: None
) -> None:
    with live_service_on(tmp_path / "data", event_handlers=["recording"]) as live:
        recorder = plugins.recorder
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(site=site, max_points=6, n_points_per_iteration=3, n_parallel_evaluation=3)
            task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
            pilot_id = register(pilot, site)
            jobs = [acquire_job(pilot, pilot_id) for _ in range(3)]
            complete(pilot, jobs[0], 0.5)
            killed = user.post(f"/api/v1/tasks/{task_id}/kill")
            assert killed.status_code == 200 and killed.json()["state"] == "killed"
            late = pilot.post(
                f"/api/v1/pilot/attempts/{jobs[1]['attempt_id']}/complete",
                json={"lease_token": jobs[1]["lease_token"], "outcome": "success", "loss": 1.0},
            )
            assert late.status_code == 409, "the pilot learns its job was cancelled"
        assert bus_of(live).drain(10)
        metrics = httpx.get(f"{live.url}/metrics", timeout=10).text
    events = [e for e in recorder.events if getattr(e, "task_id", task_id) == task_id]
    started = [e for e in events if isinstance(e, JobStarted)]
    ended = [e for e in events if isinstance(e, JobEnded)]
    assert (
        sorted(e.attempt_id for e in ended)
        == sorted(e.attempt_id for e in started)
        == sorted(j["attempt_id"] for j in jobs)
    ), "Clara's promise: an end_job for every start_job, also for the jobs a kill cancelled"
    cancelled = [e for e in ended if e.outcome == "cancelled"]
    assert sorted(e.point for e in cancelled) == sorted(j["point_id"] for j in jobs[1:])
    assert all(
        (e.failure_class, e.point_state, e.loss, e.site) == ("killed", "cancelled", None, site) for e in cancelled
    )
    (round_ended,) = [e for e in events if isinstance(e, RoundEnded)]
    assert (round_ended.iteration, round_ended.points, round_ended.done, round_ended.cancelled) == (1, 3, 1, 2)
    assert round_ended.min_loss == 0.5 and events.index(round_ended) > max(events.index(e) for e in cancelled)
    assert 'hposteer_attempts_ended_total{outcome="cancelled"} 2.0' in metrics


def test_steering_in_a_child_process_relays_its_recommendations(
    tmp_path: Path, plugins: Plugins, no_leftover_threads: None
) -> None:
    with live_service_on(tmp_path / "data", event_handlers=["recording"], steering_mode="process") as live:
        recorder = plugins.recorder
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            task_id = int(user.post("/api/v1/tasks", json=submission(site=site, max_points=2)).json()["id"])
            pilot_id = register(pilot, site)
            for _ in range(2):
                complete(pilot, acquire_job(pilot, pilot_id, timeout_s=30), 1.0)
            wait_state(user, task_id, "finished")
        assert bus_of(live).drain(10)
    (recommended,) = recorder.named("recommendations_available")
    assert (recommended.task_id, recommended.points, recommended.runner) == (task_id, (1, 2), "in-process")
    assert [e.name for e in recorder.events].count("round_ended") == 1


def test_a_handler_never_slows_requests_and_its_drops_are_counted(
    tmp_path: Path, plugins: Plugins, no_leftover_threads: None
) -> None:
    with live_service_on(tmp_path / "data", event_handlers=["slow", "recording"], event_queue_size=2) as live:
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(site=site, max_points=6, n_points_per_iteration=6, n_parallel_evaluation=6)
            task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
            pilot_id = register(pilot, site)
            jobs = [acquire_job(pilot, pilot_id) for _ in range(6)]
            began = time.monotonic()
            for job in jobs:
                complete(pilot, job, 1.0)
            took = time.monotonic() - began
            wait_state(user, task_id, "finished")
        stats = bus_of(live).stats()
        assert stats["slow"].dropped > 0, stats
        assert plugins.recorder.named("end_job") and stats["recording"].dropped == 0
    # Six completions behind a handler that sleeps 0.5 s per event: the requests did not wait for it.
    assert took < 6 * 0.5, took


class Closing:
    """Keeps the events and notes when it is closed."""

    def __init__(self, name: str, closed: list[str]):
        self.name, self.closed, self.events = name, closed, list[Event]()

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed.append(self.name)


def test_bus_isolates_failing_handlers_and_closes_in_reverse_order() -> None:
    closed: list[str] = []
    a, b = Closing("a", closed), Closing("b", closed)
    bus = EventBus([("a", a), ("broken", Failing()), ("b", b)], queue_size=100)
    bus.start()
    for n in range(20):
        bus.emit(Startup(f"r{n}", "0", (), 0.0))
    assert bus.drain(5)
    bus.close()
    assert len(a.events) == len(b.events) == 20 and bus.stats()["broken"].failed == 20
    assert closed == ["b", "a"], "closed in the reverse order, like Clara's handler chain"
    bus.emit(Startup("late", "0", (), 0.0))  # after close: ignored, no error
    assert len(a.events) == 20


def test_bad_handler_settings_stop_the_service_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for handlers, message in (
        (["mlfow"], r"unknown event handler 'mlfow'; known handlers: jsonl, log, mlflow"),
        (["mlflow"], "needs the setting HPOSTEER_MLFLOW_TRACKING_URI"),
        (["log", "log"], "listed twice"),
    ):
        settings = Settings(event_handlers=handlers, data_dir=tmp_path)
        with pytest.raises(ValueError, match=message):
            check_handler_settings(settings.event_handlers, settings)
        with pytest.raises(ValueError, match=message):
            create_app(settings)
    monkeypatch.setenv("HPOSTEER_EVENT_HANDLERS", "log, jsonl")
    monkeypatch.setenv("HPOSTEER_EVENTS_JSONL_PATH", str(tmp_path / "e.jsonl"))
    assert Settings().event_handlers == ["log", "jsonl"]
    monkeypatch.setenv("HPOSTEER_EVENT_HANDLERS", '["log"]')
    assert Settings().event_handlers == ["log"]
    monkeypatch.setenv("HPOSTEER_EVENT_HANDLERS", "log,nope")
    assert cli.main(["serve", "--data-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert "unknown event handler 'nope'; known handlers: jsonl, log, mlflow" in capsys.readouterr().err
